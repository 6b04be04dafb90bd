#!/usr/bin/env bash
# Runs Tenantry with demo data: starts PostgreSQL/Redis if needed, creates the database,
# migrates, seeds plans and demo tenants (printing ready-to-use tokens), then serves on
# http://127.0.0.1:8080/graphql (GraphiQL in a browser). Settings: .env (from .env.example);
# variables already exported in the environment win over .env.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ensure_postgres
ensure_redis

if [ ! -f .env ]; then
    cp .env.example .env
    log "created .env from .env.example"
fi

# The database the binary will use: the environment first, then .env, then its default.
db_url="${DATABASE_URL:-$(env_file_value .env DATABASE_URL)}"
db_url="${db_url:-postgres://postgres@localhost:5432/tenantry}"
case "$db_url" in
    *[@/]127.0.0.1:5432/* | *[@/]127.0.0.1/* | *[@/]localhost:5432/* | *[@/]localhost/*)
        db_name="${db_url##*/}"
        ensure_database "${db_name%%\?*}"
        ;;
    *) log "DATABASE_URL is not the local PostgreSQL: not creating a database" ;;
esac

cargo run --release -- seed --demo
exec cargo run --release -- serve
