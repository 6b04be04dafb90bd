#!/usr/bin/env bash
# Validates docker-compose.yml with a real Compose implementation (`config`), no Docker engine
# needed: with the required secrets it must resolve, and without them it must refuse and say
# which variable is missing (the stack never starts on defaults anyone could read).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

read -r -a compose <<<"$(compose_command || true)"
if [ "${#compose[@]}" -eq 0 ]; then
    log "error: no Compose implementation (docker compose or docker-compose) could be installed"
    exit 1
fi
log "validating docker-compose.yml with: ${compose[*]} ($("${compose[@]}" version --short 2>/dev/null || echo '?'))"

# Nothing from the caller's environment or a local .env leaks into the check.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp docker-compose.yml "$scratch/"
cp Dockerfile "$scratch/" 2>/dev/null || true
run() { (cd "$scratch" && env -i PATH="$PATH" HOME="$scratch" "$@" "${compose[@]}" config) ; }

if out=$(run 2>&1); then
    log "error: docker-compose.yml resolved without any secret set"
    exit 1
fi
if ! grep -q "JWT_SECRET\|SERVICE_TOKEN\|CONFIG_ENCRYPTION_KEY\|BILLING_MODE" <<<"$out"; then
    log "error: without secrets Compose failed, but not naming the missing variable:"
    log "$out"
    exit 1
fi

secrets=(JWT_SECRET=ci-jwt-secret-of-more-than-thirty-two-bytes-0123456789
    SERVICE_TOKEN=ci-service-token-of-more-than-thirty-two-bytes-0123456789
    CONFIG_ENCRYPTION_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
    BILLING_MODE=local)
if ! resolved=$(run env "${secrets[@]}" 2>&1); then
    log "error: docker-compose.yml does not validate:"
    log "$resolved"
    exit 1
fi
for want in "serve" "JWT_SECRET: ci-jwt-secret" "service_healthy" "127.0.0.1"; do
    if ! grep -q -- "$want" <<<"$resolved"; then
        log "error: the resolved configuration lacks \`$want\`:"
        log "$resolved"
        exit 1
    fi
done
log "docker-compose.yml: valid; it refuses to resolve without its secrets"
