#!/usr/bin/env bash
# Side-by-side benchmark (issue 12). Not a test and not run by CI.
#
# Builds the release binary, seeds BENCH_TENANTS tenants into a fresh database, starts Tenantry
# and the peer — PostGraphile 4 in library mode (bench/peer.js) on the same database, the same
# RLS policies and role, each request's HS256 JWT verified into `app.tenant_id` — and drives
# both with one load tool (wrk), alternating peer and Tenantry round after round, next to
# pgbench baselines measured in the same run. Prints one table with req/s, p99 and ratios.
#
# Knobs: BENCH_TENANTS (1000), BENCH_SECS (10 per run), BENCH_CONNS (32 connections for the
# queries), BENCH_METER_CONNS (64 for metering), BENCH_ROUNDS (2), BENCH_ONLY (a regex of run
# names, e.g. 'meter|sockets'), BENCH_SOCKETS (10000), BENCH_BIN (a prebuilt binary to measure
# instead of building this checkout, e.g. an older commit's).
# Needs: PostgreSQL and Redis (started if stopped), wrk and pgbench (apt), node + npm (the peer's
# packages are installed under ~/.cache/tenantry-bench, never in the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

TENANTS=${BENCH_TENANTS:-1000}
SECS=${BENCH_SECS:-10}
CONNS=${BENCH_CONNS:-32}
METER_CONNS=${BENCH_METER_CONNS:-64}
ROUNDS=${BENCH_ROUNDS:-2}
ONLY=${BENCH_ONLY:-.}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/tenantry-target}
WORK=${BENCH_WORK:-$HOME/.cache/tenantry-bench}
PEER_DIR=$WORK/peer
OUT=$WORK/run
DB=tenantry_bench
PGB_DB=tenantry_pgbench
API_PORT=18080
PEER_PORT=18081
mkdir -p "$OUT"
# 10,000 sockets need as many descriptors on both ends.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

ensure_postgres
ensure_redis

need_apt() { # need_apt <command> <package>
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null ||
        { as_root apt-get update -q >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null; }
}
need_apt wrk wrk
need_apt pgbench postgresql-contrib
need_apt node nodejs
need_apt npm npm
if [ ! -d "$PEER_DIR/node_modules/postgraphile" ] || [ ! -d "$PEER_DIR/node_modules/ws" ]; then
    log "installing PostGraphile 4 into $PEER_DIR"
    mkdir -p "$PEER_DIR"
    npm install --no-audit --no-fund --prefix "$PEER_DIR" postgraphile@4.14.1 jsonwebtoken@9.0.3 ws@8.18.3 >/dev/null
fi

BIN=${BENCH_BIN:-$TARGET/release/tenantry}
if [ -z "${BENCH_BIN:-}" ]; then
    log "building the release binary"
    CARGO_TARGET_DIR=$TARGET cargo build --release --quiet
fi

psql_admin() { psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

export APP_ENV=development
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB
export DATABASE_APP_ROLE=tenantry_app
export DATABASE_POOL_SIZE=16
export REDIS_URL=redis://127.0.0.1:6379
export REDIS_KEY_PREFIX=tenantry-bench:
export BIND_ADDR=127.0.0.1:$API_PORT
export JWT_SECRET=bench-secret-0123456789abcdef0123456789abcdef
export SERVICE_TOKEN=bench-service-token-0123456789abcdef
# The peer has no rate limiting; ours stays off so both answer every request (see
# docs/benchmarks.md for what the Redis limiter costs).
export RATE_LIMITS_ENABLED=false
# The fan-out run puts 1,000 subscribers on one tenant.
export WS_MAX_SOCKETS_PER_TENANT=5000
export RUST_LOG=${RUST_LOG:-warn}
unset STRIPE_SECRET_KEY STRIPE_API_BASE

log "fresh database $DB with $TENANTS tenants"
psql_admin -d postgres -c "drop database if exists $DB with (force)" -c "create database $DB"
"$BIN" migrate >/dev/null
"$BIN" seed >/dev/null
seed_start=$(date +%s.%N)
"$BIN" seed --tenants "$TENANTS" >/dev/null
seed_secs=$(echo "$(date +%s.%N) - $seed_start" | bc)
# No refusals during the runs: every tenant's api_calls quota gets room (HARD ones stay HARD).
psql_admin -d "$DB" -c "update quotas set \"limit\" = 1000000000000 where resource = 'api_calls'"
psql_admin -d "$DB" -c "vacuum analyze" >/dev/null

log "pgbench tables in $PGB_DB"
psql_admin -d postgres -c "drop database if exists $PGB_DB with (force)" -c "create database $PGB_DB"
pgbench -h 127.0.0.1 -U postgres -i -q -s 10 "$PGB_DB" >/dev/null 2>&1
psql_admin -d "$PGB_DB" -c "create table counters (id int primary key, n bigint not null default 0)" \
    -c "insert into counters (id) select generate_series(1, 1000)" -c "vacuum analyze"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

"$BIN" serve --no-migrate >"$OUT/tenantry.log" 2>&1 &
pids+=($!)
api_pid=$!
PEER_DATABASE_URL=$DATABASE_URL PEER_PORT=$PEER_PORT PEER_POOL_SIZE=$DATABASE_POOL_SIZE \
    NODE_PATH=$PEER_DIR/node_modules node bench/peer.js >"$OUT/peer.log" 2>&1 &
pids+=($!)
peer_pid=$!
wait_for Tenantry 30 curl -fsS "http://127.0.0.1:$API_PORT/ready"
wait_for PostGraphile 60 curl -fsS -o /dev/null -X POST -H 'content-type: application/json' \
    --data '{"query":"{__typename}"}' "http://127.0.0.1:$PEER_PORT/graphql"

# The tenant of the one-tenant queries, its token, a platform admin's token, the metering sets.
slug=tenant-000003
tid=$(psql_admin -d "$DB" -c "select id from tenants where slug = '$slug'")
member_token=$("$BIN" token --role tenant_member --tenant "$slug" --ttl 2h)
admin_token=$("$BIN" token --role platform_admin --ttl 2h)
psql_admin -d "$DB" -c "select id from tenants order by slug limit 64" >"$OUT/ids64"
psql_admin -d "$DB" -c "select id from tenants order by slug limit 1000" >"$OUT/ids1000"

body() { # body <name> <graphql document>
    printf '{"query":%s}' "$(printf '%s' "$2" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')" >"$OUT/$1.json"
}
body ours_one '{ tenant { slug name status } }'
body peer_one "{ tenantById(id: \"$tid\") { slug name status } }"
body ours_nested '{ tenant { slug plan { slug } quotas { resource limit used } } }'
body peer_nested "{ tenantById(id: \"$tid\") { slug planByPlanId { slug } quotasByTenantId { nodes { resource limit used } } } }"
body ours_admin '{ tenants(first: 50) { nodes { slug name status plan { slug } quotas { resource limit used } features { key enabled } } } }'
body peer_admin '{ allTenants(first: 50, orderBy: PRIMARY_KEY_ASC) { nodes { slug name status planByPlanId { slug planFeaturesByPlanId { nodes { featureKey } } } quotasByTenantId { nodes { resource limit used } } tenantFeaturesByTenantId { nodes { featureKey enabled } } } } }'

# Every document must answer data without errors before it is timed.
check() { # check <port> <body> <token>
    local answer
    answer=$(curl -fsS -X POST -H 'content-type: application/json' -H "authorization: Bearer $3" \
        --data @"$OUT/$2.json" "http://127.0.0.1:$1/graphql")
    if ! printf '%s' "$answer" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d.get("data") and not d.get("errors") else 1)'; then
        log "error: $2 answered: ${answer:0:400}"
        exit 1
    fi
}
check $API_PORT ours_one "$member_token"
check $PEER_PORT peer_one "$member_token"
check $API_PORT ours_nested "$member_token"
check $PEER_PORT peer_nested "$member_token"
check $API_PORT ours_admin "$admin_token"
check $PEER_PORT peer_admin "$admin_token"

rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo '?'; }
SOCKETS=${BENCH_SOCKETS:-10000}
idle_rss=$(rss "$api_pid")
sockets_line="not run"
if [[ sockets =~ $ONLY ]]; then
    hot=$(psql_admin -d "$DB" -c "select id from tenants where slug = 'tenant-000002'")
    psql_admin -d "$DB" -c "update quotas set \"limit\" = 1000, used = 0 where tenant_id = '$hot' and resource = 'api_calls'"
    log "opening $SOCKETS subscriptions"
    coproc SOCK {
        WS_URL="ws://127.0.0.1:$API_PORT/graphql/ws" SOCKETS=$SOCKETS HOT_TENANT=$hot \
            HOT_SUBSCRIBERS=1000 TENANT_IDS="$OUT/ids1000" SERVICE_TOKEN=$SERVICE_TOKEN \
            USAGE_URL="http://127.0.0.1:$API_PORT/internal/tenants/$hot/usage" \
            NODE_PATH=$PEER_DIR/node_modules node bench/sockets.js 2>"$OUT/sockets.err"
    }
    read -r ready <&"${SOCK[0]}" || true
    if [ "$ready" = ready ]; then
        socket_rss=$(rss "$api_pid")
        echo >&"${SOCK[1]}"
        read -r sockets_json <&"${SOCK[0]}" || true
        per_socket=$(echo "($socket_rss - $idle_rss) * 1024 / $SOCKETS" | bc -l)
        sockets_line=$(printf '%s sockets: RSS %s -> %s MiB (%.1f KiB per socket); fan-out: %s' \
            "$SOCKETS" "$idle_rss" "$socket_rss" "$per_socket" "$sockets_json")
    else
        sockets_line="failed: $(tail -3 "$OUT/sockets.err")"
    fi
    wait "$SOCK_PID" 2>/dev/null || true
    # Back to room for the metering runs.
    psql_admin -d "$DB" -c "update quotas set \"limit\" = 1000000000000 where tenant_id = '$hot' and resource = 'api_calls'"
fi

# results: name -> "req/s p99_ms" (the best of the rounds for req/s; the p99 of that run)
declare -A RPS P99 ERRS
record() { # record <name> <wrk output file>
    local rps p99 errs
    rps=$(awk '/Requests\/sec/ {print $2}' "$2")
    p99=$(awk '$1 == "99%" {print $2}' "$2")
    errs=$(awk '/Non-2xx/ {print $5}' "$2")
    errs=${errs:-0}
    case $p99 in
        *us) p99=$(echo "${p99%us} / 1000" | bc -l) ;;
        *ms) p99=${p99%ms} ;;
        *s) p99=$(echo "${p99%s} * 1000" | bc -l) ;;
    esac
    if [ -z "${RPS[$1]:-}" ] || [ "$(echo "$rps > ${RPS[$1]}" | bc)" = 1 ]; then
        RPS[$1]=$rps
        P99[$1]=$p99
    fi
    ERRS[$1]=$(( ${ERRS[$1]:-0} + errs ))
}
wrk_graphql() { # wrk_graphql <name> <port> <body> <token>
    [[ $1 =~ $ONLY ]] || return 0
    BENCH_BODY="$OUT/$3.json" BENCH_AUTH="Bearer $4" \
        wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s bench/wrk/graphql.lua \
        "http://127.0.0.1:$2/graphql" >"$OUT/$1.wrk"
    record "$1" "$OUT/$1.wrk"
}
wrk_usage() { # wrk_usage <name> <ids file>
    [[ $1 =~ $ONLY ]] || return 0
    BENCH_IDS="$2" BENCH_SERVICE_TOKEN=$SERVICE_TOKEN \
        wrk -t2 -c"$METER_CONNS" -d"${SECS}s" --latency -s bench/wrk/usage.lua \
        "http://127.0.0.1:$API_PORT" >"$OUT/$1.wrk"
    record "$1" "$OUT/$1.wrk"
}
pgbench_run() { # pgbench_run <name> <clients> <pgbench args...>
    local name=$1 clients=$2
    shift 2
    [[ $name =~ $ONLY ]] || return 0
    local tps
    tps=$(pgbench -h 127.0.0.1 -U postgres -n -c "$clients" -j 2 -T "$SECS" "$@" "$PGB_DB" 2>/dev/null |
        awk '/^tps/ {print $3}')
    if [ -z "${RPS[$name]:-}" ] || [ "$(echo "$tps > ${RPS[$name]}" | bc)" = 1 ]; then
        RPS[$name]=$tps
    fi
}
printf 'UPDATE counters SET n = n + 1 WHERE id = 1;\n' >"$OUT/hot.sql"
printf '\\set id random(1, 64)\nUPDATE counters SET n = n + 1 WHERE id = :id;\n' >"$OUT/spread64.sql"
printf '\\set id random(1, 1000)\nUPDATE counters SET n = n + 1 WHERE id = :id;\n' >"$OUT/spread1000.sql"

used_total() { psql_admin -d "$DB" -c "select coalesce(sum(used), 0) from quotas where resource = 'api_calls'"; }
used_before=$(used_total)
answered=0

for round in $(seq "$ROUNDS"); do
    log "round $round/$ROUNDS"
    pgbench_run pgbench_select "$CONNS" -S -M simple
    pgbench_run pgbench_select_prepared "$CONNS" -S -M prepared
    wrk_graphql peer_one $PEER_PORT peer_one "$member_token"
    wrk_graphql ours_one $API_PORT ours_one "$member_token"
    wrk_graphql peer_nested $PEER_PORT peer_nested "$member_token"
    wrk_graphql ours_nested $API_PORT ours_nested "$member_token"
    wrk_graphql peer_admin $PEER_PORT peer_admin "$admin_token"
    wrk_graphql ours_admin $API_PORT ours_admin "$admin_token"
    pgbench_run pgbench_update_hot "$METER_CONNS" -f "$OUT/hot.sql"
    pgbench_run pgbench_update_64 "$METER_CONNS" -f "$OUT/spread64.sql"
    pgbench_run pgbench_update_1000 "$METER_CONNS" -f "$OUT/spread1000.sql"
    for m in meter_64:ids64 meter_1000:ids1000; do
        name=${m%%:*}
        [[ $name =~ $ONLY ]] || continue
        wrk_usage "$name" "$OUT/${m##*:}"
        answered=$((answered + $(awk '/requests in/ {print $1}' "$OUT/$name.wrk")))
    done
done
recorded=$(( $(used_total) - used_before ))

fmt() { [ -n "${RPS[$1]:-}" ] && printf '%.0f' "${RPS[$1]}" || printf -- '-'; }
ratio() { # ratio <a> <b>
    if [ -n "${RPS[$1]:-}" ] && [ -n "${RPS[$2]:-}" ]; then
        printf '%.2f×' "$(echo "${RPS[$1]} / ${RPS[$2]}" | bc -l)"
    else printf -- '-'; fi
}
p99() { [ -n "${P99[$1]:-}" ] && printf '%.1f ms' "${P99[$1]}" || printf -- '-'; }

echo
echo "Tenantry ${BENCH_BIN:-$(git rev-parse --short HEAD)} vs PostGraphile 4.14.1, $TENANTS tenants, $(nproc) cores," \
    "wrk ${SECS}s × $ROUNDS rounds (best round), $(date -u +%Y-%m-%d)"
echo "seed --tenants $TENANTS: ${seed_secs}s; RSS after the runs: Tenantry $(rss "$api_pid") MiB," \
    "PostGraphile $(rss "$peer_pid") MiB"
echo
echo "| run | Tenantry req/s | p99 | PostGraphile req/s | p99 | vs peer | baseline | vs baseline |"
echo "|---|---|---|---|---|---|---|---|"
echo "| one entity \`{ tenant { slug name status } }\` | $(fmt ours_one) | $(p99 ours_one) | $(fmt peer_one) | $(p99 peer_one) | $(ratio ours_one peer_one) | pgbench -S simple $(fmt pgbench_select) (prepared $(fmt pgbench_select_prepared)) | $(ratio ours_one pgbench_select) |"
echo "| nested \`{ tenant { slug plan { slug } quotas { … } } }\` | $(fmt ours_nested) | $(p99 ours_nested) | $(fmt peer_nested) | $(p99 peer_nested) | $(ratio ours_nested peer_nested) | | |"
echo "| admin \`tenants(first: 50)\` + plan, quotas, features | $(fmt ours_admin) | $(p99 ours_admin) | $(fmt peer_admin) | $(p99 peer_admin) | $(ratio ours_admin peer_admin) | | |"
echo "| usage over 64 tenants ($METER_CONNS conns) | $(fmt meter_64) | $(p99 meter_64) | | | | pgbench UPDATE: hot row $(fmt pgbench_update_hot), 64 rows $(fmt pgbench_update_64) | $(ratio meter_64 pgbench_update_hot) / $(ratio meter_64 pgbench_update_64) |"
echo "| usage over 1,000 tenants ($METER_CONNS conns) | $(fmt meter_1000) | $(p99 meter_1000) | | | | pgbench UPDATE 1,000 rows $(fmt pgbench_update_1000) | $(ratio meter_1000 pgbench_update_hot) / $(ratio meter_1000 pgbench_update_1000) |"
echo
# Every GraphQL answer of ours under load, counted by the server itself: anything but `ok` is
# reported (the load tool sees only HTTP statuses, and GraphQL errors travel with 200).
not_ok=$(curl -fsS "http://127.0.0.1:$API_PORT/metrics" |
    awk '/^tenantry_graphql_requests_total/ && !/outcome="ok"/ {n += $NF} END {print n + 0}')
echo "GraphQL answers of Tenantry that were not ok during the runs: $not_ok"
for k in "${!ERRS[@]}"; do
    [ "${ERRS[$k]}" = 0 ] || echo "warning: $k had ${ERRS[$k]} non-2xx answers"
done
echo "usage: $answered increments answered by wrk, $recorded recorded in quotas.used" \
    "(recorded ≥ answered: requests cut off at the end of a run still commit)"
echo "idle RSS after start: $idle_rss MiB; $sockets_line"
echo "raw wrk output: $OUT/*.wrk"
