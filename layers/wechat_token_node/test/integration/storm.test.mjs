// The 40001 storm, in Node.js: 200 consumers (each its own WeChatClient and TokenReader, one
// process) hold a token that someone else's fetches killed behind our back. Exactly one
// WeChat token call replaces it (one passive report, verified by the refresher), and all 200
// calls succeed. tests/unit/test_wechat_client.py has the Python version.

import assert from "node:assert/strict";
import { test } from "node:test";

import { DynamoDBClient } from "@aws-sdk/client-dynamodb";

import { TokenReader, WeChatClient, fingerprint } from "wechat-token";
import { foreignFetch, ourTokenCalls, setting } from "./harness.mjs";

const CONSUMERS = 200;

test(
  "200 consumers hit by 40001 make one WeChat token call and all succeed",
  { timeout: 120_000 },
  async () => {
    const app = setting("WECHAT_APP_ID");
    const dynamodb = new DynamoDBClient({});
    const readers = Array.from({ length: CONSUMERS }, () => new TokenReader({ client: dynamodb }));
    const clients = readers.map((reader) => new WeChatClient(app, { reader }));

    const warm = await Promise.all(
      clients.map((client) => client.get("/cgi-bin/get_api_domain_ip")),
    );
    assert.ok(warm.every((reply) => reply.ip_list.length > 0));
    const stale = await readers[0].get(app);
    await foreignFetch(app);
    await foreignFetch(app); // our token is now the third: evicted at once
    const before = await ourTokenCalls(app);

    // Every consumer's cache has expired; all call WeChat at once with the dead token.
    for (const reader of readers) reader.invalidate(app);
    const results = await Promise.allSettled(
      clients.map((client) => client.get("/cgi-bin/get_api_domain_ip")),
    );

    const failed = results.filter((r) => r.status === "rejected").map((r) => String(r.reason));
    assert.deepEqual(failed, [], `${failed.length} of ${CONSUMERS} failed`);
    assert.equal(results.length, CONSUMERS);
    assert.equal((await ourTokenCalls(app)) - before, 1, "WeChat token calls for one storm");
    const fresh = await readers[0].get(app);
    assert.notEqual(fingerprint(fresh), fingerprint(stale));
    for (const reader of readers) assert.equal(reader.cached(app), fresh);
    dynamodb.destroy();
  },
);
