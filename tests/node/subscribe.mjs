// A stock graphql-transport-ws client (the `graphql-ws` package): subscribes to quotaAlerts
// and prints one JSON line per event: {"ready":true} once acknowledged, then {"data":...}
// per alert, {"error":...} on errors. Exits after `count` alerts or `timeoutMs`.
// usage: node subscribe.mjs <ws-url> <jwt> <count> <timeoutMs> [resource]
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, token, count, timeoutMs, resource] = process.argv.slice(2);
const want = Number(count);
let seen = 0;

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${token}` },
  lazy: false,
  retryAttempts: 0,
  on: { connected: () => console.log(JSON.stringify({ ready: true })) },
});

const finish = (code) => {
  client.dispose();
  process.exit(code);
};
setTimeout(() => finish(0), Number(timeoutMs));

client.subscribe(
  {
    query: 'subscription($r: String) { quotaAlerts(resource: $r) { tenantId resource threshold used limit percentUsed } }',
    variables: { r: resource ?? null },
  },
  {
    next: (msg) => {
      console.log(JSON.stringify(msg));
      seen += 1;
      if (seen >= want && want > 0) finish(0);
    },
    error: (err) => {
      console.log(JSON.stringify({ error: String(err?.message ?? err?.reason ?? err) }));
      finish(1);
    },
    complete: () => finish(0),
  },
);
