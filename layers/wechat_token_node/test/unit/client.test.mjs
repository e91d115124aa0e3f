// WeChatClient: calls carry the stored token, WeChat's errors are typed, and a rejected token
// is recovered from with one re-read, at most one passive refresh and one retry.

import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import { inspect } from "node:util";

import {
  PassiveRefreshError,
  TokenReader,
  WeChatAPIError,
  WeChatClient,
  WeChatTransportError,
  fingerprint,
} from "../../src/index.mjs";
import { APP, FakeWeChat, ManualClock, json, sourceWith, stored } from "./support.mjs";

const BASE = "https://api.weixin.qq.com";
let clock;
let wechat;
let source;
let passiveCalls;

beforeEach(() => {
  clock = new ManualClock();
  wechat = new FakeWeChat();
  source = sourceWith(stored("tok-1"));
  wechat.accepted.add("tok-1");
  passiveCalls = [];
  delete process.env.WECHAT_API_BASE_URL;
});

/** The refresher as a consumer sees it: rotates to `next` and answers `outcome`. */
function refresher({ next = "tok-2", outcome = "refreshed", delay = 0 } = {}) {
  return async (...args) => {
    passiveCalls.push(args);
    if (delay) await new Promise((resolve) => setTimeout(resolve, delay));
    if (next !== null) {
      source.put(stored(next, { now: clock.now }));
      wechat.accepted.add(next);
    }
    return outcome;
  };
}

function client(options = {}) {
  return new WeChatClient(APP, {
    baseUrl: BASE,
    reader: new TokenReader({ source, clock: clock.read, passiveRefresh: null }),
    passiveRefresh: refresher(),
    fetch: wechat.fetch,
    sleep: async () => {},
    ...options,
  });
}

test("a call carries the stored token and returns WeChat's reply", async () => {
  const reply = await client().get("/cgi-bin/get_api_domain_ip", { lang: "zh_CN" });
  assert.deepEqual(reply, { ip_list: ["101.226.103.0/25"] });
  const [request] = wechat.requests;
  assert.equal(request.method, "GET");
  assert.deepEqual(request.query, { lang: "zh_CN", access_token: "tok-1" });
  assert.deepEqual(passiveCalls, []);
});

test("a POST sends UTF-8 JSON with Chinese unescaped", async () => {
  await client().post("/cgi-bin/message/custom/send", { touser: "o1", text: { content: "你好" } });
  const [request] = wechat.requests;
  assert.equal(request.method, "POST");
  assert.equal(request.body, '{"touser":"o1","text":{"content":"你好"}}');
  assert.equal(request.headers["Content-Type"], "application/json; charset=utf-8");
});

test("the base URL comes from WECHAT_API_BASE_URL", async () => {
  process.env.WECHAT_API_BASE_URL = "http://127.0.0.1:8090/";
  const plain = new WeChatClient(APP, { passiveRefresh: null });
  assert.equal(plain.baseUrl, "http://127.0.0.1:8090");
  process.env.WECHAT_API_BASE_URL = "ftp://nope";
  assert.throws(
    () => new WeChatClient(APP, { passiveRefresh: null }),
    /WECHAT_API_BASE_URL='ftp:\/\/nope' is not an http\(s\) URL/,
  );
});

test("a token rotated in the table is picked up without a passive refresh", async () => {
  const consumer = client();
  await consumer.get("/cgi-bin/get_api_domain_ip"); // caches tok-1
  source.put(stored("tok-2"));
  wechat.accepted = new Set(["tok-2"]);
  assert.ok((await consumer.get("/cgi-bin/get_api_domain_ip")).ip_list);
  assert.deepEqual(passiveCalls, []);
  assert.deepEqual(
    wechat.requests.map((r) => r.query.access_token),
    ["tok-1", "tok-1", "tok-2"],
  );
});

test("a token killed behind our back is replaced by one passive refresh, then one retry", async () => {
  const consumer = client();
  await consumer.get("/cgi-bin/get_api_domain_ip");
  wechat.accepted.delete("tok-1"); // a foreign fetch evicted it
  assert.ok((await consumer.get("/cgi-bin/get_api_domain_ip")).ip_list);
  assert.deepEqual(passiveCalls, [[APP, "access_token", fingerprint("tok-1"), 40001]]);
  assert.deepEqual(
    wechat.requests.map((r) => r.query.access_token),
    ["tok-1", "tok-1", "tok-2"],
  );
});

for (const errcode of [40014, 42001]) {
  test(`${errcode} is treated as a rejected token too`, async () => {
    wechat.script.push({ errcode, errmsg: "invalid access_token" });
    wechat.accepted.delete("tok-1");
    assert.ok((await client().get("/cgi-bin/get_api_domain_ip")).ip_list);
    assert.equal(passiveCalls[0][3], errcode);
  });
}

test("a rejected replacement is not retried again: one retry, never a loop", async () => {
  for (let i = 0; i < 10; i += 1)
    wechat.script.push({ errcode: 40001, errmsg: "invalid credential" });
  await assert.rejects(client().get("/cgi-bin/get_api_domain_ip"), (error) => {
    assert.ok(error instanceof WeChatAPIError);
    assert.equal(error.errcode, 40001);
    return true;
  });
  assert.equal(wechat.requests.length, 2);
  assert.equal(passiveCalls.length, 1);
});

test("other errors are thrown typed and never retried", async () => {
  wechat.script.push({ errcode: 48001, errmsg: "api unauthorized rid: 1" });
  await assert.rejects(client().get("/cgi-bin/get_api_domain_ip"), (error) => {
    assert.ok(error instanceof WeChatAPIError);
    assert.equal(error.errcode, 48001);
    assert.equal(error.errmsg, "api unauthorized rid: 1");
    assert.equal(error.path, "/cgi-bin/get_api_domain_ip");
    assert.equal(
      error.message,
      "WeChat /cgi-bin/get_api_domain_ip answered 48001: api unauthorized rid: 1",
    );
    return true;
  });
  assert.equal(wechat.requests.length, 1);
  assert.deepEqual(passiveCalls, []);
});

test("system busy (-1) is retried once", async () => {
  wechat.script.push({ errcode: -1, errmsg: "system busy" });
  assert.ok((await client().get("/cgi-bin/get_api_domain_ip")).ip_list);
  wechat.script.push(
    { errcode: -1, errmsg: "system busy" },
    { errcode: -1, errmsg: "system busy" },
  );
  await assert.rejects(client().get("/cgi-bin/get_api_domain_ip"), (error) => error.errcode === -1);
  assert.equal(wechat.requests.length, 4);
});

test("an errcode that is not a number is an error, not a success", async () => {
  wechat.script.push({ errcode: "0", errmsg: "odd" });
  await assert.rejects(
    client().get("/x"),
    (error) => error instanceof WeChatAPIError && error.errcode === -2,
  );
  wechat.script.push({ errcode: 0, errmsg: "ok", ticket: "t" });
  assert.equal((await client().get("/x")).ticket, "t");
});

test("without permission to refresh, a rejection says what to set", async () => {
  wechat.accepted.clear();
  await assert.rejects(
    client({ passiveRefresh: null }).get("/cgi-bin/get_api_domain_ip"),
    /set PASSIVE_REFRESH_FUNCTION_NAME and allow lambda:InvokeFunction on the PassiveRefreshFunction/,
  );
});

test("a refresher that cannot help is reported, and asked again only after 30 s", async () => {
  wechat.accepted.clear();
  const consumer = client({ passiveRefresh: refresher({ next: null, outcome: "failed" }) });
  await assert.rejects(consumer.get("/cgi-bin/get_api_domain_ip"), (error) => {
    assert.ok(error instanceof PassiveRefreshError);
    assert.equal(error.outcome, "failed");
    assert.match(error.message, /did not replace it \(outcome: failed\)/);
    return true;
  });
  await assert.rejects(
    consumer.get("/cgi-bin/get_api_domain_ip"),
    /Not asking for a passive refresh of wxnode0000000001\/access_token again before .* \(the layer backs off 30 s\): the refresher answered 'failed'/,
  );
  assert.equal(passiveCalls.length, 1);
  clock.advance(30);
  await assert.rejects(consumer.get("/cgi-bin/get_api_domain_ip"), PassiveRefreshError);
  assert.equal(passiveCalls.length, 2);
});

test("token_accepted means the rejection is not the token's: the original error", async () => {
  wechat.script.push({ errcode: 40001, errmsg: "invalid credential" });
  await assert.rejects(
    client({ passiveRefresh: refresher({ next: null, outcome: "token_accepted" }) }).get("/x"),
    (error) => {
      assert.ok(error instanceof WeChatAPIError);
      assert.equal(error.errcode, 40001);
      assert.match(
        error.message,
        /WeChat still accepts the stored token, so this rejection is not the token's/,
      );
      return true;
    },
  );
});

test("a held lease is waited for until the table holds the new token", async () => {
  wechat.accepted.clear();
  let reads = 0;
  const inner = source.get.bind(source);
  source.get = async (key, consistent) => {
    reads += 1;
    if (reads === 5) {
      source.put(stored("tok-9"));
      wechat.accepted.add("tok-9");
    }
    return inner(key, consistent);
  };
  const consumer = client({ passiveRefresh: refresher({ next: null, outcome: "lease_held" }) });
  assert.ok((await consumer.get("/x")).ip_list);
  assert.equal(wechat.requests.at(-1).query.access_token, "tok-9");
});

test("a lease that never yields a new token ends the wait and backs off", async () => {
  wechat.accepted.clear();
  const consumer = client({
    passiveRefresh: refresher({ next: null, outcome: "lease_held" }),
    waitSeconds: 0.05,
    sleep: (s) => new Promise((r) => setTimeout(r, s * 100)),
  });
  await assert.rejects(consumer.get("/x"), /outcome: lease_held/);
  await assert.rejects(
    consumer.get("/x"),
    /the table still held the rejected token after 'lease_held'/,
  );
});

test("many consumers hit by one rejection make one passive request", async () => {
  const readers = Array.from(
    { length: 50 },
    () => new TokenReader({ source, clock: clock.read, passiveRefresh: null }),
  );
  const consumers = readers.map((reader) =>
    client({ reader, passiveRefresh: refresher({ delay: 20 }) }),
  );
  await Promise.all(consumers.map((c) => c.get("/x")));
  wechat.accepted.clear();
  for (const reader of readers) reader.invalidate(APP);
  const replies = await Promise.all(consumers.map((c) => c.get("/x")));
  assert.equal(replies.filter((r) => r.ip_list).length, 50);
  assert.equal(passiveCalls.length, 1);
});

test("transport failures never show the token", async () => {
  const refuse = async (url) => {
    throw Object.assign(new TypeError("fetch failed"), {
      cause: Object.assign(new Error(`connect ECONNREFUSED for ${url}`), { code: "ECONNREFUSED" }),
    });
  };
  await assert.rejects(client({ fetch: refuse }).get("/cgi-bin/get_api_domain_ip"), (error) => {
    assert.ok(error instanceof WeChatTransportError);
    assert.equal(error.cause, undefined);
    assert.ok(!error.message.includes("tok-1"), error.message);
    assert.match(
      error.message,
      /^TypeError calling WeChat \/cgi-bin\/get_api_domain_ip: fetch failed \(ECONNREFUSED connect ECONNREFUSED for .*access_token=\*\*\*/,
    );
    return true;
  });
});

test("5xx, a body that is not JSON and JSON that is not an object are transport errors", async () => {
  const cases = [
    [json({ errcode: 0 }, 502), /answered HTTP 502$/],
    [
      new Response("<html>tok-1</html>", { status: 200 }),
      /answered HTTP 200 with a body that is not JSON$/,
    ],
    [json([1, 2]), /answered JSON that is not an object$/],
  ];
  for (const [response, message] of cases) {
    wechat.script.push(() => response);
    await assert.rejects(client().get("/x"), (error) => {
      assert.ok(error instanceof WeChatTransportError);
      assert.match(error.message, message);
      assert.ok(!error.message.includes("tok-1"));
      return true;
    });
  }
});

test("a timeout is a transport error", async () => {
  // A server that never answers (the timer keeps the event loop alive, as a socket would).
  const hang = (url, init) =>
    new Promise((_, reject) => {
      const never = setTimeout(() => reject(new Error("the client did not time out")), 5000);
      init.signal.addEventListener("abort", () => {
        clearTimeout(never);
        reject(init.signal.reason);
      });
    });
  await assert.rejects(client({ fetch: hang, timeoutSeconds: 0.05 }).get("/x"), (error) => {
    assert.ok(error instanceof WeChatTransportError);
    assert.match(error.message, /^TimeoutError calling WeChat \/x: /);
    return true;
  });
});

test("WeChat's errmsg never echoes the token back", async () => {
  wechat.accepted.clear();
  await assert.rejects(client({ passiveRefresh: null }).get("/x"), (error) => {
    assert.ok(!error.message.includes("tok-1"));
    assert.match(error.errmsg, /rid: \*\*\*/);
    return true;
  });
});

test("a client shows its app and base URL, never a token", async () => {
  const consumer = client();
  await consumer.get("/x");
  for (const shown of [
    inspect(consumer, { depth: 10, showHidden: true }),
    JSON.stringify(consumer),
    String(consumer),
  ]) {
    assert.ok(!shown.includes("tok-1"), shown);
    assert.ok(shown.includes(APP));
  }
});
