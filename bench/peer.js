// The peer of the benchmark: PostGraphile 4 in library mode on the same database, the same RLS
// policies and the same application role as Tenantry. Each request's HS256 JWT is verified
// (the same secret, the same claims) and turned into the transaction's settings, the way
// Tenantry scopes a request: role `tenantry_app`, `app.tenant_id` from the `tenant_id` claim,
// `app.bypass_rls = on` for platform admins only.
//
// bench/run.sh installs the packages (npm, pinned) outside the repository and runs this file
// with NODE_PATH pointing at them. Environment: PEER_DATABASE_URL, JWT_SECRET, PEER_PORT,
// PEER_POOL_SIZE.
"use strict";

const http = require("http");
const { Pool } = require("pg");
const jwt = require("jsonwebtoken");
const { postgraphile } = require("postgraphile");

const secret = process.env.JWT_SECRET;
const pool = new Pool({
  connectionString: process.env.PEER_DATABASE_URL,
  max: Number(process.env.PEER_POOL_SIZE || 16),
});

function settingsFor(req) {
  const header = req.headers.authorization || "";
  const token = header.startsWith("Bearer ") ? header.slice(7) : "";
  if (!token) {
    // Anonymous: no tenant, tenant-owned tables answer no rows (as in Tenantry).
    return { role: "tenantry_app", "app.tenant_id": "", "app.bypass_rls": "off" };
  }
  // Throws on a bad token: PostGraphile answers with an error, as Tenantry does.
  const claims = jwt.verify(token, secret, { algorithms: ["HS256"] });
  if (claims.role === "platform_admin") {
    return { role: "tenantry_app", "app.tenant_id": "", "app.bypass_rls": "on" };
  }
  return {
    role: "tenantry_app",
    "app.tenant_id": String(claims.tenant_id || ""),
    "app.bypass_rls": "off",
  };
}

const handler = postgraphile(pool, "public", {
  pgSettings: settingsFor,
  graphiql: false,
  disableQueryLog: true,
  retryOnInitFail: false,
  setofFunctionsContainNulls: false,
  ignoreRBAC: true,
});

http.createServer(handler).listen(Number(process.env.PEER_PORT || 18081), "127.0.0.1", () => {
  console.log(`peer listening on ${process.env.PEER_PORT || 18081}`);
});
