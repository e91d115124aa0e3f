// The package as consumers import it: its public names, a free import (no AWS SDK, no
// client), and the JS-SDK helpers on top of the process-wide reader.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { beforeEach, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import * as layer from "wechat-token";
import { configure, getTicket, jsapiSignature, sign } from "wechat-token";
import { APP, ManualClock, sourceWith, stored } from "./support.mjs";

const run = promisify(execFile);
const INDEX = fileURLToPath(new URL("../../src/index.mjs", import.meta.url));

beforeEach(() => {
  delete process.env.WECHAT_APP_ID;
});

test("the public API is the Python layer's, in JavaScript's spelling", () => {
  for (const name of [
    "getAccessToken",
    "getTicket",
    "jsapiSignature",
    "WeChatClient",
    "TokenReader",
    "configure",
    "TokenError",
    "ConfigurationError",
    "TokenNotFoundError",
    "AuthorizationRevokedError",
    "TokenExpiredError",
    "TokenStoreError",
    "PassiveRefreshError",
    "WeChatAPIError",
    "WeChatTransportError",
    "LambdaPassiveRefresh",
    "DynamoDBRecordSource",
    "InMemoryRecordSource",
    "CredentialRecord",
    "CredentialKey",
    "Kind",
    "ACCESS_TOKEN",
    "JSAPI_TICKET",
    "fingerprint",
    "SAFE_MAX_CACHE_SECONDS",
    "PASSIVE_BACKOFF_SECONDS",
  ]) {
    assert.ok(name in layer, name);
  }
  for (const error of [
    layer.ConfigurationError,
    layer.TokenNotFoundError,
    layer.AuthorizationRevokedError,
    layer.TokenExpiredError,
    layer.TokenStoreError,
    layer.PassiveRefreshError,
    layer.WeChatAPIError,
    layer.WeChatTransportError,
  ]) {
    assert.ok(error.prototype instanceof layer.TokenError, error.name);
  }
  assert.equal(new layer.TokenExpiredError("x").name, "TokenExpiredError");
});

test("importing the layer and building readers and clients loads no AWS SDK", async () => {
  const probe = `
    import { createRequire } from "node:module";
    const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((p) => p.includes("@aws-sdk"));
    const layer = await import(${JSON.stringify(INDEX)});
    const before = loaded();
    process.env.PASSIVE_REFRESH_FUNCTION_NAME = "PassiveRefreshFunction";
    process.env.TOKEN_TABLE_NAME = "t";
    new layer.TokenReader();
    new layer.WeChatClient("wx1");
    new layer.LambdaPassiveRefresh();
    layer.defaultReader();
    const constructed = loaded();
    process.env.AWS_ENDPOINT_URL_DYNAMODB = "http://127.0.0.1:9";
    await new layer.TokenReader({ passiveRefresh: null }).get("wx1").catch((e) => e);
    console.log(JSON.stringify({ before, constructed, afterRead: loaded() }));
  `;
  const { stdout } = await run(process.execPath, ["--input-type=module", "-e", probe], {
    cwd: fileURLToPath(new URL("../..", import.meta.url)),
    env: {
      ...process.env,
      AWS_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: "local",
      AWS_SECRET_ACCESS_KEY: "local",
      NODE_NO_WARNINGS: "1",
    },
  });
  assert.deepEqual(JSON.parse(stdout.trim().split("\n").at(-1)), {
    before: false,
    constructed: false,
    afterRead: true,
  });
});

test("getTicket and jsapiSignature read the ticket through the process-wide reader", async () => {
  const ticket =
    "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg";
  configure({
    source: sourceWith(stored(ticket, { kind: "jsapi_ticket" })),
    clock: new ManualClock().read,
    passiveRefresh: null,
  });
  assert.equal(await getTicket(APP, "jsapi"), ticket);
  const config = await jsapiSignature("http://mp.weixin.qq.com?params=value", APP, {
    nonceStr: "Wm3WZYTPz0wzccnW",
    timestamp: 1414587457,
  });
  assert.deepEqual(config, {
    appId: APP,
    timestamp: 1414587457,
    nonceStr: "Wm3WZYTPz0wzccnW",
    signature: "0f9de62fce790f9a083d5c99e95740ceb90c27ed",
  });
  process.env.WECHAT_APP_ID = APP;
  const fresh = await jsapiSignature("https://example.com/page#top", { wechatAppId: "ww-corp" });
  assert.equal(fresh.appId, "ww-corp");
  assert.match(fresh.nonceStr, /^[A-Za-z0-9_-]{16}$/);
  assert.ok(Math.abs(fresh.timestamp - Date.now() / 1000) < 5);
  assert.equal(
    fresh.signature,
    sign(ticket, fresh.nonceStr, fresh.timestamp, "https://example.com/page"),
  );
  await assert.rejects(
    getTicket(APP, "nope"),
    /ticketType must be one of agent_config, jsapi, wx_card, not 'nope'/,
  );
  await assert.rejects(getTicket(APP, "wx_card"), layer.TokenNotFoundError);
});
