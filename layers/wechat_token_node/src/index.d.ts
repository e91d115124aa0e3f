// Type declarations for wechat-token (the Node.js consumer layer). Handwritten: the package
// is plain ES modules; test/types/usage.ts is compiled against this file by `npm run
// typecheck` (make node-test).

import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { LambdaClient } from "@aws-sdk/client-lambda";

// ---------------------------------------------------------------------------------- errors

/** Base class of every error the layer throws. None carries a `cause`. */
export class TokenError extends Error {}
/** A setting is missing, malformed or unsafe (e.g. TOKEN_TABLE_NAME, the cache lifetime). */
export class ConfigurationError extends TokenError {}
/** The table holds no usable credential for this app and kind. */
export class TokenNotFoundError extends TokenError {}
/** A platform's authorizer whose merchant revoked the authorization: no token until renewed. */
export class AuthorizationRevokedError extends TokenNotFoundError {}
/** The stored credential is past its conservative expiry. */
export class TokenExpiredError extends TokenError {}
/** The token table could not be read, or holds a record this layer cannot read. */
export class TokenStoreError extends TokenError {}
/** A passive refresh could not be asked for, failed, was refused, or is held back (30 s). */
export class PassiveRefreshError extends TokenError {
  constructor(message: string, options?: { outcome?: string | null });
  /** The passive refresh function's answer, when it gave one. */
  readonly outcome: string | null;
}
/** WeChat answered a non-zero errcode. */
export class WeChatAPIError extends TokenError {
  constructor(errcode: number, errmsg: string, path: string);
  readonly errcode: number;
  readonly errmsg: string;
  readonly path: string;
}
/** No usable answer from WeChat: network, timeout, 5xx, a body that is not a JSON object. */
export class WeChatTransportError extends TokenError {}

// ---------------------------------------------------------------------------------- schema

export type Kind =
  | "access_token"
  | "jsapi_ticket"
  | "wx_card_ticket"
  | "agent_config_ticket"
  | "component_verify_ticket"
  | "component_access_token"
  | "authorization";
export const Kind: {
  readonly ACCESS_TOKEN: "access_token";
  readonly JSAPI_TICKET: "jsapi_ticket";
  readonly WX_CARD_TICKET: "wx_card_ticket";
  readonly AGENT_CONFIG_TICKET: "agent_config_ticket";
  readonly COMPONENT_VERIFY_TICKET: "component_verify_ticket";
  readonly COMPONENT_ACCESS_TOKEN: "component_access_token";
  readonly AUTHORIZATION: "authorization";
};
export const ACCESS_TOKEN: "access_token";
export const JSAPI_TICKET: "jsapi_ticket";
export type TicketType = "jsapi" | "wx_card" | "agent_config";
export const TICKET_KINDS: Readonly<Record<TicketType, Kind>>;
/** 40001, 40014, 42001: WeChat no longer accepts the token. */
export const INVALID_TOKEN_CODES: ReadonlySet<number>;
/** 120 s: the longest cache that keeps consumers inside WeChat's grace (300 - 120 - 60). */
export const SAFE_MAX_CACHE_SECONDS: number;
export const DEFAULT_CACHE_SECONDS: number;

/** `sha256:` and the first 10 hex digits of the value's SHA-256: safe for logs. */
export function fingerprint(value: string): string;

export class CredentialKey {
  constructor(appId: string, kind?: string);
  readonly appId: string;
  readonly kind: string;
  /** A Map key for this credential. */
  readonly id: string;
  itemKey(): { app_id: { S: string }; kind: { S: string } };
}

/** A record's attributes, as the table names them (what `new CredentialRecord()` takes). */
export type CredentialFields = {
  -readonly [
    K in keyof CredentialRecord as CredentialRecord[K] extends Function
      ? never
      : K extends "key" | "hasValue" | "isRevoked"
        ? never
        : K
  ]: CredentialRecord[K];
};

/**
 * A stored credential, with the table's attribute names. `value` is readable but never
 * shown: JSON.stringify, String() and util.inspect give its fingerprint.
 */
export class CredentialRecord {
  constructor(fields?: Partial<CredentialFields>);
  static fromDynamoDB(
    attributes: Record<string, Record<string, unknown>>,
    options?: { strict?: boolean },
  ): CredentialRecord;
  readonly value: string | null;
  readonly refresh_token_cipher: string | null;
  readonly prior_value: string | null;
  readonly key: CredentialKey;
  readonly hasValue: boolean;
  readonly isRevoked: boolean;
  readonly app_id: string;
  readonly kind: string;
  readonly expires_at: number | null;
  readonly fetched_at: number | null;
  readonly previous_fingerprint: string | null;
  readonly previous_valid_until: number | null;
  readonly version: number;
  readonly source: string | null;
  readonly lease_owner: string | null;
  readonly lease_until: number | null;
  readonly last_success_at: number | null;
  readonly last_error_code: string | null;
  readonly last_error_class: string | null;
  readonly last_error_message: string | null;
  readonly last_error_at: number | null;
  readonly calls_day: string | null;
  readonly calls_count: number;
  readonly consumer_calls_day: string | null;
  readonly consumer_calls_count: number;
  readonly triggered_at: number | null;
  readonly trigger_failures: number;
  readonly passive_at: number | null;
  readonly foreign_rotations: number;
  readonly forces_day: string | null;
  readonly forces_count: number;
  readonly last_force_at: number | null;
  readonly bound_to: string | null;
  readonly renewable_at: number | null;
  readonly component_appid: string | null;
  readonly refresh_token_fp: string | null;
  readonly refresh_token_at: number | null;
  readonly revoked_at: number | null;
  readonly create_time: number | null;
  readonly prior_expires_at: number | null;
  readonly info_type: string | null;
  readonly reconciled_at: number | null;
  readonly reconcile_claimed_at: number | null;
  readonly due_shard: string | null;
  readonly due_at: number | null;
  isValid(now: number): boolean;
  remaining(now: number): number;
  fingerprint(): string | null;
  /** True if `stale` (a token or its fingerprint) is the stored current value. */
  holds(stale: string): boolean;
  toJSON(): Record<string, unknown>;
}

// ---------------------------------------------------------------------------------- sources

/** Where a TokenReader gets records from. Rejects with TokenStoreError when it cannot read. */
export interface RecordSource {
  get(key: CredentialKey, consistent: boolean): Promise<CredentialRecord | null>;
}

export class DynamoDBRecordSource implements RecordSource {
  constructor(options?: { client?: DynamoDBClient | null; tableName?: string | null });
  readonly tableName: string;
  client(): Promise<DynamoDBClient>;
  get(key: CredentialKey, consistent?: boolean): Promise<CredentialRecord | null>;
}

export class InMemoryRecordSource implements RecordSource {
  constructor(records?: Map<string, CredentialRecord>);
  readonly records: Map<string, CredentialRecord>;
  reads: number;
  get(key: CredentialKey, consistent?: boolean): Promise<CredentialRecord | null>;
  put(record: CredentialRecord): void;
  delete(key: CredentialKey): void;
}

// ---------------------------------------------------------------------------------- passive

/** The passive refresh function's answer for one credential. */
export type PassiveOutcome =
  | "refreshed"
  | "already_replaced"
  | "lease_held"
  | "token_accepted"
  | "unverified"
  | "rate_limited"
  | "not_due"
  | "failed"
  | (string & {});

export type PassiveRefreshFn = (
  appId: string,
  kind: string,
  staleFingerprint: string,
  errcode: number | null,
) => Promise<PassiveOutcome>;

/** A passive refresh: a LambdaPassiveRefresh, anything with the same invoke(), or a function. */
export type PassiveRefresh = PassiveRefreshFn | { invoke: PassiveRefreshFn };

export const PASSIVE_BACKOFF_SECONDS: number;
export const REPLACED_OUTCOMES: ReadonlySet<string>;

/** Invokes PassiveRefreshFunction with {app_id, kind, stale_token, errcode}. */
export class LambdaPassiveRefresh {
  constructor(options?: { functionName?: string | null; client?: LambdaClient | null });
  readonly functionName: string;
  client(): Promise<LambdaClient>;
  invoke: PassiveRefreshFn;
}

export interface Refusal {
  readonly until: number;
  readonly reason: string;
  readonly outcome: string | null;
}

/** The negative cache: credentials this process does not report again yet. */
export class PassiveBackoff {
  constructor(seconds?: number);
  readonly seconds: number;
  refusal(key: CredentialKey, now: number): Refusal | null;
  hold(key: CredentialKey, now: number, reason: string, outcome?: string | null): void;
  clear(key?: CredentialKey | null): void;
  check(key: CredentialKey, now: number): void;
  /** One request for `key` unless held back; a failure or any answer but a replacement holds. */
  ask(
    passive: { invoke: PassiveRefreshFn },
    key: CredentialKey,
    stale: string,
    errcode: number | null,
    now: number,
  ): Promise<PassiveOutcome>;
}

// ---------------------------------------------------------------------------------- reading

export interface TokenReaderOptions {
  /** Default TOKEN_TABLE_NAME. Not with `source`. */
  tableName?: string | null;
  /** Default: a DynamoDBClient created on the first read. Not with `source`. */
  client?: DynamoDBClient | null;
  source?: RecordSource | null;
  /** 0 to 120; default WECHAT_TOKEN_CACHE_SECONDS, else 60. Never past expires_at. */
  cacheSeconds?: number;
  /** Seconds since the epoch. */
  clock?: () => number;
  /** Default: from PASSIVE_REFRESH_FUNCTION_NAME; null: never ask. */
  passiveRefresh?: PassiveRefresh | null;
}

export class TokenReader {
  constructor(options?: TokenReaderOptions);
  readonly source: RecordSource;
  readonly cacheSeconds: number;
  readonly clock: () => number;
  readonly backoff: PassiveBackoff;
  /** The cached value while it is fresh, else null; no I/O. */
  cached(appId: string, kind?: string): string | null;
  get(appId?: string | null, kind?: string): Promise<string>;
  /** Drop the cached value and read the table with a strongly consistent read. */
  refetch(appId?: string | null, kind?: string): Promise<string>;
  invalidate(appId?: string | null, kind?: string): void;
  clear(): void;
  read(appId: string, kind?: string): Promise<CredentialRecord | null>;
}

export function defaultReader(): TokenReader;
export function configure(options?: TokenReaderOptions): TokenReader;
/** The app's current access_token (cached ≤ 60 s, never past its expiry). */
export function getAccessToken(appId?: string | null): Promise<string>;

// ---------------------------------------------------------------------------------- WeChat

export interface WeChatClientOptions {
  baseUrl?: string | null;
  reader?: TokenReader | null;
  passiveRefresh?: PassiveRefresh | null;
  fetch?: typeof globalThis.fetch | null;
  timeoutSeconds?: number;
  waitSeconds?: number;
  sleep?: (seconds: number) => Promise<void>;
}

export type WeChatReply = Record<string, any>;
export type QueryParams = Record<string, string | number | boolean>;

export class WeChatClient {
  constructor(appId?: string | null, options?: WeChatClientOptions);
  readonly appId: string;
  readonly baseUrl: string;
  readonly reader: TokenReader;
  get<T extends WeChatReply = WeChatReply>(path: string, params?: QueryParams | null): Promise<T>;
  post<T extends WeChatReply = WeChatReply>(
    path: string,
    body?: unknown,
    params?: QueryParams | null,
  ): Promise<T>;
  request<T extends WeChatReply = WeChatReply>(
    method: string,
    path: string,
    options?: { params?: QueryParams | null; body?: unknown },
  ): Promise<T>;
}

// ---------------------------------------------------------------------------------- JS-SDK

/** The fields wx.config (or WeCom's wx.agentConfig) needs, minus jsApiList. */
export interface JsapiConfig {
  appId: string;
  timestamp: number;
  nonceStr: string;
  signature: string;
}

export interface JsapiSignatureOptions {
  wechatAppId?: string | null;
  ticketType?: TicketType;
  nonceStr?: string | null;
  timestamp?: number | null;
  reader?: TokenReader | null;
}

export function getTicket(appId?: string | null, ticketType?: TicketType): Promise<string>;
export function sign(ticket: string, nonceStr: string, timestamp: number, url: string): string;
export function jsapiSignature(
  url: string,
  appId?: string | null,
  options?: JsapiSignatureOptions,
): Promise<JsapiConfig>;
export function jsapiSignature(url: string, options: JsapiSignatureOptions): Promise<JsapiConfig>;

// ---------------------------------------------------------------------------------- logging

/** Where the layer's warnings go (default console); null silences them. */
export function setLogger(logger: { warn(message: string): void } | null): void;
