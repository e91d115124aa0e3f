// One record, two languages: the Python refresher fetched the token (and the JS-SDK ticket)
// from the simulator and wrote them to DynamoDB Local; the Node.js layer reads that record,
// strictly (WECHAT_TOKEN_STRICT_RECORDS: every attribute the refresher wrote must be in the
// Node schema), gets the same value and expiry, and stops using the token at its expires_at,
// although its cache would keep it for 120 s. The token lives a few seconds here: the
// simulator issues short-lived tokens for this test.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  TokenExpiredError,
  TokenReader,
  configure,
  fingerprint,
  getTicket,
  jsapiSignature,
} from "wechat-token";
import { accepted, setting } from "./harness.mjs";

const expected = JSON.parse(setting("EXPECTED_RECORD"));
const app = expected.app_id;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const now = () => Date.now() / 1000;

test("the JS-SDK ticket the refresher stored signs as the Python layer signs", async () => {
  configure({ cacheSeconds: 120, passiveRefresh: null });
  const ticket = await getTicket(app, "jsapi");
  assert.equal(fingerprint(ticket), setting("EXPECTED_TICKET_FINGERPRINT"));
  const signed = JSON.parse(setting("EXPECTED_SIGNATURE"));
  const config = await jsapiSignature(signed.url, app, {
    nonceStr: signed.nonceStr,
    timestamp: signed.timestamp,
  });
  assert.equal(config.signature, signed.signature);
});

const reader = new TokenReader({ cacheSeconds: 120, passiveRefresh: null });
let token;

test("the Node reader reads the value and expiry the Python refresher wrote", async () => {
  token = await reader.get(app);
  assert.equal(fingerprint(token), expected.fingerprint);
  assert.ok(await accepted(token), "the value is the token WeChat issued");
  const record = await reader.read(app);
  for (const [name, value] of Object.entries(expected)) {
    assert.deepEqual(record.toJSON()[name], value, name);
  }
  assert.ok(record.expires_at > now() && record.expires_at < now() + 30, "a short-lived token");
});

test(
  "the cache ends at the record's expires_at, not 120 s later",
  { timeout: 60_000 },
  async () => {
    const expiresAt = expected.expires_at;
    let hits = 0;
    while (now() < expiresAt + 0.2) {
      const before = now();
      const cached = reader.cached(app);
      const after = now();
      if (after < expiresAt) {
        assert.equal(cached, token, "served while valid");
        hits += 1;
      }
      if (before >= expiresAt)
        assert.equal(cached, null, `served ${before - expiresAt} s past expires_at`);
      await sleep(25);
    }
    assert.ok(hits > 10, "the token was served from the cache until then");
    await assert.rejects(reader.get(app), (error) => {
      assert.ok(error instanceof TokenExpiredError);
      assert.match(
        error.message,
        new RegExp(`The access_token for app '${app}' in DynamoDB table '.+' expired at `),
      );
      assert.ok(!error.message.includes(token));
      return true;
    });
  },
);
