// Reading credentials with an in-process cache that never outlives the credential: the
// Python layer's wechat_token/reader.py, for Node.js.

import {
  AuthorizationRevokedError,
  TokenError,
  TokenExpiredError,
  TokenNotFoundError,
  TokenStoreError,
} from "./errors.mjs";
import { KeyedMutex } from "./keyed_mutex.mjs";
import { warn } from "./log.mjs";
import {
  PassiveBackoff,
  REPLACED_OUTCOMES,
  asPassiveRefresh,
  defaultPassiveRefresh,
} from "./passive.mjs";
import { ACCESS_TOKEN, CredentialKey, fingerprint, iso } from "./record.mjs";
import { appIdFromEnv, cacheSecondsFromEnv, checkedCacheSeconds } from "./settings.mjs";
import { DynamoDBRecordSource } from "./store.mjs";

const INSPECT = Symbol.for("nodejs.util.inspect.custom");

/** Seconds since the epoch, as the refresher stores times. */
export function systemClock() {
  return Date.now() / 1000;
}

/**
 * Reads credentials from a record source (the token table), caching each in memory.
 *
 * A cached entry lives min(cacheSeconds, expires_at - now): short enough that a consumer
 * switches to a rotated token well inside WeChat's 5-minute grace, and never past the
 * credential's own expiry. A hit costs two Map lookups and a clock read (`cached`). Misses of
 * different credentials never wait for each other; concurrent misses of one credential make
 * one read.
 *
 * Options: `source` (any record source), or `tableName`/`client` for a DynamoDBRecordSource
 * (the default: TOKEN_TABLE_NAME, a DynamoDBClient on first use); `cacheSeconds` (default
 * WECHAT_TOKEN_CACHE_SECONDS, else 60; at most 120); `clock` (seconds); `passiveRefresh`
 * (default: a LambdaPassiveRefresh when PASSIVE_REFRESH_FUNCTION_NAME is set; null: never).
 */
export class TokenReader {
  #source;
  #cacheSeconds;
  #clock;
  #passive;
  #backoff = new PassiveBackoff();
  // kind -> app id -> {value, cacheUntil, expiresAt} (kind first: the access_token Map is
  // the hot path's).
  #entries = new Map([[ACCESS_TOKEN, new Map()]]);
  #locks = new KeyedMutex();

  constructor({
    tableName,
    client,
    source,
    cacheSeconds,
    clock = systemClock,
    passiveRefresh,
  } = {}) {
    if (source != null && (tableName != null || client != null)) {
      throw new TypeError("pass either source or tableName/client, not both");
    }
    this.#source =
      source ?? new DynamoDBRecordSource({ client: client ?? null, tableName: tableName ?? null });
    this.#cacheSeconds =
      cacheSeconds === undefined ? cacheSecondsFromEnv() : checkedCacheSeconds(cacheSeconds);
    this.#clock = clock;
    this.#passive = asPassiveRefresh(
      passiveRefresh === undefined ? defaultPassiveRefresh() : passiveRefresh,
    );
  }

  get source() {
    return this.#source;
  }

  get cacheSeconds() {
    return this.#cacheSeconds;
  }

  get clock() {
    return this.#clock;
  }

  /** This reader's negative cache of passive requests (shared with its WeChatClients). */
  get backoff() {
    return this.#backoff;
  }

  // -- reading ---------------------------------------------------------------------------

  /** The cached value while it is fresh, else null. The fast path: no I/O, no lock. */
  cached(appId, kind = ACCESS_TOKEN) {
    const entry = this.#entries.get(kind)?.get(appId);
    return entry !== undefined && this.#clock() < entry.cacheUntil ? entry.value : null;
  }

  /** The current credential value; rejects with a TokenError rather than give a stale one. */
  async get(appId = null, kind = ACCESS_TOKEN) {
    const app = appId || appIdFromEnv();
    const value = this.cached(app, kind);
    if (value !== null) return value;
    const key = new CredentialKey(app, kind);
    return this.#locks.run(key.id, () => {
      const again = this.cached(app, kind);
      return again !== null ? again : this.#load(key, this.#entry(key), false);
    });
  }

  /** Drop the cached value and read the table with a strongly consistent read. */
  async refetch(appId = null, kind = ACCESS_TOKEN) {
    const key = new CredentialKey(appId || appIdFromEnv(), kind);
    return this.#locks.run(key.id, () => {
      const stale = this.#entry(key);
      this.#forget(key);
      return this.#load(key, stale, true);
    });
  }

  /** Forget the cached value, so that the next get() reads the table. */
  invalidate(appId = null, kind = ACCESS_TOKEN) {
    this.#forget(new CredentialKey(appId || appIdFromEnv(), kind));
  }

  clear() {
    for (const entries of this.#entries.values()) entries.clear();
  }

  /** The stored record itself (uncached, strongly consistent), for diagnostics. */
  read(appId, kind = ACCESS_TOKEN) {
    return this.#source.get(new CredentialKey(appId, kind), true);
  }

  toString() {
    return `TokenReader(${this.#source}, cacheSeconds=${this.#cacheSeconds})`;
  }

  toJSON() {
    return { source: String(this.#source), cacheSeconds: this.#cacheSeconds };
  }

  [INSPECT]() {
    let cached = 0;
    for (const entries of this.#entries.values()) cached += entries.size;
    const fields = `source: ${this.#source}, cacheSeconds: ${this.#cacheSeconds}`;
    return `TokenReader { ${fields}, cached: ${cached} }`;
  }

  // -- misses ----------------------------------------------------------------------------

  #entry(key) {
    return this.#entries.get(key.kind)?.get(key.appId) ?? null;
  }

  #forget(key) {
    this.#entries.get(key.kind)?.delete(key.appId);
  }

  async #load(key, stale, consistent) {
    let record;
    try {
      record = await this.#source.get(key, consistent);
    } catch (error) {
      // Last known good: a value we already hold stays usable until its own expiry, so a
      // DynamoDB hiccup does not take every consumer down with it.
      if (error instanceof TokenStoreError && stale !== null && this.#clock() < stale.expiresAt) {
        warn(
          `reading ${key} from ${this.#source} failed; serving the cached ` +
            `${fingerprint(stale.value)} until it expires at ${iso(stale.expiresAt)}`,
        );
        return stale.value;
      }
      throw error;
    }
    const now = this.#clock();
    if (record !== null && record.isValid(now)) return this.#remember(key, record, now);
    this.#forget(key);
    if (record !== null && record.isRevoked) {
      throw new AuthorizationRevokedError(
        `The merchant revoked the platform's authorization of '${record.app_id}' at ` +
          `${iso(record.revoked_at)}: there is no ${key.kind} for it until they authorize the ` +
          "platform again (the refresher stopped refreshing it).",
      );
    }
    if (record === null || !record.hasValue) {
      throw new TokenNotFoundError(this.#notFoundMessage(key, record));
    }
    return this.#expired(key, record, now);
  }

  #remember(key, record, now) {
    const cacheUntil = Math.min(now + this.#cacheSeconds, record.expires_at);
    let entries = this.#entries.get(key.kind);
    if (entries === undefined) {
      entries = new Map();
      this.#entries.set(key.kind, entries);
    }
    entries.set(key.appId, { value: record.value, cacheUntil, expiresAt: record.expires_at });
    return record.value;
  }

  /** An expired record: ask for a passive refresh once (unless backing off), re-read. */
  async #expired(key, record, now) {
    if (this.#passive === null) throw new TokenExpiredError(this.#expiredMessage(record, now));
    let note = await this.#ask(key, record, now);
    let when = now;
    if (note === null) {
      // The function answered with a (coming) replacement.
      const fresh = await this.#source.get(key, true);
      when = this.#clock();
      if (fresh !== null && fresh.isValid(when)) return this.#remember(key, fresh, when);
      note = "a passive refresh was requested, but the table still holds no valid value";
      this.#backoff.hold(key, when, "the record was still expired after a passive refresh");
    }
    throw new TokenExpiredError(`${this.#expiredMessage(record, when)} ${note}.`);
  }

  /** null if the function answered with a replacement, else what happened instead. */
  async #ask(key, record, now) {
    const refusal = this.#backoff.refusal(key, now);
    if (refusal !== null) {
      return `No passive refresh asked before ${iso(refusal.until)}: ${refusal.reason}`;
    }
    try {
      const outcome = await this.#backoff.ask(
        this.#passive,
        key,
        record.fingerprint() ?? "",
        42001,
        now,
      );
      if (!REPLACED_OUTCOMES.has(outcome)) {
        return `A passive refresh was refused: the refresher answered '${outcome}'`;
      }
      return null;
    } catch (error) {
      if (!(error instanceof TokenError)) throw error;
      warn(`passive refresh of expired ${key} failed: ${error.message}`);
      return `The passive refresh failed: ${error.message}`;
    }
  }

  #notFoundMessage(key, record) {
    let message =
      `No ${key.kind} for app '${key.appId}' in ${this.#source}. Check that the app is in ` +
      "the registry secret (WECHAT_APPS_SECRET_ID) under this exact key and that the " +
      "refresher has run";
    if (record !== null) {
      message += `; the refresher last succeeded ${iso(record.last_success_at)}`;
      message += lastError(record);
    }
    return message + ".";
  }

  #expiredMessage(record, now) {
    return (
      `The ${record.kind} for app '${record.app_id}' in ${this.#source} expired at ` +
      `${iso(record.expires_at)} (${(now - record.expires_at).toFixed(0)} s ago). ` +
      `The refresher last succeeded ${iso(record.last_success_at)}${lastError(record)}. ` +
      "Check the refresher's logs and alarms, and that its schedule is enabled."
    );
  }
}

function lastError(record) {
  if (record.last_error_code === null) return "";
  return (
    `; its last error was ${record.last_error_code} at ${iso(record.last_error_at)}: ` +
    `${record.last_error_message || "no details"}`
  );
}

let defaultInstance = null;

/** The process-wide reader: created on first use, reused while the environment is warm. */
export function defaultReader() {
  defaultInstance ??= new TokenReader();
  return defaultInstance;
}

/** Replace the process-wide reader (inject a source, a table, a client, a clock...). */
export function configure(options = {}) {
  defaultInstance = new TokenReader(options);
  return defaultInstance;
}

/**
 * The app's current access_token, from the in-process cache or the token table. `appId`
 * defaults to WECHAT_APP_ID. Rejects with TokenNotFoundError or TokenExpiredError (both
 * TokenError) instead of ever giving a token past its expiry.
 */
export async function getAccessToken(appId = null) {
  const reader = defaultInstance;
  if (reader !== null && appId) {
    const value = reader.cached(appId, ACCESS_TOKEN); // the hot path: no I/O, no lock
    if (value !== null) return value;
  }
  return defaultReader().get(appId, ACCESS_TOKEN);
}
