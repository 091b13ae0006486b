// roomcast.js with auth on: the token provider is called at connect and again when the server says
// the token expired; the new token goes in band (`refresh`) and the connection keeps working
// without a reconnect. Tokens are HS256 JWTs made here with node:crypto (no dependency).

import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";

import { RoomcastClient } from "../roomcast.js";
import { Server, WebSocketImpl, recorder, waitFor } from "./support.js";

const SECRET = "roomcast-js-test-secret-0123456789abcdef";

/** An HS256 JWT for `claims`. */
function jwt(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  return `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`;
}

test("an expiring token is refreshed in band through the provider, without a reconnect", { timeout: 90000 }, async () => {
  const server = await Server.start(["--jwt-secret", SECRET, "--token-grace", "20"]);
  const now = () => Math.floor(Date.now() / 1000);
  let calls = 0;
  const client = new RoomcastClient({
    url: server.wsUrl,
    WebSocket: WebSocketImpl,
    // The first token expires at once-ish; every later one is good for an hour.
    tokenProvider: async () => {
      calls += 1;
      return jwt({ name: "ann", exp: now() + (calls === 1 ? 2 : 3600) });
    },
  });
  const seen = recorder(client, ["state", "welcome", "error", "message"]);
  const refreshed = [];
  client.on("refreshed", (e) => refreshed.push(e));
  const room = client.join("tokens");
  client.connect();
  await waitFor("joined", () => room.joined);
  assert.equal(seen.welcome[0].user, "ann", "the token named the user");
  assert.ok(seen.welcome[0].expiresIn <= 2, `expiresIn ${seen.welcome[0].expiresIn}`);

  await waitFor("the server's token_expired", () => seen.error.some((e) => e.code === "token_expired"));
  await waitFor("refreshed", () => refreshed.length === 1);
  assert.equal(calls, 2, "the provider was asked again");
  assert.ok(refreshed[0].expiresIn > 3000, `expiresIn ${refreshed[0].expiresIn}`);

  const { confirmed } = client.publish("tokens", "after the refresh");
  assert.equal((await confirmed).content, "after the refresh");
  assert.deepEqual(
    seen.state.filter((s) => s.state === "connected").length,
    1,
    "one connection all along: no reconnect",
  );
  assert.ok(!seen.state.some((s) => s.state === "disconnected" && s.kind === "closed"), "never closed");
  client.close();
});
