// JS-SDK signatures, so that consumers never handle the jsapi_ticket by hand (the Python
// layer's wechat_token/jssdk.py).

import { createHash, randomBytes } from "node:crypto";

import { defaultReader } from "./reader.mjs";
import { TICKET_KINDS } from "./record.mjs";
import { appIdFromEnv } from "./settings.mjs";

async function ticketOf(reader, appId, ticketType) {
  const kind = Object.hasOwn(TICKET_KINDS, ticketType) ? TICKET_KINDS[ticketType] : undefined;
  if (kind === undefined) {
    const known = Object.keys(TICKET_KINDS).sort().join(", ");
    throw new TypeError(`ticketType must be one of ${known}, not '${ticketType}'`);
  }
  return reader.get(appId || appIdFromEnv(), kind);
}

/** The app's current JS-SDK ticket (`jsapi`, `wx_card` or WeCom `agent_config`). */
export function getTicket(appId = null, ticketType = "jsapi") {
  return ticketOf(defaultReader(), appId, ticketType);
}

/**
 * WeChat's JS-SDK signature: sha1 of the four fields, sorted by name, as a query string. The
 * URL is the page's full URL without its #fragment.
 */
export function sign(ticket, nonceStr, timestamp, url) {
  const page = url.split("#", 1)[0];
  const plain = `jsapi_ticket=${ticket}&noncestr=${nonceStr}&timestamp=${timestamp}&url=${page}`;
  return createHash("sha1").update(plain, "utf8").digest("hex");
}

/**
 * Everything a page needs for wx.config (or WeCom's wx.agentConfig), signed with the stored
 * ticket: {appId, timestamp, nonceStr, signature}. `appId` is the registry key (default
 * WECHAT_APP_ID). Options: `wechatAppId` (the appId the page reports, when it differs from
 * the key; WeCom: the corpid), `ticketType` (`jsapi`), `nonceStr`, `timestamp`, `reader`.
 * The second argument may be the options object itself.
 */
export async function jsapiSignature(url, appId = null, options = {}) {
  if (appId !== null && typeof appId === "object") return jsapiSignature(url, null, appId);
  const { wechatAppId = null, ticketType = "jsapi", nonceStr = null, timestamp = null } = options;
  const app = appId || appIdFromEnv();
  const ticket = await ticketOf(options.reader ?? defaultReader(), app, ticketType);
  const nonce = nonceStr || randomBytes(12).toString("base64url");
  const time = timestamp ?? Math.floor(Date.now() / 1000);
  return {
    appId: wechatAppId || app,
    timestamp: time,
    nonceStr: nonce,
    signature: sign(ticket, nonce, time, url),
  };
}
