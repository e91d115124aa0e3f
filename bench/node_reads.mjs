// Measure 9 (Node.js): the wechat-token Node.js layer's reads against Powertools for AWS
// Lambda (TypeScript) DynamoDBProvider, on the same DynamoDB Local and the same stored item.
// Run by bench/node.py (`python -m bench --only node`), which stores the token with the Python
// refresher and passes, in the environment: TOKEN_TABLE_NAME (our table), POWERTOOLS_TABLE (a
// copy of the item keyed by `id`: Powertools' provider cannot address our (app_id, kind) key),
// WECHAT_APP_ID, EXPECTED_FINGERPRINT, AWS_ENDPOINT_URL_DYNAMODB and dummy credentials.
//
//   node --expose-gc --experimental-import-meta-resolve bench/node_reads.mjs measure
//     -> JSON on stdout: per-round samples for the warm read (ns per call), the cache miss
//        (ns per read) and the first read of a fresh process (ns), per contender;
//   node ... bench/node_reads.mjs first ours|powertools   (one fresh process, used by measure)
//
// Contenders: ours, `await getAccessToken(app)` (the process-wide TokenReader, cache 60 s);
// Powertools, `await provider.get(app, { maxAge: 60 })`. Both are awaited, as a handler
// awaits them: the figures include the await. The miss: ours `invalidate` + `get`, Powertools
// `get(app, { forceFetch: true })`, and the bare SDK `GetItem` as the floor.

import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const LAYER = new URL("../layers/wechat_token_node/", import.meta.url);
const PARENT = new URL("package.json", LAYER).href;
const OURS = import.meta.resolve("wechat-token", PARENT);
const POWERTOOLS = import.meta.resolve("@aws-lambda-powertools/parameters/dynamodb", PARENT);
const SDK = import.meta.resolve("@aws-sdk/client-dynamodb", PARENT);

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through python -m bench --only node`);
  return value;
};
const APP = env("WECHAT_APP_ID");
const TABLE = env("TOKEN_TABLE_NAME");
const PT_TABLE = env("POWERTOOLS_TABLE");
const EXPECTED = env("EXPECTED_FINGERPRINT");
const QUICK = process.env.BENCH_QUICK === "1";

const fingerprint = (value) =>
  "sha256:" + createHash("sha256").update(value).digest("hex").slice(0, 10);

function check(value, who) {
  if (fingerprint(value) !== EXPECTED) throw new Error(`${who} read another token than stored`);
}

const now = () => process.hrtime.bigint();

function shuffled(items) {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i -= 1) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j], copy[i]];
  }
  return copy;
}

/** ns per call of each async loop, one sample per loop per round, order shuffled per round. */
async function interleaved(loops, { calls, rounds }) {
  const samples = Object.fromEntries(Object.keys(loops).map((name) => [name, []]));
  for (let round = 0; round < rounds; round += 1) {
    for (const name of shuffled(Object.keys(loops))) {
      globalThis.gc?.();
      const began = now();
      await loops[name](calls);
      samples[name].push(Number(now() - began) / calls);
    }
  }
  return samples;
}

async function warm() {
  const layer = await import(OURS);
  const { DynamoDBProvider } = await import(POWERTOOLS);
  layer.configure({ tableName: TABLE, cacheSeconds: 60, passiveRefresh: null });
  const reader = layer.defaultReader();
  const provider = new DynamoDBProvider({ tableName: PT_TABLE });
  check(await layer.getAccessToken(APP), "ours");
  check(await provider.get(APP, { maxAge: 60 }), "Powertools");
  const { getAccessToken } = layer;
  const loops = {
    ours: async (n) => {
      for (let i = 0; i < n; i += 1) await getAccessToken(APP);
    },
    ours_cached: async (n) => {
      for (let i = 0; i < n; i += 1) reader.cached(APP);
    },
    powertools: async (n) => {
      for (let i = 0; i < n; i += 1) await provider.get(APP, { maxAge: 60 });
    },
    empty_await: async (n) => {
      for (let i = 0; i < n; i += 1) await undefined;
    },
  };
  // Warm-up: let the JIT settle before any sample counts.
  await interleaved(loops, { calls: 20_000, rounds: 3 });
  return interleaved(loops, QUICK ? { calls: 5_000, rounds: 15 } : { calls: 20_000, rounds: 100 });
}

async function miss() {
  const layer = await import(OURS);
  const { DynamoDBProvider } = await import(POWERTOOLS);
  const { DynamoDBClient, GetItemCommand } = await import(SDK);
  const reader = new layer.TokenReader({
    tableName: TABLE,
    cacheSeconds: 60,
    passiveRefresh: null,
  });
  const provider = new DynamoDBProvider({ tableName: PT_TABLE });
  const client = new DynamoDBClient({});
  const key = { app_id: { S: APP }, kind: { S: "access_token" } };
  check(await reader.get(APP), "ours");
  check(await provider.get(APP, { forceFetch: true }), "Powertools");
  const loops = {
    ours: async (n) => {
      for (let i = 0; i < n; i += 1) {
        reader.invalidate(APP);
        await reader.get(APP);
      }
    },
    powertools: async (n) => {
      for (let i = 0; i < n; i += 1) await provider.get(APP, { forceFetch: true });
    },
    bare_getitem: async (n) => {
      for (let i = 0; i < n; i += 1) {
        await client.send(new GetItemCommand({ TableName: TABLE, Key: key }));
      }
    },
  };
  await interleaved(loops, { calls: 20, rounds: 2 });
  return interleaved(loops, QUICK ? { calls: 10, rounds: 10 } : { calls: 20, rounds: 40 });
}

/** One fresh process: import the library, build its reader, read the token once. */
async function first(contender) {
  const began = now();
  let value;
  let imported;
  if (contender === "ours") {
    const layer = await import(OURS);
    imported = now();
    value = await layer.getAccessToken(APP); // TOKEN_TABLE_NAME from the environment
  } else {
    const { DynamoDBProvider } = await import(POWERTOOLS);
    imported = now();
    value = await new DynamoDBProvider({ tableName: PT_TABLE }).get(APP);
  }
  const done = now();
  check(value, contender);
  return { import_ns: Number(imported - began), total_ns: Number(done - began) };
}

async function firstReads() {
  const run = promisify(execFile);
  const script = fileURLToPath(import.meta.url);
  const samples = { ours: [], powertools: [], ours_import: [], powertools_import: [] };
  const processes = QUICK ? 5 : 15;
  for (let i = 0; i < processes; i += 1) {
    for (const contender of shuffled(["ours", "powertools"])) {
      const { stdout } = await run(
        process.execPath,
        ["--experimental-import-meta-resolve", script, "first", contender],
        { env: { ...process.env, NODE_NO_WARNINGS: "1" } },
      );
      const result = JSON.parse(stdout);
      samples[contender].push(result.total_ns);
      samples[`${contender}_import`].push(result.import_ns);
    }
  }
  return samples;
}

const [mode, contender] = process.argv.slice(2);
if (mode === "first") {
  process.stdout.write(JSON.stringify(await first(contender)));
} else if (mode === "measure") {
  const version = (name) =>
    JSON.parse(readFileSync(new URL(`node_modules/${name}/package.json`, LAYER), "utf8")).version;
  const result = {
    node: process.version,
    sdk: version("@aws-sdk/client-dynamodb"),
    powertools: version("@aws-lambda-powertools/parameters"),
    first: await firstReads(),
    warm: await warm(),
    miss: await miss(),
  };
  process.stdout.write(JSON.stringify(result));
  process.exit(0); // the SDK clients keep sockets open
} else {
  throw new Error("usage: node bench/node_reads.mjs measure | first ours|powertools");
}
