// WeChatClient: call WeChat's server APIs with the stored token, recovering from a rejected
// one, exactly as the Python layer's wechat_token/client.py does.
//
// On 40001 / 40014 / 42001 the client drops its cached token and re-reads the table
// (consistent); if the table still holds the rejected token, it asks the passive refresh
// function (one request per credential per process at a time, and none while the reader's
// back-off holds that credential), waits for the new token, and retries once. It never loops
// and never retries other errors, except WeChat's -1 (system busy) once after a short pause.
// No error it throws carries the fetch error (which can quote the URL, token included).

import { PassiveRefreshError, WeChatAPIError, WeChatTransportError } from "./errors.mjs";
import {
  REPLACED_OUTCOMES,
  asPassiveRefresh,
  defaultPassiveRefresh,
  inFlight,
} from "./passive.mjs";
import { defaultReader } from "./reader.mjs";
import { ACCESS_TOKEN, CredentialKey, INVALID_TOKEN_CODES, fingerprint } from "./record.mjs";
import { redact } from "./redaction.mjs";
import {
  API_BASE_URL_ENV,
  DEFAULT_API_BASE_URL,
  PASSIVE_FUNCTION_ENV,
  appIdFromEnv,
  envUrl,
  processEnv,
} from "./settings.mjs";

export const BUSY = -1;
const INSPECT = Symbol.for("nodejs.util.inspect.custom");

function sleepSeconds(seconds) {
  return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
}

/**
 * A small client for WeChat's server APIs that injects the current access_token.
 *
 *   const client = new WeChatClient();            // app from WECHAT_APP_ID
 *   const { ip_list } = await client.get("/cgi-bin/get_api_domain_ip");
 *   await client.post("/cgi-bin/message/custom/send", { touser, msgtype: "text", text });
 *
 * Options: `baseUrl` (default WECHAT_API_BASE_URL, else https://api.weixin.qq.com), `reader`
 * (default: the process-wide TokenReader), `passiveRefresh` (default: from
 * PASSIVE_REFRESH_FUNCTION_NAME; null: never), `fetch` (default: the global fetch),
 * `timeoutSeconds` (10), `waitSeconds` (10: how long to wait for a replacement after a
 * passive refresh), `sleep` (seconds -> promise).
 */
export class WeChatClient {
  #reader;
  #passive;
  #fetch;
  #timeoutMs;
  #waitSeconds;
  #sleep;

  constructor(appId = null, options = {}) {
    const {
      baseUrl = null,
      reader = null,
      passiveRefresh,
      fetch: fetchImpl = null,
      timeoutSeconds = 10,
      waitSeconds = 10,
      sleep = sleepSeconds,
    } = options;
    this.appId = appId || appIdFromEnv();
    this.baseUrl = baseUrl
      ? baseUrl.replace(/\/+$/, "")
      : envUrl(processEnv(), API_BASE_URL_ENV, DEFAULT_API_BASE_URL);
    this.#reader = reader;
    this.#passive = asPassiveRefresh(
      passiveRefresh === undefined ? defaultPassiveRefresh() : passiveRefresh,
    );
    this.#fetch = fetchImpl;
    this.#timeoutMs = timeoutSeconds * 1000;
    this.#waitSeconds = waitSeconds;
    this.#sleep = sleep;
  }

  get reader() {
    return this.#reader ?? defaultReader();
  }

  get(path, params = null) {
    return this.request("GET", path, { params });
  }

  post(path, body = null, params = null) {
    return this.request("POST", path, { params, body });
  }

  /** Send the request with the current token; resolves to WeChat's decoded JSON reply. */
  async request(method, path, { params = null, body = null } = {}) {
    let token = await this.reader.get(this.appId, ACCESS_TOKEN);
    let reply = await this.#send(method, path, token, params, body);
    let errcode = errcodeOf(reply);
    if (errcode === BUSY) {
      await this.#sleep(0.5);
      reply = await this.#send(method, path, token, params, body);
      errcode = errcodeOf(reply);
    } else if (INVALID_TOKEN_CODES.has(errcode)) {
      const errmsg = redact(String(reply.errmsg ?? ""), token);
      token = await this.#replacement(token, errcode, errmsg, path);
      reply = await this.#send(method, path, token, params, body);
      errcode = errcodeOf(reply);
    }
    if (errcode) throw new WeChatAPIError(errcode, redact(String(reply.errmsg ?? ""), token), path);
    return reply;
  }

  toString() {
    return `WeChatClient(${this.appId}, ${this.baseUrl})`;
  }

  toJSON() {
    return { appId: this.appId, baseUrl: this.baseUrl };
  }

  [INSPECT]() {
    return `WeChatClient { appId: '${this.appId}', baseUrl: '${this.baseUrl}' }`;
  }

  /** A token other than `rejected`: from the table, or from a passive refresh. */
  async #replacement(rejected, errcode, errmsg, path) {
    const reader = this.reader;
    const fresh = await reader.refetch(this.appId, ACCESS_TOKEN);
    if (fresh !== rejected) return fresh;
    if (this.#passive === null) {
      throw new WeChatAPIError(
        errcode,
        `${errmsg} (WeChat rejected the stored token and this consumer may not request a ` +
          `passive refresh: set ${PASSIVE_FUNCTION_ENV} and allow lambda:InvokeFunction on the ` +
          "PassiveRefreshFunction)",
        path,
      );
    }
    const key = new CredentialKey(this.appId, ACCESS_TOKEN);
    // One passive request per credential per process; the other requests wait for it.
    return inFlight(key, async () => {
      const current = await reader.refetch(this.appId, ACCESS_TOKEN);
      if (current !== rejected) return current;
      const now = reader.clock();
      const { backoff } = reader;
      const outcome = await backoff.ask(this.#passive, key, fingerprint(rejected), errcode, now);
      if (outcome === "token_accepted") {
        throw new WeChatAPIError(
          errcode,
          `${errmsg} (the refresher checked: WeChat still accepts the stored token, so this ` +
            "rejection is not the token's; check the request itself)",
          path,
        );
      }
      if (REPLACED_OUTCOMES.has(outcome)) {
        const replacement = await this.#waitForReplacement(rejected, outcome);
        if (replacement !== null) return replacement;
        backoff.hold(key, now, `the table still held the rejected token after '${outcome}'`);
      }
      throw new PassiveRefreshError(
        `WeChat rejected the token for ${this.appId} (${errcode}) and the refresher did not ` +
          `replace it (outcome: ${outcome}); check the passive refresh function's logs`,
        { outcome },
      );
    });
  }

  /** The new token once the table holds one; null if it did not within the wait. */
  async #waitForReplacement(rejected, outcome) {
    const deadline = performance.now() + this.#waitSeconds * 1000;
    for (;;) {
      const fresh = await this.reader.refetch(this.appId, ACCESS_TOKEN);
      if (fresh !== rejected) return fresh;
      // A held lease or a replacement not yet visible: worth waiting for. A refresh that
      // answered "refreshed" is already in the table: no point in polling.
      if (outcome === "refreshed" || performance.now() >= deadline) return null;
      await this.#sleep(0.2);
    }
  }

  async #send(method, path, token, params, body) {
    const url = new URL(this.baseUrl + path);
    for (const [name, value] of Object.entries(params ?? {})) {
      url.searchParams.set(name, String(value));
    }
    url.searchParams.set("access_token", token);
    const init = {
      method,
      redirect: "manual",
      signal: AbortSignal.timeout(this.#timeoutMs),
      headers: {},
    };
    if (body !== null && body !== undefined) {
      // UTF-8 JSON with Chinese unescaped, as WeChat wants it (JSON.stringify escapes nothing).
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json; charset=utf-8";
    }
    let response;
    let text;
    let failure = null;
    try {
      response = await (this.#fetch ?? globalThis.fetch)(url, init);
      text = await response.text();
    } catch (error) {
      // fetch's errors can quote the URL, and the URL holds the token: the message is
      // redacted here and thrown below, with no error attached.
      failure = `${error?.name ?? "Error"} calling WeChat ${path}: ${describe(error, token)}`;
    }
    if (failure !== null) throw new WeChatTransportError(failure);
    if (response.status >= 500) {
      throw new WeChatTransportError(`WeChat ${path} answered HTTP ${response.status}`);
    }
    let reply;
    try {
      reply = JSON.parse(text);
    } catch {
      // The parse error quotes the body: not kept.
      throw new WeChatTransportError(
        `WeChat ${path} answered HTTP ${response.status} with a body that is not JSON`,
      );
    }
    if (reply === null || typeof reply !== "object" || Array.isArray(reply)) {
      throw new WeChatTransportError(`WeChat ${path} answered JSON that is not an object`);
    }
    return reply;
  }
}

/** A fetch failure's message and its cause's (undici puts the reason there), redacted. */
function describe(error, token) {
  const message = String(error?.message ?? "");
  const cause = error?.cause;
  const reason =
    cause && typeof cause === "object" ? [cause.code, cause.message].filter(Boolean).join(" ") : "";
  return redact(reason ? `${message} (${reason})` : message, token);
}

function errcodeOf(reply) {
  const errcode = "errcode" in reply ? reply.errcode : 0;
  return Number.isInteger(errcode) ? errcode : -2;
}
