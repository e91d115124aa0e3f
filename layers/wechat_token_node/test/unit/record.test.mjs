// The record schema and the helpers around it behave as the Python layer's do.

import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { inspect } from "node:util";

import { CredentialKey, CredentialRecord, fingerprint, setLogger, sign } from "../../src/index.mjs";
import { SchemaError } from "../../src/errors.mjs";
import { iso } from "../../src/record.mjs";
import { redact } from "../../src/redaction.mjs";
import { START, Warnings, item } from "./support.mjs";

afterEach(() => setLogger(console));

test("fingerprints match the Python layer's", () => {
  assert.equal(fingerprint("abc"), "sha256:ba7816bf8f");
  assert.equal(fingerprint("令牌-token"), "sha256:5e77e59e0f");
  assert.equal(iso(1790000000.7), "2026-09-21T14:13:20Z");
  assert.equal(iso(null), "never");
});

test("a stored item becomes a record with the table's names and types", () => {
  const record = CredentialRecord.fromDynamoDB(
    item("tok-1", { extra: { calls_count: { N: "7" }, last_error_code: { NULL: true } } }),
  );
  assert.equal(record.value, "tok-1");
  assert.equal(record.app_id, "wxnode0000000001");
  assert.equal(record.expires_at, START + 6900);
  assert.equal(record.version, 3);
  assert.equal(record.calls_count, 7);
  assert.equal(record.last_error_code, null);
  assert.equal(record.isValid(START + 6899.9), true);
  assert.equal(record.isValid(START + 6900), false, "never at expires_at");
  assert.equal(record.holds(fingerprint("tok-1")), true);
  assert.equal(record.holds("tok-1"), true);
  assert.equal(record.holds(fingerprint("other")), false);
  assert.deepEqual(record.key, new CredentialKey("wxnode0000000001", "access_token"));
});

test("the value never shows in JSON, String() or util.inspect", () => {
  const record = CredentialRecord.fromDynamoDB(
    item("secret-token-value-1", {
      extra: {
        refresh_token_cipher: { S: "secret-token-value-1-cipher" },
        prior_value: { S: "secret-token-value-1-prior" },
      },
    }),
  );
  assert.equal(record.refresh_token_cipher, "secret-token-value-1-cipher");
  assert.equal(record.prior_value, "secret-token-value-1-prior");
  for (const shown of [
    JSON.stringify(record),
    String(record),
    inspect(record),
    inspect({ record }, { depth: 5 }),
    `${[record]}`,
  ]) {
    assert.ok(!shown.includes("secret-token-value-1"), shown);
    assert.ok(shown.includes(fingerprint("secret-token-value-1")), shown);
  }
  assert.deepEqual(Object.keys(record).includes("value"), false);
  assert.ok(Object.isFrozen(record));
});

test("unknown attributes are refused in strict mode and named (not shown) otherwise", () => {
  const odd = item("tok", {
    extra: { brand_new: { S: "x-secret-x" }, previous_value: { S: "old" } },
  });
  assert.throws(
    () => CredentialRecord.fromDynamoDB(odd, { strict: true }),
    (error) => {
      assert.ok(error instanceof SchemaError);
      assert.match(
        error.message,
        /record 'wxnode0000000001' has attributes the schema does not define: brand_new$/,
      );
      return true;
    },
  );
  const warnings = new Warnings();
  setLogger(warnings);
  const record = CredentialRecord.fromDynamoDB(odd, { strict: false });
  assert.equal(record.value, "tok");
  assert.match(warnings.text(), /does not know \(brand_new\); ignored/);
  assert.ok(!warnings.text().includes("x-secret-x"));
});

test("WECHAT_TOKEN_STRICT_RECORDS turns strict mode on", () => {
  const odd = item("tok", { extra: { brand_new: { S: "x" } } });
  process.env.WECHAT_TOKEN_STRICT_RECORDS = "true";
  try {
    assert.throws(() => CredentialRecord.fromDynamoDB(odd), SchemaError);
  } finally {
    delete process.env.WECHAT_TOKEN_STRICT_RECORDS;
  }
});

test("attributes of the wrong type are refused without quoting them", () => {
  const cases = [
    [{ expires_at: { S: "soon-secret" } }, /'expires_at' does not convert to a number/],
    [{ value: { N: "12" } }, null],
    [{ value: { BOOL: true } }, /'value' must be a string/],
    [{ expires_at: { L: [] } }, /'expires_at' has DynamoDB type L, not S or N/],
    [{ expires_at: { S: "1", N: "2" } }, /'expires_at' is not a DynamoDB attribute value/],
  ];
  for (const [extra, message] of cases) {
    const attributes = { ...item("tok"), ...extra };
    if (message === null) {
      assert.equal(CredentialRecord.fromDynamoDB(attributes).value, "12");
      continue;
    }
    assert.throws(
      () => CredentialRecord.fromDynamoDB(attributes),
      (error) => {
        assert.ok(error instanceof SchemaError);
        assert.match(error.message, message);
        assert.ok(!error.message.includes("soon-secret"));
        return true;
      },
    );
  }
});

test("a record without a value or expiry is not valid", () => {
  assert.equal(new CredentialRecord({ app_id: "a" }).hasValue, false);
  assert.equal(new CredentialRecord({ app_id: "a", value: "v" }).isValid(0), false);
  assert.equal(new CredentialRecord({ app_id: "a" }).kind, "access_token");
});

test("redaction masks query secrets and given values", () => {
  assert.equal(
    redact("GET /cgi-bin/token?appid=wx&secret=s3cr3t&x=1 access_token=abc ticket=t", "wx"),
    "GET /cgi-bin/token?appid=***&secret=***&x=1 access_token=*** ticket=***",
  );
});

test("the JS-SDK signature is WeChat's (the documented example)", () => {
  const ticket =
    "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg";
  assert.equal(
    sign(ticket, "Wm3WZYTPz0wzccnW", 1414587457, "http://mp.weixin.qq.com?params=value#frag"),
    "0f9de62fce790f9a083d5c99e95740ceb90c27ed",
  );
});
