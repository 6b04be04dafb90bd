# Shared by scripts/dev.sh and scripts/test.sh: make sure the local PostgreSQL and Redis run,
# the way the machine image starts them, and create databases on demand.
# shellcheck shell=bash

PGHOST_ADDR="${PGHOST_ADDR:-127.0.0.1}"

log() { printf '%s\n' "$*" >&2; }

wait_for() { # wait_for <what> <seconds> <command...>
    local what=$1 secs=$2; shift 2
    for _ in $(seq "$secs"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    log "error: $what did not come up within ${secs}s"
    return 1
}

ensure_postgres() {
    if pg_isready -h "$PGHOST_ADDR" -p 5432 -q 2>/dev/null; then return 0; fi
    log "starting PostgreSQL"
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
        # shellcheck disable=SC2046
        pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start || true
    fi
    wait_for PostgreSQL 30 pg_isready -h "$PGHOST_ADDR" -p 5432 -q
}

ensure_redis() {
    if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return 0; fi
    log "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    wait_for Redis 15 redis-cli -h 127.0.0.1 -p 6379 ping
}

ensure_database() { # ensure_database <name>
    local name=$1
    if ! psql -h "$PGHOST_ADDR" -U postgres -d postgres -tAc "select 1 from pg_database where datname = '$name'" | grep -q 1; then
        log "creating database $name"
        psql -h "$PGHOST_ADDR" -U postgres -d postgres -qc "create database \"$name\""
    fi
}
