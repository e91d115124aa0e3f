// Errors consumers can catch. Messages say what to check; they never hold a token or secret.
//
//   TokenError                      everything the layer throws
//   ├── ConfigurationError          a setting is missing, malformed or unsafe
//   ├── TokenNotFoundError          the table holds no usable credential for the app and kind
//   │   └── AuthorizationRevokedError   a platform's authorizer: the merchant revoked it
//   ├── TokenExpiredError           the stored credential is past its conservative expiry
//   ├── TokenStoreError             the token table could not be read, or holds a bad record
//   ├── PassiveRefreshError         a passive refresh could not be asked for, failed, was
//   │                               refused, or is held back (the negative cache)
//   ├── WeChatAPIError              WeChat answered a non-zero errcode (WeChatClient)
//   └── WeChatTransportError        no usable answer from WeChat: network, timeout, 5xx
//
// None of them is ever thrown with the error that caused it attached (no `cause`): an AWS SDK
// or fetch error can quote a request URL, a response body or a payload, so the layer copies
// what is safe into its own message and drops the rest. The same hierarchy as the Python
// layer's wechat_token/errors.py.

export class TokenError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

export class ConfigurationError extends TokenError {}

export class TokenNotFoundError extends TokenError {}

/**
 * A third-party platform's authorizer ("<component_appid>:<authorizer_appid>") whose merchant
 * revoked the platform's authorization: there is no token until they authorize it again.
 */
export class AuthorizationRevokedError extends TokenNotFoundError {}

export class TokenExpiredError extends TokenError {}

export class TokenStoreError extends TokenError {}

export class PassiveRefreshError extends TokenError {
  /** `outcome` is the passive refresh function's answer, when it gave one. */
  constructor(message, { outcome = null } = {}) {
    super(message);
    this.outcome = outcome;
  }
}

export class WeChatAPIError extends TokenError {
  constructor(errcode, errmsg, path) {
    super(`WeChat ${path} answered ${errcode}: ${errmsg}`);
    this.errcode = errcode;
    this.errmsg = errmsg;
    this.path = path;
  }
}

export class WeChatTransportError extends TokenError {}

/** A stored item does not match the record schema (names attributes and types, never values). */
export class SchemaError extends Error {
  constructor(message) {
    super(message);
    this.name = "SchemaError";
  }
}
