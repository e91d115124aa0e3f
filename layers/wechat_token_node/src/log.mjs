// Where the layer's warnings go: console.warn (CloudWatch in Lambda) unless setLogger() says
// otherwise. Warnings name apps, kinds, tables and fingerprints, never a token or a secret.

let sink = console;

/** Send the layer's warnings to `logger.warn` (pino, Powertools Logger...); null silences it. */
export function setLogger(logger) {
  sink = logger ?? null;
}

export function warn(message) {
  sink?.warn?.(`wechat-token: ${message}`);
}
