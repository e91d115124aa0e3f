// Keeping secrets and tokens out of log lines and error messages.

const SENSITIVE_QUERY = /(secret|corpsecret|access_token|ticket)=[^&\s'"]*/gi;
const MAX_DETAIL = 300;
// Node's network error codes: their messages name the endpoint (host and port), nothing more.
const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
]);
const TIMEOUT_NAMES = new Set(["TimeoutError", "RequestTimeout", "AbortError"]);

/** Mask `secret=`/`access_token=`-style query values and any of `values` in `text`. */
export function redact(text, ...values) {
  let result = String(text).replace(SENSITIVE_QUERY, "$1=***");
  for (const value of values) {
    if (value) result = result.split(value).join("***");
  }
  return result;
}

function bounded(text) {
  const safe = redact(text);
  return safe.length <= MAX_DETAIL ? safe : safe.slice(0, MAX_DETAIL - 1) + "…";
}

/**
 * What may be said about an AWS SDK error without quoting a payload: AWS's own error answers
 * (name and message) and connection failures (the endpoint) say what to fix. Anything else
 * (a deserialisation error can quote the raw response body) is named by its class only.
 */
export function awsErrorDetail(error) {
  const name = typeof error?.name === "string" && error.name ? error.name : "Error";
  const message = typeof error?.message === "string" ? error.message : "";
  const answered =
    error?.$metadata !== undefined && (error.$fault === "client" || error.$fault === "server");
  if (answered) return bounded(message ? `${name}: ${message}` : name);
  if (error?.code === "ERR_MODULE_NOT_FOUND") {
    // Names the missing package and the importing file: what to install, nothing else.
    return bounded(
      "the AWS SDK for JavaScript v3 is not installed (Lambda's Node.js runtimes include it; " +
        `elsewhere npm install it): ${message}`,
    );
  }
  if (CONNECTION_CODES.has(error?.code) || TIMEOUT_NAMES.has(name)) {
    return bounded(`${name}: ${message}`);
  }
  return `${name} (details withheld: they may quote the request or the answer)`;
}
