// Asking the refresher to replace a token WeChat rejected (passive refresh), and backing off:
// the Python layer's wechat_token/passive.py, for Node.js.
//
// Consumers reach the refresher only through its consumer entry point, PassiveRefreshFunction
// (named by PASSIVE_REFRESH_FUNCTION_NAME), invoked synchronously with exactly
// {app_id, kind, stale_token, errcode}, where stale_token is the rejected token's fingerprint,
// never the token. It answers {credentials: [{app_id, kind, outcome, ...}], ...}:
// - refreshed, already_replaced, lease_held: the table has (or is about to have) a newer
//   token; the layer re-reads it with a consistent read;
// - token_accepted: WeChat still accepts the stored token, so the consumer's failure lies
//   elsewhere; nothing was rotated;
// - rate_limited, not_due, failed (and any other answer): refused or failed.
//
// Back-off (the negative cache): after a request that failed (an invoke error, a
// FunctionError) or was not answered with a newer token, and after an expired record that a
// request did not cure, the layer does not ask again for that credential for 30 s
// (PASSIVE_BACKOFF_SECONDS): it throws PassiveRefreshError at once instead. The refresher
// spaces consumer-triggered attempts 60 s apart per credential anyway, so asking sooner
// could only be refused.

import { PassiveRefreshError } from "./errors.mjs";
import { KeyedMutex } from "./keyed_mutex.mjs";
import { warn } from "./log.mjs";
import { ACCESS_TOKEN, iso } from "./record.mjs";
import { quietClientLogger } from "./store.mjs";
import { awsErrorDetail, redact } from "./redaction.mjs";
import { PASSIVE_FUNCTION_ENV, RETIRED_FUNCTION_ENV, envText, processEnv } from "./settings.mjs";

export const PASSIVE_BACKOFF_SECONDS = 30;

// The answers after which the table holds, or is about to hold, a newer token.
export const REPLACED_OUTCOMES = Object.freeze(
  new Set(["refreshed", "already_replaced", "lease_held"]),
);

// Above PassiveRefreshFunction's 60 s timeout, so that its own answer (or timeout) arrives.
export const INVOKE_TIMEOUT_MS = 70_000;

const INSPECT = Symbol.for("nodejs.util.inspect.custom");

/** The negative cache: credentials this process must not report again yet. */
export class PassiveBackoff {
  #refusals = new Map();

  constructor(seconds = PASSIVE_BACKOFF_SECONDS) {
    this.seconds = seconds;
  }

  /** The refusal ({until, reason, outcome}) in force for `key` at `now`, if any. */
  refusal(key, now) {
    const refusal = this.#refusals.get(key.id);
    return refusal === undefined || now >= refusal.until ? null : refusal;
  }

  hold(key, now, reason, outcome = null) {
    this.#refusals.set(key.id, Object.freeze({ until: now + this.seconds, reason, outcome }));
  }

  clear(key = null) {
    if (key === null) this.#refusals.clear();
    else this.#refusals.delete(key.id);
  }

  /** Throw PassiveRefreshError if a refusal is in force for `key`. */
  check(key, now) {
    const refusal = this.refusal(key, now);
    if (refusal !== null) {
      throw new PassiveRefreshError(
        `Not asking for a passive refresh of ${key} again before ${iso(refusal.until)} ` +
          `(the layer backs off ${this.seconds} s): ${refusal.reason}`,
        { outcome: refusal.outcome },
      );
    }
  }

  /**
   * One passive request for `key`, unless a refusal is in force; a failure or any answer but
   * a replacement starts the back-off. Resolves to the outcome.
   */
  async ask(passive, key, stale, errcode, now) {
    this.check(key, now);
    let outcome;
    try {
      outcome = await passive.invoke(key.appId, key.kind, stale, errcode);
    } catch (error) {
      this.hold(key, now, "the last passive refresh request failed");
      throw error;
    }
    if (!REPLACED_OUTCOMES.has(outcome)) {
      this.hold(key, now, `the refresher answered '${outcome}'`, outcome);
    }
    return outcome;
  }
}

// One passive request per credential per process: the others wait for it, then re-read.
const flights = new KeyedMutex();

/** Run `fn` while holding the process-wide passive-request slot of `key`. */
export function inFlight(key, fn) {
  return flights.run(key.id, fn);
}

let lambdaSdk = null;

function loadLambdaSdk() {
  lambdaSdk ??= import("@aws-sdk/client-lambda");
  return lambdaSdk;
}

/**
 * Invokes PassiveRefreshFunction synchronously with {app_id, kind, stale_token, errcode} and
 * resolves to its outcome for that credential. Only the token's fingerprint travels:
 * invocation payloads can end up in logs.
 */
export class LambdaPassiveRefresh {
  #functionName;
  #client;

  constructor({ functionName = null, client = null } = {}) {
    this.#functionName = functionName;
    this.#client = client;
  }

  get functionName() {
    this.#functionName ??= envText(processEnv(), PASSIVE_FUNCTION_ENV, {
      what:
        "the stack output PassiveRefreshFunctionName, to let this consumer request a passive " +
        "refresh",
    });
    return this.#functionName;
  }

  async client() {
    if (this.#client === null) {
      const { LambdaClient } = await loadLambdaSdk();
      this.#client ??= new LambdaClient({
        maxAttempts: 2,
        requestHandler: { connectionTimeout: 3000, requestTimeout: INVOKE_TIMEOUT_MS },
      });
    }
    quietClientLogger(this.#client); // at info the SDK logs every payload and answer
    return this.#client;
  }

  async invoke(appId, kind = ACCESS_TOKEN, stale = "", errcode = null) {
    const name = this.functionName;
    const payload = { app_id: appId, kind, stale_token: stale, errcode };
    let response;
    let body;
    let failure = null;
    try {
      const [client, { InvokeCommand }] = await Promise.all([this.client(), loadLambdaSdk()]);
      response = await client.send(
        new InvokeCommand({
          FunctionName: name,
          InvocationType: "RequestResponse",
          Payload: new TextEncoder().encode(JSON.stringify(payload)),
        }),
      );
      const text = response.Payload ? new TextDecoder().decode(response.Payload) : "";
      body = text ? JSON.parse(text) : null;
    } catch (error) {
      failure = awsErrorDetail(error); // thrown below, with no error attached
    }
    if (failure !== null) {
      throw new PassiveRefreshError(
        `Could not invoke the passive refresh function '${name}' for ${appId}/${kind}: ` +
          `${failure}. Check lambda:InvokeFunction on it in the consumer's policy (attach the ` +
          "stack's ConsumerPolicy) and PASSIVE_REFRESH_FUNCTION_NAME.",
      );
    }
    if (response.FunctionError) {
      const message =
        body !== null && typeof body === "object" ? String(body.errorMessage ?? "") : "";
      throw new PassiveRefreshError(
        `The passive refresh function '${name}' failed for ${appId}/${kind}: ` +
          redact(message).slice(0, 300),
      );
    }
    return outcomeFor(body, appId, kind);
  }

  toString() {
    return `LambdaPassiveRefresh(${this.#functionName ?? "$" + PASSIVE_FUNCTION_ENV})`;
  }

  [INSPECT]() {
    return this.toString();
  }
}

/**
 * A passive refresh as the reader and the client call it: anything with
 * `invoke(appId, kind, staleFingerprint, errcode)` resolving to an outcome (a
 * LambdaPassiveRefresh), or such a function itself; null when passive refresh is off.
 */
export function asPassiveRefresh(passive) {
  if (passive === null) return null;
  if (typeof passive === "function") return { invoke: passive };
  if (typeof passive?.invoke === "function") return passive;
  throw new TypeError("passiveRefresh must be null, a function or have an invoke() method");
}

/** The outcome the function's summary gives for this credential (`unknown` if none). */
export function outcomeFor(summary, appId, kind) {
  const credentials = summary !== null && typeof summary === "object" ? summary.credentials : null;
  if (!Array.isArray(credentials)) return "unknown";
  const entries = credentials.filter(
    (c) => c !== null && typeof c === "object" && !Array.isArray(c),
  );
  for (const entry of entries) {
    if (entry.app_id === appId && (entry.kind ?? ACCESS_TOKEN) === kind) {
      return String(entry.outcome ?? "unknown");
    }
  }
  return entries.length > 0 ? String(entries[0].outcome ?? "unknown") : "unknown";
}

/** Passive refresh is permitted when the stack told this function which function to ask. */
export function defaultPassiveRefresh() {
  const env = processEnv();
  if (String(env[PASSIVE_FUNCTION_ENV] ?? "").trim()) return new LambdaPassiveRefresh();
  if (String(env[RETIRED_FUNCTION_ENV] ?? "").trim()) {
    warn(
      `${RETIRED_FUNCTION_ENV} is set but no longer read: consumers now invoke the ` +
        `PassiveRefreshFunction. Set ${PASSIVE_FUNCTION_ENV} to the stack output ` +
        "PassiveRefreshFunctionName to keep passive refresh.",
    );
  }
  return null;
}
