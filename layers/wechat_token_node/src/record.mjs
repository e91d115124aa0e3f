// The schema of a stored credential, as the Python layer's wechat_token/record.py defines it:
// one table, partition key app_id, sort key kind; times are epoch seconds stored as DynamoDB
// numbers. Expiry is always checked in code; nothing relies on DynamoDB TTL.
//
// FIELDS is the record's attribute names (a test compares them with the Python schema). An
// attribute the schema does not know is warned about (by name, never by value) and ignored,
// or refused where WECHAT_TOKEN_STRICT_RECORDS is set, so that the schema and what is stored
// cannot drift apart unnoticed.

import { createHash } from "node:crypto";

import { SchemaError } from "./errors.mjs";
import { warn } from "./log.mjs";
import { STRICT_ENV, envFlag, processEnv } from "./settings.mjs";

export const Kind = Object.freeze({
  ACCESS_TOKEN: "access_token",
  JSAPI_TICKET: "jsapi_ticket",
  WX_CARD_TICKET: "wx_card_ticket",
  AGENT_CONFIG_TICKET: "agent_config_ticket",
  // Third-party platforms (app_id = the component appid): the ticket WeChat pushes every 10
  // minutes, the component token fetched with it, and a pending authorization event.
  COMPONENT_VERIFY_TICKET: "component_verify_ticket",
  COMPONENT_ACCESS_TOKEN: "component_access_token",
  AUTHORIZATION: "authorization",
});
export const ACCESS_TOKEN = Kind.ACCESS_TOKEN;
export const JSAPI_TICKET = Kind.JSAPI_TICKET;

// ticket type (what WeChat's ticket endpoint takes, and the registry lists) -> record kind
export const TICKET_KINDS = Object.freeze({
  jsapi: Kind.JSAPI_TICKET,
  wx_card: Kind.WX_CARD_TICKET,
  agent_config: Kind.AGENT_CONFIG_TICKET,
});

// WeChat's answers to a call made with a token it no longer accepts (expired, invalidated by
// a newer fetch, or not the latest): the client re-reads the table on these.
export const INVALID_TOKEN_CODES = Object.freeze(new Set([40001, 40014, 42001]));

export const PK = "app_id";
export const SK = "kind";

const TEXT = "text";
const NUMBER = "number";
const INTEGER = "integer";

// Every attribute of a record, and how it is typed (record.py's CredentialRecord fields).
export const FIELDS = Object.freeze({
  app_id: TEXT,
  kind: TEXT,
  value: TEXT,
  expires_at: NUMBER,
  fetched_at: NUMBER,
  previous_fingerprint: TEXT,
  previous_valid_until: NUMBER,
  version: INTEGER,
  source: TEXT,
  lease_owner: TEXT,
  lease_until: NUMBER,
  last_success_at: NUMBER,
  last_error_code: TEXT,
  last_error_class: TEXT,
  last_error_message: TEXT,
  last_error_at: NUMBER,
  calls_day: TEXT,
  calls_count: INTEGER,
  consumer_calls_day: TEXT,
  consumer_calls_count: INTEGER,
  triggered_at: NUMBER,
  trigger_failures: INTEGER,
  passive_at: NUMBER,
  foreign_rotations: INTEGER,
  forces_day: TEXT,
  forces_count: INTEGER,
  last_force_at: NUMBER,
  bound_to: TEXT,
  renewable_at: NUMBER,
  component_appid: TEXT,
  refresh_token_cipher: TEXT,
  refresh_token_fp: TEXT,
  refresh_token_at: NUMBER,
  revoked_at: NUMBER,
  create_time: NUMBER,
  prior_value: TEXT,
  prior_expires_at: NUMBER,
  info_type: TEXT,
  reconciled_at: NUMBER,
  reconcile_claimed_at: NUMBER,
  due_shard: TEXT,
  due_at: NUMBER,
});
// Attributes that are, or protect, a credential: readable on a record, never shown by
// JSON.stringify, String() or util.inspect (record.py's repr=False fields).
export const SECRET_FIELDS = Object.freeze(
  new Set(["value", "refresh_token_cipher", "prior_value"]),
);
// Attributes earlier versions wrote and that the writer now removes: ignored when read.
export const RETIRED_ATTRIBUTES = Object.freeze(new Set(["previous_value"]));

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const INSPECT = Symbol.for("nodejs.util.inspect.custom");

/** A short, stable, non-reversible name for a token, safe for logs: `sha256:1a2b3c4d5e`. */
export function fingerprint(secretValue) {
  return "sha256:" + createHash("sha256").update(secretValue, "utf8").digest("hex").slice(0, 10);
}

/** Human-readable UTC time for messages; `never` for a missing time. */
export function iso(ts) {
  if (ts === null || ts === undefined) return "never";
  return new Date(Math.floor(ts) * 1000).toISOString().slice(0, 19) + "Z";
}

/** Which credential: the registry's app key and the kind. */
export class CredentialKey {
  constructor(appId, kind = ACCESS_TOKEN) {
    this.appId = appId;
    this.kind = kind;
    // A Map key: app ids may hold ':' (WeCom) but never a newline.
    this.id = `${kind}\n${appId}`;
    Object.freeze(this);
  }

  /** The DynamoDB key of the record, in the low-level client's wire format. */
  itemKey() {
    return { [PK]: { S: this.appId }, [SK]: { S: this.kind } };
  }

  toString() {
    return `${this.appId}/${this.kind}`;
  }
}

/**
 * A credential as stored: the current value, its conservative expiry, and its history.
 * Attributes keep the table's names. The value (and the other SECRET_FIELDS) is readable as
 * `record.value` but is never shown: JSON.stringify, String() and util.inspect give the
 * value's fingerprint instead.
 */
export class CredentialRecord {
  #secrets;

  constructor(fields = {}) {
    const secrets = {};
    for (const [name, type] of Object.entries(FIELDS)) {
      const given = fields[name] ?? (type === INTEGER ? 0 : null);
      if (SECRET_FIELDS.has(name)) secrets[name] = given;
      else this[name] = given;
    }
    this.kind ??= ACCESS_TOKEN;
    this.#secrets = Object.freeze(secrets);
    Object.freeze(this);
  }

  /** Build a record from a low-level DynamoDB item (`{S: ...}`, `{N: ...}`). */
  static fromDynamoDB(attributes, { strict } = {}) {
    const values = {};
    const unknown = [];
    for (const [name, wire] of Object.entries(attributes)) {
      const entries = wire !== null && typeof wire === "object" ? Object.entries(wire) : [];
      if (entries.length !== 1) {
        throw new SchemaError(`attribute '${name}' is not a DynamoDB attribute value`);
      }
      const [[tag, raw]] = entries;
      const type = FIELDS[name];
      if (type === undefined) {
        if (!RETIRED_ATTRIBUTES.has(name)) unknown.push(name);
        continue;
      }
      if (tag === "NULL") {
        values[name] = null;
      } else if (tag === "S" || tag === "N" || tag === "BOOL") {
        values[name] = convert(name, type, raw);
      } else {
        throw new SchemaError(`attribute '${name}' has DynamoDB type ${tag}, not S or N`);
      }
    }
    if (unknown.length > 0) unknownAttributes(values.app_id, unknown, strict);
    return new CredentialRecord(values);
  }

  get value() {
    return this.#secrets.value;
  }

  /** An authorizer's refresh token, as KMS ciphertext only the refresher can decrypt. */
  get refresh_token_cipher() {
    return this.#secrets.refresh_token_cipher;
  }

  /** A verify ticket's predecessor (third-party platforms). */
  get prior_value() {
    return this.#secrets.prior_value;
  }

  /** An authorizer whose merchant revoked the platform's authorization. */
  get isRevoked() {
    return this.revoked_at !== null;
  }

  get key() {
    return new CredentialKey(this.app_id, this.kind);
  }

  get hasValue() {
    return Boolean(this.#secrets.value) && this.expires_at !== null;
  }

  /** True while the current value may still be used (conservative expiry). */
  isValid(now) {
    return this.hasValue && now < this.expires_at;
  }

  remaining(now) {
    return this.expires_at === null ? -Infinity : this.expires_at - now;
  }

  fingerprint() {
    return this.#secrets.value ? fingerprint(this.#secrets.value) : null;
  }

  /** True if `stale` (a token or its fingerprint) is the stored current value. */
  holds(stale) {
    if (!this.#secrets.value) return false;
    const current = fingerprint(this.#secrets.value);
    return stale === current || (!stale.startsWith("sha256:") && fingerprint(stale) === current);
  }

  toJSON() {
    return { ...this, fingerprint: this.fingerprint() };
  }

  toString() {
    return `CredentialRecord(${this.app_id}/${this.kind}, ${this.fingerprint() ?? "no value"})`;
  }

  [INSPECT](depth, options, inspect) {
    return `CredentialRecord ${inspect(this.toJSON(), options)}`;
  }
}

function convert(name, type, raw) {
  if (type === TEXT) {
    if (typeof raw !== "string") {
      throw new SchemaError(`attribute '${name}' must be a string, not ${typeof raw}`);
    }
    return raw;
  }
  const text = typeof raw === "number" ? String(raw) : raw;
  if (typeof text !== "string" || !DECIMAL.test(text.trim())) {
    throw new SchemaError(`attribute '${name}' does not convert to a number`);
  }
  const number = Number(text);
  return type === INTEGER ? Math.trunc(number) : number;
}

function unknownAttributes(appId, names, strict) {
  const described = [...names].sort().join(", ");
  if (strict ?? envFlag(processEnv(), STRICT_ENV)) {
    throw new SchemaError(
      `record '${appId}' has attributes the schema does not define: ${described}`,
    );
  }
  warn(
    `record '${appId}' has attributes this version does not know (${described}); ignored. ` +
      "A newer refresher may have written them: update the layer.",
  );
}
