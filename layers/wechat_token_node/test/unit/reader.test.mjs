// TokenReader: a cache that never outlives the credential, clear errors, passive refresh of an
// expired record with a 30 s back-off, and one read per credential however many ask at once.

import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import { inspect } from "node:util";

import {
  AuthorizationRevokedError,
  ConfigurationError,
  CredentialKey,
  PASSIVE_BACKOFF_SECONDS,
  SAFE_MAX_CACHE_SECONDS,
  TokenExpiredError,
  TokenNotFoundError,
  TokenReader,
  TokenStoreError,
  configure,
  getAccessToken,
  setLogger,
} from "../../src/index.mjs";
import { APP, ManualClock, START, Warnings, sourceWith, stored } from "./support.mjs";

let clock;
let warnings;

beforeEach(() => {
  clock = new ManualClock();
  warnings = new Warnings();
  setLogger(warnings);
  for (const name of [
    "WECHAT_TOKEN_CACHE_SECONDS",
    "WECHAT_APP_ID",
    "PASSIVE_REFRESH_FUNCTION_NAME",
    "REFRESHER_FUNCTION_NAME",
  ]) {
    delete process.env[name];
  }
});

afterEach(() => setLogger(console));

function reader(source, options = {}) {
  return new TokenReader({ source, clock: clock.read, passiveRefresh: null, ...options });
}

test("a read is cached for 60 s by default, then the table is read again", async () => {
  const source = sourceWith(stored("tok-1"));
  const tokens = reader(source);
  assert.equal(await tokens.get(APP), "tok-1");
  source.put(stored("tok-2"));
  clock.advance(59.9);
  assert.equal(await tokens.get(APP), "tok-1");
  assert.equal(source.reads, 1);
  clock.advance(0.1);
  assert.equal(await tokens.get(APP), "tok-2");
  assert.equal(source.reads, 2);
});

test("the cache never outlives the credential's expiry", async () => {
  const source = sourceWith(stored("short", { lifetime: 5 }));
  const tokens = reader(source, { cacheSeconds: 120 });
  assert.equal(await tokens.get(APP), "short");
  clock.advance(4.999);
  assert.equal(tokens.cached(APP), "short");
  clock.advance(0.001);
  assert.equal(tokens.cached(APP), null, "not at expires_at");
  await assert.rejects(tokens.get(APP), TokenExpiredError);
});

test("a cache longer than the safe maximum is refused with the arithmetic", async () => {
  assert.equal(SAFE_MAX_CACHE_SECONDS, 120);
  for (const bad of [121, -1, Number.NaN, "60"]) {
    assert.throws(
      () => new TokenReader({ source: sourceWith(), cacheSeconds: bad }),
      (error) => {
        assert.ok(error instanceof ConfigurationError);
        assert.match(
          error.message,
          /use 0 to 120 seconds: .* \(300 - 120 - 60 = 120 s at most; default 60\)\.$/,
        );
        return true;
      },
    );
  }
  process.env.WECHAT_TOKEN_CACHE_SECONDS = "180";
  assert.throws(
    () => new TokenReader({ source: sourceWith() }),
    /WECHAT_TOKEN_CACHE_SECONDS='180' is out of range: use 0 to 120 seconds/,
  );
  process.env.WECHAT_TOKEN_CACHE_SECONDS = "soon";
  assert.throws(
    () => new TokenReader({ source: sourceWith() }),
    /WECHAT_TOKEN_CACHE_SECONDS='soon' is not a number/,
  );
  process.env.WECHAT_TOKEN_CACHE_SECONDS = " 15 ";
  assert.equal(new TokenReader({ source: sourceWith() }).cacheSeconds, 15);
});

test("cacheSeconds 0 reads the table every time", async () => {
  const source = sourceWith(stored("tok"));
  const tokens = reader(source, { cacheSeconds: 0 });
  await tokens.get(APP);
  await tokens.get(APP);
  assert.equal(source.reads, 2);
});

test("a missing record says where to look", async () => {
  const tokens = reader(sourceWith());
  await assert.rejects(tokens.get(APP), (error) => {
    assert.ok(error instanceof TokenNotFoundError);
    assert.equal(
      error.message,
      `No access_token for app '${APP}' in the in-memory record source. Check that the app is in the registry secret (WECHAT_APPS_SECRET_ID) under this exact key and that the refresher has run.`,
    );
    return true;
  });
  const failed = stored(null, {
    last_error_code: "40164",
    last_error_at: START - 60,
    last_error_message: "IP not whitelisted",
  });
  await assert.rejects(
    reader(sourceWith(failed)).get(APP),
    /the refresher last succeeded 2026-09-21T14:13:20Z; its last error was 40164 at 2026-09-21T14:12:20Z: IP not whitelisted\.$/,
  );
});

test("a revoked authorizer says so, and is a TokenNotFoundError", async () => {
  const revoked = stored(null, { appId: "wxcomponent:wxauthorizer", revoked_at: START - 3600 });
  await assert.rejects(reader(sourceWith(revoked)).get("wxcomponent:wxauthorizer"), (error) => {
    assert.ok(error instanceof AuthorizationRevokedError);
    assert.ok(error instanceof TokenNotFoundError);
    assert.equal(
      error.message,
      "The merchant revoked the platform's authorization of 'wxcomponent:wxauthorizer' at " +
        "2026-09-21T13:13:20Z: there is no access_token for it until they authorize the " +
        "platform again (the refresher stopped refreshing it).",
    );
    return true;
  });
});

test("an expired record is never served, and the error says since when", async () => {
  const tokens = reader(sourceWith(stored("old", { now: START - 7000 })));
  await assert.rejects(tokens.get(APP), (error) => {
    assert.ok(error instanceof TokenExpiredError);
    assert.match(
      error.message,
      /expired at 2026-09-21T14:11:40Z \(100 s ago\)\. The refresher last succeeded/,
    );
    assert.ok(!error.message.includes("old"));
    return true;
  });
});

test("the app id comes from WECHAT_APP_ID, or a clear error", async () => {
  const tokens = reader(sourceWith(stored("tok")));
  await assert.rejects(
    tokens.get(),
    /WECHAT_APP_ID is not set: set it to the app's key in the wechat-token registry, or pass appId/,
  );
  process.env.WECHAT_APP_ID = APP;
  assert.equal(await tokens.get(), "tok");
});

test("a failed read serves the value already held until its own expiry (last known good)", async () => {
  const source = sourceWith(stored("held", { lifetime: 100 }));
  const tokens = reader(source);
  await tokens.get(APP);
  source.get = async () => {
    throw new TokenStoreError("throttled");
  };
  clock.advance(60);
  assert.equal(await tokens.get(APP), "held");
  assert.match(warnings.text(), /serving the cached sha256:[0-9a-f]{10} until it expires/);
  assert.ok(!warnings.text().includes("held"));
  clock.advance(40);
  await assert.rejects(tokens.get(APP), TokenStoreError);
});

test("concurrent misses of one credential make one read; other credentials do not wait", async () => {
  const source = sourceWith(stored("a"), stored("b", { appId: "wxother" }));
  let release;
  const gate = new Promise((resolve) => {
    release = resolve;
  });
  const slowGet = source.get.bind(source);
  source.get = async (key, consistent) => {
    if (key.appId === APP) await gate;
    return slowGet(key, consistent);
  };
  const tokens = reader(source);
  const waiting = Array.from({ length: 50 }, () => tokens.get(APP));
  assert.equal(await tokens.get("wxother"), "b", "not blocked by the slow credential");
  release();
  assert.deepEqual(new Set(await Promise.all(waiting)), new Set(["a"]));
  assert.equal(source.reads, 2);
});

test("refetch drops the cache and reads consistently", async () => {
  const source = sourceWith(stored("one"));
  const seen = [];
  const inner = source.get.bind(source);
  source.get = (key, consistent) => {
    seen.push(consistent);
    return inner(key, consistent);
  };
  const tokens = reader(source);
  await tokens.get(APP);
  source.put(stored("two"));
  assert.equal(await tokens.refetch(APP), "two");
  assert.deepEqual(seen, [false, true]);
  tokens.invalidate(APP);
  assert.equal(tokens.cached(APP), null);
});

test("an expired record asks for one passive refresh and serves the replacement", async () => {
  const source = sourceWith(stored("old", { now: START - 7000 }));
  const calls = [];
  const passive = async (...args) => {
    calls.push(args);
    source.put(stored("new"));
    return "refreshed";
  };
  const tokens = reader(source, { passiveRefresh: passive });
  assert.equal(await tokens.get(APP), "new");
  assert.deepEqual(calls, [[APP, "access_token", stored("old").fingerprint(), 42001]]);
});

test("after a refused or failed passive refresh the reader backs off 30 s", async () => {
  assert.equal(PASSIVE_BACKOFF_SECONDS, 30);
  const source = sourceWith(stored("old", { now: START - 7000 }));
  let calls = 0;
  let answer = "rate_limited";
  const passive = async () => {
    calls += 1;
    if (answer === "throw") throw new TokenStoreError("unreachable");
    return answer;
  };
  const tokens = reader(source, { passiveRefresh: passive });
  await assert.rejects(
    tokens.get(APP),
    /A passive refresh was refused: the refresher answered 'rate_limited'\.$/,
  );
  await assert.rejects(
    tokens.get(APP),
    /No passive refresh asked before 2026-09-21T14:13:50Z: the refresher answered 'rate_limited'\.$/,
  );
  assert.equal(calls, 1);
  clock.advance(30);
  answer = "throw";
  await assert.rejects(tokens.get(APP), /The passive refresh failed: unreachable\.$/);
  clock.advance(29);
  await assert.rejects(tokens.get(APP), TokenExpiredError);
  assert.equal(calls, 2);
  clock.advance(1);
  answer = "refreshed"; // but the table still holds nothing valid
  await assert.rejects(
    tokens.get(APP),
    /a passive refresh was requested, but the table still holds no valid value\.$/,
  );
  await assert.rejects(
    tokens.get(APP),
    /No passive refresh asked before .*: the record was still expired after a passive refresh/,
  );
  assert.equal(calls, 3);
  assert.equal(tokens.backoff.refusal(new CredentialKey(APP), clock.now + 30), null);
});

test("passive refresh is on only where PASSIVE_REFRESH_FUNCTION_NAME is set", async () => {
  const expired = () => sourceWith(stored("old", { now: START - 7000 }));
  await assert.rejects(
    new TokenReader({ source: expired(), clock: clock.read }).get(APP),
    /expired at .*schedule is enabled\.$/,
  );
  process.env.REFRESHER_FUNCTION_NAME = "old-name";
  new TokenReader({ source: expired(), clock: clock.read });
  assert.match(warnings.text(), /REFRESHER_FUNCTION_NAME is set but no longer read/);
  process.env.PASSIVE_REFRESH_FUNCTION_NAME = "PassiveRefreshFunction";
  let invoked = false;
  const tokens = new TokenReader({ source: expired(), clock: clock.read });
  // The default passive refresh is a LambdaPassiveRefresh; swap its transport to observe it.
  tokens.backoff.hold(new CredentialKey(APP), clock.now, "held for the test");
  await assert.rejects(tokens.get(APP), (error) => {
    invoked = /No passive refresh asked before/.test(error.message);
    return error instanceof TokenExpiredError;
  });
  assert.ok(invoked, "the reader had passive refresh on, and its back-off held it");
});

test("getAccessToken reads through the process-wide reader", async () => {
  const source = sourceWith(stored("process-wide"));
  configure({ source, clock: clock.read, passiveRefresh: null });
  assert.equal(await getAccessToken(APP), "process-wide");
  assert.equal(await getAccessToken(APP), "process-wide");
  assert.equal(source.reads, 1);
  process.env.WECHAT_APP_ID = APP;
  assert.equal(await getAccessToken(), "process-wide");
});

test("a reader never shows the tokens it holds", async () => {
  const tokens = reader(sourceWith(stored("cached-secret-token")));
  await tokens.get(APP);
  for (const shown of [
    inspect(tokens, { depth: 10, showHidden: true }),
    JSON.stringify(tokens),
    String(tokens),
    inspect({ tokens }, { depth: 10 }),
  ]) {
    assert.ok(!shown.includes("cached-secret-token"), shown);
  }
  assert.match(inspect(tokens), /cached: 1/);
});

test("source and tableName/client cannot both be given", () => {
  assert.throws(() => new TokenReader({ source: sourceWith(), tableName: "t" }), TypeError);
});
