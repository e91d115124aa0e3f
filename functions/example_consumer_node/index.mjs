// ExampleConsumerNodeFunction: how a Node.js consumer Lambda uses the wechat-token layer.
//
// It reads its app's token through the layer (cached in memory for about a minute, never past
// its expiry) and calls a WeChat server API with it. It never logs or returns the token.
//
// Settings (template.yaml): TOKEN_TABLE_NAME, WECHAT_APP_ID, WECHAT_API_BASE_URL and
// PASSIVE_REFRESH_FUNCTION_NAME (the PassiveRefreshFunction, the only function a consumer may
// invoke: on a rejected token WeChatClient reports it there and retries once). The layer
// (WeChatTokenNodeLayer) provides the `wechat-token` package; the Node.js runtime provides
// the AWS SDK it uses.

import { WeChatClient, fingerprint, getAccessToken } from "wechat-token";

const APP_ID_ENV = "WECHAT_APP_ID";
const PASSIVE_FUNCTION_ENV = "PASSIVE_REFRESH_FUNCTION_NAME";
const VERBOSE = ["DEBUG", "INFO"].includes((process.env.LOG_LEVEL ?? "INFO").toUpperCase());

// Created once per execution environment and reused while warm.
const clients = new Map();

function clientFor(appId) {
  let client = clients.get(appId);
  if (client === undefined) {
    client = new WeChatClient(appId);
    clients.set(appId, client);
  }
  return client;
}

export async function handler(event) {
  const appId = event?.app_id || process.env[APP_ID_ENV]?.trim();
  if (!appId) {
    throw new Error(
      `${APP_ID_ENV} is not set: set it to the app's key in the wechat-token registry`,
    );
  }
  const reply = await clientFor(appId).get("/cgi-bin/get_api_domain_ip");
  const token = await getAccessToken(appId); // a cache hit: the client just read it
  const ipRanges = Array.isArray(reply.ip_list) ? reply.ip_list.length : 0;
  if (VERBOSE) console.info(`app ${appId}: WeChat API domain has ${ipRanges} IP ranges`);
  return {
    app_id: appId,
    token_fingerprint: fingerprint(token),
    ip_ranges: ipRanges,
    passive_refresh: Boolean(process.env[PASSIVE_FUNCTION_ENV]?.trim()),
  };
}
