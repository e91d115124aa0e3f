// wechat-token for Node.js: read WeChat credentials that the wechat-token refresher keeps
// fresh in DynamoDB, with the same guarantees as the Python layer (wechat_token).
//
//   import { getAccessToken, WeChatClient, jsapiSignature } from "wechat-token";
//   const token = await getAccessToken();          // app from WECHAT_APP_ID
//   const client = new WeChatClient();             // injects the token, recovers from 40001
//
// Importing this module creates no client and loads no AWS SDK: the DynamoDB client loads on
// the first read, the Lambda client on the first passive refresh.

export {
  AuthorizationRevokedError,
  ConfigurationError,
  PassiveRefreshError,
  TokenError,
  TokenExpiredError,
  TokenNotFoundError,
  TokenStoreError,
  WeChatAPIError,
  WeChatTransportError,
} from "./errors.mjs";
export { setLogger } from "./log.mjs";
export {
  LambdaPassiveRefresh,
  PASSIVE_BACKOFF_SECONDS,
  PassiveBackoff,
  REPLACED_OUTCOMES,
} from "./passive.mjs";
export { TokenReader, configure, defaultReader, getAccessToken } from "./reader.mjs";
export {
  ACCESS_TOKEN,
  CredentialKey,
  CredentialRecord,
  INVALID_TOKEN_CODES,
  JSAPI_TICKET,
  Kind,
  TICKET_KINDS,
  fingerprint,
} from "./record.mjs";
export { DEFAULT_CACHE_SECONDS, SAFE_MAX_CACHE_SECONDS } from "./settings.mjs";
export { DynamoDBRecordSource, InMemoryRecordSource } from "./store.mjs";
export { WeChatClient } from "./client.mjs";
export { getTicket, jsapiSignature, sign } from "./jssdk.mjs";
