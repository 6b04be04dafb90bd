#!/usr/bin/env bash
# Prints metering throughput (increments/s, p50/p99) next to a pgbench baseline measured in
# the same run. Not a test. Knobs: BENCH_CLIENTS (64), BENCH_SECS (10).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ensure_postgres
ensure_redis
RUST_LOG="${RUST_LOG:-warn}" cargo bench --bench usage
