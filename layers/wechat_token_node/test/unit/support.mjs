// Shared by the unit tests: a settable clock, stored records, and a fake WeChat behind fetch.

import { CredentialRecord, InMemoryRecordSource } from "../../src/index.mjs";

export const START = 1_790_000_000;
export const APP = "wxnode0000000001";

export class ManualClock {
  constructor(now = START) {
    this.now = now;
    this.read = () => this.now;
  }

  advance(seconds) {
    this.now += seconds;
  }
}

/** A record as the refresher stores it: `value`, valid for `lifetime` seconds from `now`. */
export function stored(
  value,
  { appId = APP, kind = "access_token", now = START, lifetime = 6900, ...rest } = {},
) {
  return new CredentialRecord({
    app_id: appId,
    kind,
    value,
    expires_at: value === null ? null : now + lifetime,
    fetched_at: now,
    last_success_at: now,
    version: 1,
    ...rest,
  });
}

export function sourceWith(...records) {
  const source = new InMemoryRecordSource();
  for (const record of records) source.put(record);
  return source;
}

/** The low-level DynamoDB item the refresher writes for `value`. */
export function item(
  value,
  { appId = APP, kind = "access_token", expiresAt = START + 6900, extra = {} } = {},
) {
  return {
    app_id: { S: appId },
    kind: { S: kind },
    value: { S: value },
    expires_at: { N: String(expiresAt) },
    fetched_at: { N: String(expiresAt - 6900) },
    version: { N: "3" },
    ...extra,
  };
}

/**
 * WeChat's business API as far as WeChatClient cares: a call with an accepted token answers
 * `reply`, one with any other token 40001. `script` holds replies to give first, in order.
 * Every request is recorded (method, path, query, body).
 */
export class FakeWeChat {
  constructor() {
    this.accepted = new Set();
    this.script = [];
    this.requests = [];
    this.reply = { ip_list: ["101.226.103.0/25"] };
    this.fetch = async (url, init = {}) => this.#answer(new URL(url), init);
  }

  async #answer(url, init) {
    const token = url.searchParams.get("access_token");
    this.requests.push({
      method: init.method ?? "GET",
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      body: init.body ?? null,
      headers: init.headers ?? {},
    });
    const next = this.script.shift();
    if (typeof next === "function") return next(url, init);
    if (next !== undefined) return json(next);
    if (!this.accepted.has(token))
      return json({
        errcode: 40001,
        errmsg: `invalid credential, access_token is invalid or not latest rid: ${token}`,
      });
    return json(this.reply);
  }

  paths() {
    return this.requests.map((r) => r.path);
  }
}

export function json(body, status = 200) {
  return new Response(typeof body === "string" ? body : JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json" },
  });
}

/** Collects what the layer warns about (setLogger). */
export class Warnings {
  constructor() {
    this.lines = [];
    this.warn = (message) => this.lines.push(String(message));
  }

  text() {
    return this.lines.join("\n");
  }
}
