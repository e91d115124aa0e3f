// Where the reader gets records from: anything with `get(key, consistent)` resolving to a
// CredentialRecord or null (a "record source"). In Lambda that is DynamoDBRecordSource (one
// GetItem); in tests InMemoryRecordSource. A source throws TokenStoreError when it cannot
// answer, and its String() names where it reads from (error messages quote it).

import { SchemaError, TokenStoreError } from "./errors.mjs";
import { CredentialRecord } from "./record.mjs";
import { awsErrorDetail } from "./redaction.mjs";
import { TABLE_ENV, tableNameFromEnv } from "./settings.mjs";

const INSPECT = Symbol.for("nodejs.util.inspect.custom");
const QUIETED = Symbol.for("wechat-token.quiet-logger");

let dynamodbSdk = null;

/** The DynamoDB client package, loaded on the first read: importing the layer costs nothing. */
export function loadDynamoDBSdk() {
  dynamodbSdk ??= import("@aws-sdk/client-dynamodb");
  return dynamodbSdk;
}

/**
 * Keep an SDK client's logger at warnings and errors: at info the SDK logs every command's
 * output, and a GetItem answer holds the token. The client may be the caller's own.
 */
export function quietClientLogger(client) {
  const config = client?.config;
  if (config === undefined || config === null || config.logger?.[QUIETED]) return;
  const inner = config.logger;
  config.logger = {
    [QUIETED]: true,
    trace() {},
    debug() {},
    info() {},
    warn: (...args) => inner?.warn?.(...args),
    error: (...args) => inner?.error?.(...args),
  };
}

/**
 * Records from the token table, one GetItem per call. `tableName` defaults to
 * TOKEN_TABLE_NAME and `client` to a DynamoDBClient made on first use (short timeouts, three
 * attempts), both resolved lazily, so constructing one costs nothing.
 */
export class DynamoDBRecordSource {
  #client;
  #tableName;

  constructor({ client = null, tableName = null } = {}) {
    this.#client = client;
    this.#tableName = tableName;
  }

  get tableName() {
    this.#tableName ??= tableNameFromEnv();
    return this.#tableName;
  }

  async client() {
    if (this.#client === null) {
      const { DynamoDBClient } = await loadDynamoDBSdk();
      this.#client ??= new DynamoDBClient({
        maxAttempts: 3,
        requestHandler: { connectionTimeout: 2000, requestTimeout: 3000 },
      });
    }
    quietClientLogger(this.#client);
    return this.#client;
  }

  toString() {
    return `DynamoDB table '${this.#tableName ?? "$" + TABLE_ENV}'`;
  }

  [INSPECT]() {
    const name = this.#tableName === null ? "null" : `'${this.#tableName}'`;
    return `DynamoDBRecordSource { tableName: ${name} }`;
  }

  async get(key, consistent = false) {
    const table = this.tableName;
    let response;
    let failure = null;
    try {
      const [client, { GetItemCommand }] = await Promise.all([this.client(), loadDynamoDBSdk()]);
      response = await client.send(
        new GetItemCommand({ TableName: table, Key: key.itemKey(), ConsistentRead: consistent }),
      );
    } catch (error) {
      // Every failure becomes a TokenStoreError, thrown below without the SDK's error attached.
      failure = awsErrorDetail(error);
    }
    if (failure !== null) {
      throw new TokenStoreError(
        `Could not read ${key.kind} for app '${key.appId}' from DynamoDB table '${table}': ` +
          `${failure}. Check the function's IAM policy (dynamodb:GetItem on the table: attach ` +
          "the stack's ConsumerPolicy) and that the table exists in this region.",
      );
    }
    const item = response?.Item;
    if (!item || Object.keys(item).length === 0) return null;
    return recordOf(item, key, table);
  }
}

function recordOf(item, key, table) {
  let problem;
  try {
    return CredentialRecord.fromDynamoDB(item);
  } catch (error) {
    problem =
      error instanceof SchemaError
        ? error.message // names attributes and types, never values
        : `an attribute does not convert (${error?.name ?? "Error"})`;
  }
  throw new TokenStoreError(
    `The ${key.kind} record for app '${key.appId}' in DynamoDB table '${table}' does not match ` +
      `this layer's schema: ${problem}. Was it edited by hand, or written by a newer refresher? ` +
      "Update the layer, or let the refresher rewrite the record.",
  );
}

/**
 * Records kept in a Map: for tests, local runs, and consumers' own unit tests. `records` may
 * be shared by several sources (each counting its own `reads`).
 */
export class InMemoryRecordSource {
  constructor(records = new Map()) {
    this.records = records;
    this.reads = 0;
  }

  toString() {
    return "the in-memory record source";
  }

  [INSPECT]() {
    return `InMemoryRecordSource { records: ${this.records.size}, reads: ${this.reads} }`;
  }

  toJSON() {
    return { records: this.records.size, reads: this.reads };
  }

  async get(key) {
    this.reads += 1;
    return this.records.get(key.id) ?? null;
  }

  put(record) {
    this.records.set(record.key.id, record);
  }

  delete(key) {
    this.records.delete(key.id);
  }
}
