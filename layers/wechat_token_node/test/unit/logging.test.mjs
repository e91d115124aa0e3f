// Nothing the layer does puts a token in a log line: the SDK clients it uses (its own or the
// caller's) keep their loggers at warnings and errors, because at info the SDK logs every
// command's output, and a GetItem answer holds the token. Real clients, real middleware;
// only the HTTP handler is a stand-in.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Readable } from "node:stream";
import { inspect } from "node:util";

import { DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import { LambdaClient } from "@aws-sdk/client-lambda";

import { LambdaPassiveRefresh, TokenReader, fingerprint } from "../../src/index.mjs";
import { APP, ManualClock, START, item } from "./support.mjs";

const TOKEN = "tok-never-logged-0123456789";

function recordingLogger() {
  const lines = [];
  const record = (...args) => lines.push(inspect(args, { depth: 20 }));
  return {
    lines,
    logger: { trace: record, debug: record, info: record, warn: record, error: record },
  };
}

/** An HTTP handler answering every request with `body` (what the service would send). */
function answering(body, headers = {}) {
  return {
    handle: async () => ({
      response: {
        statusCode: 200,
        headers: { "content-type": "application/x-amz-json-1.0", ...headers },
        body: Readable.from([Buffer.from(typeof body === "string" ? body : JSON.stringify(body))]),
      },
    }),
  };
}

const common = {
  region: "us-east-1",
  credentials: { accessKeyId: "local", secretAccessKey: "local" },
};

test("without the layer, the SDK's info log holds the token (why the layer quiets it)", async () => {
  const { lines, logger } = recordingLogger();
  const client = new DynamoDBClient({
    ...common,
    logger,
    requestHandler: answering({ Item: item(TOKEN) }),
  });
  await client.send(
    new GetItemCommand({
      TableName: "t",
      Key: { app_id: { S: APP }, kind: { S: "access_token" } },
    }),
  );
  assert.ok(lines.join("\n").includes(TOKEN));
});

test("a caller's DynamoDB client with a logger never logs a token the layer reads", async () => {
  const { lines, logger } = recordingLogger();
  const client = new DynamoDBClient({
    ...common,
    logger,
    requestHandler: answering({ Item: item(TOKEN, { expiresAt: START + 6900 }) }),
  });
  const tokens = new TokenReader({
    client,
    tableName: "t",
    passiveRefresh: null,
    clock: new ManualClock().read,
  });
  assert.equal(await tokens.get(APP), TOKEN);
  assert.ok(!lines.join("\n").includes(TOKEN), lines.join("\n"));
});

test("warnings and errors still reach the caller's logger", async () => {
  const { lines, logger } = recordingLogger();
  const failing = {
    handle: async () => ({
      response: {
        statusCode: 400,
        headers: { "content-type": "application/x-amz-json-1.0" },
        body: Readable.from([
          Buffer.from(
            JSON.stringify({
              __type: "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
              message: "Requested resource not found",
            }),
          ),
        ]),
      },
    }),
  };
  const client = new DynamoDBClient({ ...common, logger, requestHandler: failing, maxAttempts: 1 });
  const tokens = new TokenReader({
    client,
    tableName: "t",
    passiveRefresh: null,
    clock: new ManualClock().read,
  });
  await assert.rejects(tokens.get(APP), /ResourceNotFoundException: Requested resource not found/);
  assert.ok(
    lines.some((line) => line.includes("ResourceNotFoundException")),
    "the error was logged",
  );
});

test("a caller's Lambda client with a logger never logs the payload or the answer", async () => {
  const { lines, logger } = recordingLogger();
  const answer = {
    credentials: [
      { app_id: APP, kind: "access_token", outcome: "refreshed", fingerprint: "sha256:abc" },
    ],
  };
  const client = new LambdaClient({
    ...common,
    logger,
    requestHandler: answering(answer, { "content-type": "application/json" }),
  });
  const passive = new LambdaPassiveRefresh({ functionName: "PassiveRefreshFunction", client });
  assert.equal(await passive.invoke(APP, "access_token", fingerprint(TOKEN), 40001), "refreshed");
  const logged = lines.join("\n");
  assert.ok(!logged.includes(fingerprint(TOKEN)) && !logged.includes("refreshed"), logged);
});
