// What the integration tests get from tests/integration/test_node_layer.py, which starts
// DynamoDB Local, the WeChat simulator and a stand-in for Lambda's Invoke API on 127.0.0.1
// and runs these files with `node --test`: the settings below, and the simulator's control
// API (simulator/control.py). Run on their own they fail, saying how to run them.

export const HOW_TO_RUN =
  "run these through pytest: .venv/bin/pytest tests/integration/test_node_layer.py";

/** A setting the harness must have given; a clear failure otherwise. */
export function setting(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: ${HOW_TO_RUN}`);
  return value;
}

export function simulatorUrl() {
  return setting("WECHAT_API_BASE_URL");
}

async function control(method, path, body) {
  const response = await fetch(simulatorUrl() + path, {
    method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok)
    throw new Error(`simulator ${path} answered ${response.status}: ${answer.error ?? ""}`);
  return answer;
}

/** Someone else fetches a token for the app: WeChat rotates it behind our back. */
export function foreignFetch(appid) {
  return control("POST", "/_sim/foreign_fetch", { appid });
}

/** Token fetches our refresher made for the app (the simulator counts foreign ones apart). */
export async function ourTokenCalls(appid) {
  const { apps } = await control("GET", "/_sim/stats?log=0");
  return apps[appid].tokens_issued - apps[appid].foreign_fetches;
}

/** Whether WeChat (the simulator, by its true clock) accepts the token now. */
export async function accepted(token) {
  return (await control("POST", "/_sim/check_token", { token })).accepted;
}
