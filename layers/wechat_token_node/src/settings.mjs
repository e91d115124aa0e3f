// The environment variables the layer reads, their defaults and bounds: the same names, values
// and messages as the Python layer's wechat_token/settings.py (a test compares the two).

import { ConfigurationError } from "./errors.mjs";

export const TABLE_ENV = "TOKEN_TABLE_NAME";
export const APP_ID_ENV = "WECHAT_APP_ID";
export const CACHE_SECONDS_ENV = "WECHAT_TOKEN_CACHE_SECONDS";
export const PASSIVE_FUNCTION_ENV = "PASSIVE_REFRESH_FUNCTION_NAME";
export const STRICT_ENV = "WECHAT_TOKEN_STRICT_RECORDS";
export const API_BASE_URL_ENV = "WECHAT_API_BASE_URL";
export const DEFAULT_API_BASE_URL = "https://api.weixin.qq.com";
// The setting earlier versions read; named in a warning so that an upgrade is not silent.
export const RETIRED_FUNCTION_ENV = "REFRESHER_FUNCTION_NAME";

// How long a consumer may keep a token in memory. After a rotation WeChat accepts the old
// token for 300 s of grace, but its servers disagree by up to 120 s, so some of them stop
// accepting it after 180 s. A consumer must re-read inside those 180 s; keeping 60 s back
// for the refresher's write, the read itself and the consumer's own clock leaves 120 s.
export const WECHAT_GRACE_SECONDS = 300;
export const WECHAT_SERVER_SKEW_SECONDS = 120;
export const SWITCH_MARGIN_SECONDS = 60;
export const SAFE_MAX_CACHE_SECONDS =
  WECHAT_GRACE_SECONDS - WECHAT_SERVER_SKEW_SECONDS - SWITCH_MARGIN_SECONDS;
export const DEFAULT_CACHE_SECONDS = 60;

// Why the cache may not be longer: stated in every refusal of a longer one.
export const SAFE_MAX_WHY =
  ` seconds: after a rotation WeChat accepts the old token for ${WECHAT_GRACE_SECONDS} s, ` +
  `but its servers disagree by up to ${WECHAT_SERVER_SKEW_SECONDS} s, and ` +
  `${SWITCH_MARGIN_SECONDS} s are kept for the refresher's write and the read ` +
  `(${WECHAT_GRACE_SECONDS} - ${WECHAT_SERVER_SKEW_SECONDS} - ${SWITCH_MARGIN_SECONDS} = ` +
  `${SAFE_MAX_CACHE_SECONDS} s at most; default ${DEFAULT_CACHE_SECONDS})`;

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

export function processEnv() {
  return process.env;
}

function raw(env, name) {
  return String(env[name] ?? "").trim();
}

/** A non-empty string; `fallback` when unset, or an error naming `what` it should be. */
export function envText(env, name, { fallback = null, what = "" } = {}) {
  const value = raw(env, name);
  if (value) return value;
  if (fallback !== null) return fallback;
  throw new ConfigurationError(
    `${name} is not set: set it to ${what} (see the README's configuration).`,
  );
}

/** A number in [low, high]; `fallback` when unset. */
export function envNumber(env, name, fallback, low, high, { why = "" } = {}) {
  const text = raw(env, name);
  if (!text) return fallback;
  if (!DECIMAL.test(text)) throw new ConfigurationError(`${name}='${text}' is not a number.`);
  const value = Number(text);
  if (!(value >= low && value <= high)) {
    throw new ConfigurationError(`${name}='${text}' is out of range: use ${low} to ${high}${why}.`);
  }
  return value;
}

/** An http(s) base URL without its trailing slash. */
export function envUrl(env, name, fallback) {
  const value = raw(env, name) || fallback;
  if (!value.startsWith("https://") && !value.startsWith("http://")) {
    throw new ConfigurationError(`${name}='${value}' is not an http(s) URL.`);
  }
  return value.replace(/\/+$/, "");
}

export function envFlag(env, name) {
  return ["1", "true", "yes"].includes(raw(env, name).toLowerCase());
}

/** The cache lifetime from WECHAT_TOKEN_CACHE_SECONDS (0 to the safe maximum). */
export function cacheSecondsFromEnv() {
  return envNumber(
    processEnv(),
    CACHE_SECONDS_ENV,
    DEFAULT_CACHE_SECONDS,
    0,
    SAFE_MAX_CACHE_SECONDS,
    { why: SAFE_MAX_WHY },
  );
}

/** `seconds` if it is a safe cache lifetime, else a ConfigurationError saying why. */
export function checkedCacheSeconds(seconds) {
  if (typeof seconds !== "number" || !(seconds >= 0 && seconds <= SAFE_MAX_CACHE_SECONDS)) {
    throw new ConfigurationError(
      `cacheSeconds=${String(seconds)} is out of range: use 0 to ` +
        `${SAFE_MAX_CACHE_SECONDS}${SAFE_MAX_WHY}.`,
    );
  }
  return seconds;
}

export function appIdFromEnv() {
  return envText(processEnv(), APP_ID_ENV, {
    what: "the app's key in the wechat-token registry, or pass appId",
  });
}

export function tableNameFromEnv() {
  return envText(processEnv(), TABLE_ENV, {
    what: "the name of the wechat-token DynamoDB table (the stack output TokenTableName)",
  });
}
