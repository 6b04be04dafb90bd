#!/usr/bin/env bash
# Runs every test (unit and integration, including the schema drift check) against real
# PostgreSQL and Redis. Starts them if they are stopped; the tests create their own databases
# (a template, then one per test) and the application role. Extra arguments go to the test
# runner (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ensure_postgres
ensure_redis
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"

# The stock GraphQL WebSocket client the subscription tests drive.
if [ -f tests/node/package.json ]; then
    if ! command -v npm >/dev/null 2>&1; then
        log "error: node/npm are needed for tests/node (apt-get install nodejs npm)"
        exit 1
    fi
    if [ -f tests/node/package-lock.json ]; then
        npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
    else
        npm install --prefix tests/node --no-audit --no-fund --loglevel=error
    fi
fi

# Debian's chromium, driven headless by tests/api/graphiql.rs.
ensure_chromium

# Stripe's own Python library cross-checks our webhook signatures (tests/api/stripe_python.rs);
# schemathesis fuzzes the whole schema (tests/api/fuzz.rs).
if ! python3 -c "import stripe, schemathesis" >/dev/null 2>&1; then
    log "installing the Python test tools (stripe, schemathesis)"
    python3 -m pip install --quiet --user --disable-pip-version-check -r tests/python/requirements.txt ||
        python3 -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    log "cargo-nextest missing: installing it"
    cargo install cargo-nextest --locked || log "warning: installing cargo-nextest failed; using cargo test"
fi

# Targets: the library, the binary and tests/ (unit tests of src/ included; the integration
# tests are one binary, tests/api/main.rs, their names prefixed by module: `billing_stripe::`).
# Benchmarks are not tests: bench/run.sh.
if cargo nextest --version >/dev/null 2>&1; then
    exec cargo nextest run --lib --bins --tests --no-fail-fast "$@"
else
    exec cargo test --lib --bins --tests --no-fail-fast "$@"
fi
