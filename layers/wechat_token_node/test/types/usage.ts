// Compiled (never run) by `npm run typecheck`: the declarations in src/index.d.ts describe
// the API the way a TypeScript consumer uses it. A wrong declaration fails the build.

import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import {
  CredentialKey,
  CredentialRecord,
  InMemoryRecordSource,
  LambdaPassiveRefresh,
  PassiveRefreshError,
  SAFE_MAX_CACHE_SECONDS,
  TokenError,
  TokenReader,
  WeChatAPIError,
  WeChatClient,
  configure,
  fingerprint,
  getAccessToken,
  getTicket,
  jsapiSignature,
  setLogger,
  type JsapiConfig,
  type PassiveOutcome,
} from "wechat-token";

export async function handler(): Promise<{
  fingerprint: string;
  ips: number;
  config: JsapiConfig;
}> {
  const token: string = await getAccessToken();
  const ticket: string = await getTicket("wx1", "jsapi");
  const client = new WeChatClient("wx1", { timeoutSeconds: 5 });
  const reply = await client.get<{ ip_list: string[] }>("/cgi-bin/get_api_domain_ip");
  await client.post("/cgi-bin/message/custom/send", { touser: "o1", msgtype: "text" });
  const config = await jsapiSignature("https://example.com/page", { ticketType: "jsapi" });
  const other: JsapiConfig = await jsapiSignature("https://example.com/", "wx1");
  void other;
  void ticket;
  return { fingerprint: fingerprint(token), ips: reply.ip_list.length, config };
}

export function wiring(): TokenReader {
  const source = new InMemoryRecordSource();
  source.put(new CredentialRecord({ app_id: "wx1", value: "t", expires_at: 1e10 }));
  const passive = async (appId: string, kind: string, stale: string, errcode: number | null) => {
    void appId;
    void kind;
    void stale;
    void errcode;
    const outcome: PassiveOutcome = "refreshed";
    return outcome;
  };
  configure({ source, cacheSeconds: SAFE_MAX_CACHE_SECONDS, passiveRefresh: passive });
  new TokenReader({ client: new DynamoDBClient({}), tableName: "t" });
  new TokenReader({ passiveRefresh: new LambdaPassiveRefresh({ functionName: "f" }) });
  setLogger(null);
  return new TokenReader({ source, passiveRefresh: null, clock: () => Date.now() / 1000 });
}

export function errors(error: unknown): string {
  const key = new CredentialKey("wx1");
  if (error instanceof WeChatAPIError) return `${error.errcode} ${error.path} ${key.id}`;
  if (error instanceof PassiveRefreshError) return error.outcome ?? "none";
  if (error instanceof TokenError) return error.message;
  return "other";
}
