// The Lambda Node.js runtime's part of a local invocation (scripts/local_invoke.py starts it):
// node bootstrap.mjs CONFIG_JSON, the event on stdin. The handler's JSON result goes to the
// original stdout, everything the function prints to stderr in Lambda's log format; a failure
// is Lambda's error document ({errorType, errorMessage, trace}) with exit status 1.

import { randomUUID } from "node:crypto";
import { existsSync, readFileSync, writeSync } from "node:fs";
import { register } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { format } from "node:util";

const config = JSON.parse(process.argv[2]);
const requestId = randomUUID();
let finished = false;

// Whatever the function writes is a log line; only emit() writes the result to stdout.
const log =
  (level) =>
  (...args) => {
    process.stderr.write(
      `${new Date().toISOString()}\t${requestId}\t${level}\t${format(...args)}\n`,
    );
  };
Object.assign(console, {
  log: log("INFO"),
  info: log("INFO"),
  warn: log("WARN"),
  error: log("ERROR"),
  debug: log("DEBUG"),
  trace: log("TRACE"),
});
process.stdout.write = process.stderr.write.bind(process.stderr);

function emit(document, status) {
  if (finished) return;
  finished = true;
  let data;
  try {
    data = JSON.stringify(document === undefined ? null : document);
  } catch (error) {
    data = JSON.stringify({
      errorType: "Runtime.MarshalError",
      errorMessage: `Unable to marshal response: ${error.message}`,
      trace: [],
    });
    status = 1;
  }
  writeSync(1, data);
  process.exit(status);
}

function fail(errorType, errorMessage, trace = []) {
  const document = { errorType, errorMessage, trace };
  process.stderr.write(
    `${new Date().toISOString()}\t${requestId}\tERROR\tInvoke Error \t` +
      `${JSON.stringify(document)}\n`,
  );
  emit(document, 1);
}

function describeError(error) {
  if (error instanceof Error) {
    return [error.name, error.message, String(error.stack ?? "").split("\n")];
  }
  return ["Error", String(error), []];
}

/** The handler's module file, as Lambda looks for it: FILE.js, FILE.mjs, then FILE.cjs. */
function moduleFile(root, modulePath) {
  for (const extension of [".js", ".mjs", ".cjs"]) {
    const candidate = path.resolve(root, modulePath + extension);
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

async function loadHandler() {
  const handlerString = config.handler;
  const slash = handlerString.lastIndexOf("/");
  const directory = slash >= 0 ? handlerString.slice(0, slash) : "";
  const rest = handlerString.slice(slash + 1);
  const dot = rest.indexOf(".");
  if (dot <= 0 || dot === rest.length - 1) {
    fail("Runtime.MalformedHandlerName", `Bad handler ${handlerString}`);
  }
  const modulePath = path.join(directory, rest.slice(0, dot));
  const file = moduleFile(config.task_root, modulePath);
  if (file === null) {
    fail("Runtime.ImportModuleError", `Error: Cannot find module '${modulePath}'`);
  }
  let module;
  try {
    module = await import(pathToFileURL(file).href);
  } catch (error) {
    const [name, message, trace] = describeError(error);
    const type =
      error instanceof SyntaxError ? "Runtime.UserCodeSyntaxError" : "Runtime.ImportModuleError";
    fail(type, `${name}: ${message}`, trace);
  }
  let handler = module;
  for (const part of rest.slice(dot + 1).split(".")) handler = handler?.[part];
  if (typeof handler !== "function") {
    fail("Runtime.HandlerNotFound", `${rest} is undefined or not exported`);
  }
  return handler;
}

function invoke(handler, event, context) {
  return new Promise((resolve, reject) => {
    const callback = (error, value) => (error ? reject(error) : resolve(value));
    const returned = handler(event, context, callback);
    if (returned !== null && typeof returned?.then === "function") returned.then(resolve, reject);
    else if (handler.length < 3) resolve(returned);
  });
}

process.on("uncaughtException", (error) => fail(...describeError(error)));
process.on("unhandledRejection", (reason) => {
  const [, message, trace] = describeError(reason);
  fail("Runtime.UnhandledPromiseRejection", message, trace);
});
register("./node_path_loader.mjs", import.meta.url);
const event = JSON.parse(readFileSync(0, "utf8") || "null");
const handler = await loadHandler();
// As in Lambda, the timeout counts from the invocation: the init phase (imports) is apart.
const deadline = performance.now() + config.timeout * 1000;
const context = {
  callbackWaitsForEmptyEventLoop: true,
  functionName: config.function_name,
  functionVersion: "$LATEST",
  invokedFunctionArn: config.function_arn,
  memoryLimitInMB: config.memory, // a string, as in Lambda's Node.js runtime
  awsRequestId: requestId,
  logGroupName: config.log_group,
  logStreamName: config.log_stream,
  getRemainingTimeInMillis: () => Math.max(0, Math.floor(deadline - performance.now())),
};
setTimeout(
  () => fail("Sandbox.Timedout", `Task timed out after ${config.timeout.toFixed(2)} seconds`),
  Math.max(0, deadline - performance.now()),
);
try {
  emit(await invoke(handler, event, context), 0);
} catch (error) {
  const [name, message, trace] = describeError(error);
  fail(name, message, trace);
}
