# Shared by scripts/dev.sh, scripts/test.sh and bench/run.sh (sourced, not run): make sure the
# local PostgreSQL and Redis answer, starting them the way a Debian machine installs them, and
# create databases on demand.
# shellcheck shell=bash

PGHOST_ADDR="${PGHOST_ADDR:-127.0.0.1}"

log() { printf '%s\n' "$*" >&2; }

wait_for() { # wait_for <what> <seconds> <command...>
    local what=$1 secs=$2
    shift 2
    local _
    for _ in $(seq "$secs"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    log "error: $what did not come up within ${secs}s"
    return 1
}

# Runs a command as root: directly when we are root, through non-interactive sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        "$@"
    fi
}

ensure_postgres() {
    if pg_isready -h "$PGHOST_ADDR" -p 5432 -q >/dev/null 2>&1; then return 0; fi
    log "starting PostgreSQL"
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        local version
        # Newest installed cluster version (usually there is exactly one).
        version=$(ls /etc/postgresql | sort -V | tail -n 1)
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
            log "warning: pg_ctlcluster $version main start failed; waiting anyway"
    else
        log "warning: pg_ctlcluster not found; start PostgreSQL yourself"
    fi
    wait_for PostgreSQL 30 pg_isready -h "$PGHOST_ADDR" -p 5432 -q
}

ensure_redis() {
    if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return 0; fi
    log "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    wait_for Redis 15 redis-cli -h 127.0.0.1 -p 6379 ping
}

ensure_database() { # ensure_database <name>   (as superuser postgres on $PGHOST_ADDR:5432)
    local name=$1
    if ! [[ $name =~ ^[A-Za-z0-9_]+$ ]]; then
        log "warning: not creating database ${name@Q} (only [A-Za-z0-9_] names are handled)"
        return 0
    fi
    local found
    found=$(psql -h "$PGHOST_ADDR" -p 5432 -U postgres -d postgres -XtAc \
        "select 1 from pg_database where datname = '$name'")
    if [ "$found" != 1 ]; then
        log "creating database $name"
        psql -h "$PGHOST_ADDR" -p 5432 -U postgres -d postgres -Xqc "create database \"$name\""
    fi
}

# Prints the value of KEY from a dotenv file (last assignment wins, surrounding quotes removed).
env_file_value() { # env_file_value <file> <KEY>
    [ -f "$1" ] || return 0
    sed -n "s/^[[:space:]]*\(export[[:space:]]\{1,\}\)\{0,1\}$2=//p" "$1" | tail -n 1 |
        sed -e 's/[[:space:]]*$//' -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'\$/\1/"
}

# Installs Debian packages when missing (non-interactive; `apt-get update` once if the
# first try fails). Warns rather than fails: the step that needs the tool says what broke.
apt_install() { # apt_install <why> <package...>
    local why=$1
    shift
    log "installing $* ($why)"
    local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@")
    as_root "${install[@]}" </dev/null >/dev/null ||
        { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >/dev/null &&
            as_root "${install[@]}" </dev/null >/dev/null; } ||
        log "warning: installing $* failed"
}

# Debian's chromium, which tests/api/graphiql.rs drives headless (through tests/node).
ensure_chromium() {
    [ -x /usr/bin/chromium ] || apt_install "for the GraphiQL browser test" chromium
}

# A Compose implementation for `scripts/compose-check.sh`: the Docker CLI's plugin when
# present, else Debian's docker-compose. Prints the command.
compose_command() {
    if docker compose version >/dev/null 2>&1; then
        echo "docker compose"
        return 0
    fi
    command -v docker-compose >/dev/null 2>&1 || apt_install "to validate docker-compose.yml" docker-compose
    command -v docker-compose >/dev/null 2>&1 && echo "docker-compose"
}
