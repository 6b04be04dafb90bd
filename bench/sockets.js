// Many idle GraphQL subscriptions, then a fan-out (bench/run.sh runs this; not a test).
//
// Opens SOCKETS WebSockets to WS_URL (`graphql-transport-ws`), each with its own HS256 JWT
// (JWT_SECRET) and one `quotaAlerts` subscription: HOT_SUBSCRIBERS of them for the tenant
// HOT_TENANT, the rest spread over the tenants of TENANT_IDS (a file, one id per line). Prints
// `ready`, waits for a line on stdin (the caller reads the server's RSS meanwhile), then pushes
// HOT_TENANT's api_calls quota (limit set to 1000 by the caller, thresholds 75/90/95/100 %)
// across its four thresholds with four usage increments through USAGE_URL, and measures, for
// every alert on every socket, the time from the increment being sent to the alert arriving.
// Prints one JSON line: latency percentiles, alerts expected and received, strays.
"use strict";

const fs = require("fs");
const readline = require("readline");
const jwt = require("jsonwebtoken");
const WebSocket = require("ws");

const env = (k, d) => process.env[k] ?? d;
const WS_URL = env("WS_URL");
const SOCKETS = Number(env("SOCKETS", 10000));
const HOT = env("HOT_TENANT");
const HOT_SUBSCRIBERS = Number(env("HOT_SUBSCRIBERS", 1000));
const USAGE_URL = env("USAGE_URL");
const SERVICE_TOKEN = env("SERVICE_TOKEN");
const SECRET = env("JWT_SECRET");
// connect | init | subscribe: how far each socket goes (the first two measure what a socket
// costs before its subscription; the fan-out runs only with `subscribe`).
const STAGE = env("STAGE", "subscribe");
const others = fs.readFileSync(env("TENANT_IDS"), "utf8").split("\n").filter((l) => l && l !== HOT);

const token = (tenant, i) =>
  jwt.sign({ sub: `bench-${i}`, tenant_id: tenant, role: "tenant_member" }, SECRET, {
    algorithm: "HS256",
    expiresIn: "2h",
  });

const sockets = [];
let sentAt = null;
const latencies = [];
let strays = 0;

function open(i) {
  const tenant = i < HOT_SUBSCRIBERS ? HOT : others[i % others.length];
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(WS_URL, "graphql-transport-ws", { perMessageDeflate: false });
    const s = { ws, tenant, received: 0 };
    ws.on("open", () => {
      if (STAGE === "connect") {
        sockets.push(s);
        return resolve();
      }
      ws.send(JSON.stringify({ type: "connection_init", payload: { Authorization: `Bearer ${token(tenant, i)}` } }));
    });
    ws.on("message", (data) => {
      const m = JSON.parse(data);
      if (m.type === "connection_ack" && STAGE === "init") {
        sockets.push(s);
        resolve();
      } else if (m.type === "connection_ack") {
        ws.send(
          JSON.stringify({
            id: "1",
            type: "subscribe",
            payload: { query: "subscription { quotaAlerts(resource: \"api_calls\") { threshold used } }" },
          }),
        );
        sockets.push(s);
        resolve();
      } else if (m.type === "next") {
        s.received += 1;
        if (tenant !== HOT) strays += 1;
        else latencies.push(Number(process.hrtime.bigint() - sentAt) / 1e6);
      } else if (m.type === "error") {
        reject(new Error(JSON.stringify(m)));
      }
    });
    ws.on("error", reject);
    ws.on("close", (code, reason) => {
      if (sentAt === null) reject(new Error(`closed ${code} ${reason}`));
    });
  });
}

async function usage(amount) {
  const r = await fetch(USAGE_URL, {
    method: "POST",
    headers: { "content-type": "application/json", "x-service-token": SERVICE_TOKEN },
    body: JSON.stringify({ resource: "api_calls", amount }),
  });
  if (!r.ok) throw new Error(`usage answered ${r.status}: ${await r.text()}`);
}

const pct = (xs, p) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

(async () => {
  const started = Date.now();
  for (let i = 0; i < SOCKETS; i += 250) {
    const batch = [];
    for (let j = i; j < Math.min(SOCKETS, i + 250); j++) batch.push(open(j));
    await Promise.all(batch);
  }
  const openSecs = (Date.now() - started) / 1000;
  // Subscriptions start when the server has read the subscribe message: give it a moment.
  await new Promise((r) => setTimeout(r, 2000));
  console.log("ready");
  await new Promise((r) => readline.createInterface({ input: process.stdin }).once("line", r));
  if (STAGE !== "subscribe") {
    console.log(JSON.stringify({ sockets: sockets.length, stage: STAGE, open_secs: openSecs }));
    process.exit(0);
  }

  // A running server has its statements prepared: one increment crossing nothing first.
  await usage(1);
  // 751 -> 75 %, 901 -> 90 %, 951 -> 95 %, 1000 -> 100 %: one alert each.
  const acks = [];
  for (const amount of [750, 150, 50, 49]) {
    sentAt = process.hrtime.bigint();
    await usage(amount);
    acks.push(Number(process.hrtime.bigint() - sentAt) / 1e6);
    await new Promise((r) => setTimeout(r, 1000));
  }
  latencies.sort((a, b) => a - b);
  const hot = sockets.filter((s) => s.tenant === HOT);
  console.log(
    JSON.stringify({
      sockets: sockets.length,
      open_secs: openSecs,
      expected: hot.length * 4,
      received: latencies.length,
      short_sockets: hot.filter((s) => s.received !== 4).length,
      strays,
      p50_ms: pct(latencies, 50),
      p99_ms: pct(latencies, 99),
      max_ms: latencies[latencies.length - 1],
      // The increment's own answer (commit included), for each of the four.
      usage_answer_ms: acks.map((a) => Math.round(a * 10) / 10),
    }),
  );
  for (const s of sockets) s.ws.terminate();
  process.exit(0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
