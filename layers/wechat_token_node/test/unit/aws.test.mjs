// The two AWS calls the layer makes, against aws-sdk-client-mock: GetItem on the token table
// and the synchronous Invoke of PassiveRefreshFunction, their inputs, answers and failures.

import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";

import { DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import { InvokeCommand, LambdaClient } from "@aws-sdk/client-lambda";
import { mockClient } from "aws-sdk-client-mock";

import {
  ConfigurationError,
  CredentialKey,
  DynamoDBRecordSource,
  LambdaPassiveRefresh,
  PassiveRefreshError,
  TokenReader,
  TokenStoreError,
  fingerprint,
} from "../../src/index.mjs";
import { APP, ManualClock, START, item } from "./support.mjs";

const dynamodb = mockClient(DynamoDBClient);
const lambda = mockClient(LambdaClient);
const TABLE = "tokens-unit";

function answer(body, extra = {}) {
  return { StatusCode: 200, Payload: new TextEncoder().encode(JSON.stringify(body)), ...extra };
}

function serviceError(name, message, fault = "client") {
  return Object.assign(new Error(message), {
    name,
    $fault: fault,
    $metadata: { httpStatusCode: 400 },
  });
}

beforeEach(() => {
  dynamodb.reset();
  lambda.reset();
  delete process.env.TOKEN_TABLE_NAME;
  delete process.env.PASSIVE_REFRESH_FUNCTION_NAME;
});

afterEach(() => {
  dynamodb.reset();
  lambda.reset();
});

test("a read is one GetItem on (app_id, kind), consistent only when asked", async () => {
  dynamodb.on(GetItemCommand).resolves({ Item: item("tok-dynamo") });
  const source = new DynamoDBRecordSource({ client: new DynamoDBClient({}), tableName: TABLE });
  const record = await source.get(new CredentialKey(APP), false);
  assert.equal(record.value, "tok-dynamo");
  await source.get(new CredentialKey(APP, "jsapi_ticket"), true);
  const inputs = dynamodb.commandCalls(GetItemCommand).map((call) => call.args[0].input);
  assert.deepEqual(inputs, [
    {
      TableName: TABLE,
      Key: { app_id: { S: APP }, kind: { S: "access_token" } },
      ConsistentRead: false,
    },
    {
      TableName: TABLE,
      Key: { app_id: { S: APP }, kind: { S: "jsapi_ticket" } },
      ConsistentRead: true,
    },
  ]);
});

test("the table name comes from TOKEN_TABLE_NAME, resolved on first use", async () => {
  const source = new DynamoDBRecordSource({ client: new DynamoDBClient({}) });
  assert.equal(String(source), "DynamoDB table '$TOKEN_TABLE_NAME'");
  await assert.rejects(source.get(new CredentialKey(APP)), ConfigurationError);
  process.env.TOKEN_TABLE_NAME = TABLE;
  dynamodb.on(GetItemCommand).resolves({});
  assert.equal(await source.get(new CredentialKey(APP)), null);
  assert.equal(String(source), `DynamoDB table '${TABLE}'`);
});

test("an AWS error becomes a TokenStoreError saying what to check, with no cause", async () => {
  dynamodb
    .on(GetItemCommand)
    .rejects(serviceError("AccessDeniedException", "not authorized to perform dynamodb:GetItem"));
  const source = new DynamoDBRecordSource({ client: new DynamoDBClient({}), tableName: TABLE });
  await assert.rejects(source.get(new CredentialKey(APP)), (error) => {
    assert.ok(error instanceof TokenStoreError);
    assert.equal(error.cause, undefined);
    assert.match(
      error.message,
      /^Could not read access_token for app 'wxnode0000000001' from DynamoDB table 'tokens-unit': AccessDeniedException: not authorized to perform dynamodb:GetItem\. Check the function's IAM policy/,
    );
    return true;
  });
});

test("an error that may quote the answer is named by its class only", async () => {
  const garbled = Object.assign(
    new SyntaxError('Unexpected token in {"value":{"S":"leaked-token"}}'),
    { $metadata: {} },
  );
  dynamodb.on(GetItemCommand).rejects(garbled);
  const source = new DynamoDBRecordSource({ client: new DynamoDBClient({}), tableName: TABLE });
  await assert.rejects(source.get(new CredentialKey(APP)), (error) => {
    assert.ok(!error.message.includes("leaked-token"), error.message);
    assert.match(error.message, /SyntaxError \(details withheld/);
    return true;
  });
  const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9"), {
    code: "ECONNREFUSED",
  });
  dynamodb.on(GetItemCommand).rejects(refused);
  await assert.rejects(
    source.get(new CredentialKey(APP)),
    /: Error: connect ECONNREFUSED 127\.0\.0\.1:9\. Check/,
  );
});

test("a record that does not match the schema is a TokenStoreError naming the attribute", async () => {
  dynamodb
    .on(GetItemCommand)
    .resolves({ Item: item("tok-x", { extra: { expires_at: { S: "tomorrow" } } }) });
  const source = new DynamoDBRecordSource({ client: new DynamoDBClient({}), tableName: TABLE });
  await assert.rejects(source.get(new CredentialKey(APP)), (error) => {
    assert.ok(error instanceof TokenStoreError);
    assert.match(
      error.message,
      /does not match this layer's schema: attribute 'expires_at' does not convert to a number\. Was it edited by hand/,
    );
    assert.ok(!error.message.includes("tok-x"));
    return true;
  });
});

test("a reader on DynamoDB reads once per cache period", async () => {
  const clock = new ManualClock();
  dynamodb.on(GetItemCommand).resolves({ Item: item("tok-cached", { expiresAt: START + 6900 }) });
  const tokens = new TokenReader({
    client: new DynamoDBClient({}),
    tableName: TABLE,
    passiveRefresh: null,
    clock: clock.read,
  });
  await Promise.all(Array.from({ length: 20 }, () => tokens.get(APP)));
  clock.advance(30);
  await tokens.get(APP);
  assert.equal(dynamodb.commandCalls(GetItemCommand).length, 1);
});

test("a passive refresh invokes the function synchronously with exactly four fields", async () => {
  lambda
    .on(InvokeCommand)
    .resolves(
      answer({ credentials: [{ app_id: APP, kind: "access_token", outcome: "refreshed" }] }),
    );
  const passive = new LambdaPassiveRefresh({
    functionName: "PassiveRefreshFunction",
    client: new LambdaClient({}),
  });
  const outcome = await passive.invoke(APP, "access_token", fingerprint("rejected-token"), 40001);
  assert.equal(outcome, "refreshed");
  const [call] = lambda.commandCalls(InvokeCommand);
  const input = call.args[0].input;
  assert.equal(input.FunctionName, "PassiveRefreshFunction");
  assert.equal(input.InvocationType, "RequestResponse");
  const payload = JSON.parse(new TextDecoder().decode(input.Payload));
  assert.deepEqual(Object.keys(payload), ["app_id", "kind", "stale_token", "errcode"]);
  assert.deepEqual(payload, {
    app_id: APP,
    kind: "access_token",
    stale_token: fingerprint("rejected-token"),
    errcode: 40001,
  });
});

test("the outcome is the one for this credential, else the first, else unknown", async () => {
  const passive = new LambdaPassiveRefresh({ functionName: "f", client: new LambdaClient({}) });
  lambda.on(InvokeCommand).resolves(
    answer({
      credentials: [
        { app_id: APP, kind: "access_token", outcome: "already_replaced" },
        { app_id: APP, kind: "jsapi_ticket", outcome: "refreshed" },
      ],
    }),
  );
  assert.equal(await passive.invoke(APP, "jsapi_ticket", "sha256:0", 40001), "refreshed");
  lambda
    .on(InvokeCommand)
    .resolves(answer({ credentials: [{ app_id: "x", outcome: "rate_limited" }] }));
  assert.equal(await passive.invoke(APP, "access_token", "sha256:0", 40001), "rate_limited");
  lambda.on(InvokeCommand).resolves(answer(null));
  assert.equal(await passive.invoke(APP, "access_token", "sha256:0", 40001), "unknown");
});

test("a FunctionError or an invoke failure is a PassiveRefreshError without secrets", async () => {
  const passive = new LambdaPassiveRefresh({
    functionName: "PassiveRefreshFunction",
    client: new LambdaClient({}),
  });
  lambda
    .on(InvokeCommand)
    .resolves(
      answer(
        { errorType: "EventError", errorMessage: "bad event secret=abc123&x" },
        { FunctionError: "Unhandled" },
      ),
    );
  await assert.rejects(passive.invoke(APP, "access_token", "sha256:0", 40001), (error) => {
    assert.ok(error instanceof PassiveRefreshError);
    assert.equal(
      error.message,
      "The passive refresh function 'PassiveRefreshFunction' failed for wxnode0000000001/access_token: bad event secret=***&x",
    );
    return true;
  });
  lambda
    .on(InvokeCommand)
    .rejects(
      serviceError("AccessDeniedException", "not authorized to perform lambda:InvokeFunction"),
    );
  await assert.rejects(passive.invoke(APP, "access_token", "sha256:0", 40001), (error) => {
    assert.ok(error instanceof PassiveRefreshError);
    assert.equal(error.cause, undefined);
    assert.match(
      error.message,
      /^Could not invoke the passive refresh function 'PassiveRefreshFunction' for wxnode0000000001\/access_token: AccessDeniedException: not authorized to perform lambda:InvokeFunction\. Check lambda:InvokeFunction/,
    );
    return true;
  });
});

test("the function name comes from PASSIVE_REFRESH_FUNCTION_NAME", async () => {
  const passive = new LambdaPassiveRefresh({ client: new LambdaClient({}) });
  await assert.rejects(
    passive.invoke(APP),
    /PASSIVE_REFRESH_FUNCTION_NAME is not set: set it to the stack output PassiveRefreshFunctionName/,
  );
  process.env.PASSIVE_REFRESH_FUNCTION_NAME = "from-env";
  lambda.on(InvokeCommand).resolves(answer({ credentials: [{ outcome: "lease_held" }] }));
  assert.equal(await passive.invoke(APP), "lease_held");
  assert.equal(lambda.commandCalls(InvokeCommand)[0].args[0].input.FunctionName, "from-env");
  assert.equal(String(passive), "LambdaPassiveRefresh(from-env)");
});

test("an expired record in DynamoDB is reported once, then served fresh", async () => {
  const clock = new ManualClock();
  dynamodb
    .on(GetItemCommand)
    .resolvesOnce({ Item: item("expired-token", { expiresAt: START - 1 }) })
    .resolves({ Item: item("fresh-token") });
  lambda
    .on(InvokeCommand)
    .resolves(answer({ credentials: [{ app_id: APP, outcome: "refreshed" }] }));
  const tokens = new TokenReader({
    client: new DynamoDBClient({}),
    tableName: TABLE,
    clock: clock.read,
    passiveRefresh: new LambdaPassiveRefresh({
      functionName: "PassiveRefreshFunction",
      client: new LambdaClient({}),
    }),
  });
  assert.equal(await tokens.get(APP), "fresh-token");
  const payload = JSON.parse(
    new TextDecoder().decode(lambda.commandCalls(InvokeCommand)[0].args[0].input.Payload),
  );
  assert.deepEqual(payload, {
    app_id: APP,
    kind: "access_token",
    stale_token: fingerprint("expired-token"),
    errcode: 42001,
  });
  const consistency = dynamodb
    .commandCalls(GetItemCommand)
    .map((c) => c.args[0].input.ConsistentRead);
  assert.deepEqual(consistency, [false, true]);
});
