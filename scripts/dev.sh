#!/usr/bin/env bash
# Runs Tenantry with demo data: starts PostgreSQL/Redis if needed, creates the database,
# migrates, seeds plans and demo tenants (printing ready-to-use tokens), then serves on
# http://127.0.0.1:8080/graphql (GraphiQL in a browser). Settings: .env (from .env.example).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

[ -f .env ] || { cp .env.example .env; log "created .env from .env.example"; }
ensure_postgres
ensure_redis
case "${DATABASE_URL:-}" in
    "" | *@127.0.0.1:5432/tenantry | *@localhost:5432/tenantry | *@localhost/tenantry) ensure_database tenantry ;;
esac

cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-target}/release/tenantry"
"$BIN" seed --demo
exec "$BIN" serve
