# syntax=docker/dockerfile:1
# Build: the release binary (migrations and GraphiQL's files are embedded in it at compile time).
FROM rust:1-bookworm AS build
WORKDIR /app
# Dependencies first, against placeholder sources, so source edits do not rebuild them.
# Every target Cargo.toml declares must exist for the manifest to load.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src \
       target/release/tenantry target/release/deps/tenantry-* target/release/deps/libtenantry-* \
       target/release/.fingerprint/tenantry-*
COPY src ./src
COPY migrations ./migrations
COPY assets ./assets
# Newer than anything the placeholder build left behind.
# The image ships the binary without its debug info (290 MB -> 61 MB); the symbol table stays,
# so a panic's backtrace still names functions. The unstripped binary (line tables, for
# profiling) is what `cargo build --release` leaves on a developer machine.
RUN find src migrations assets -type f -exec touch {} + \
    && cargo build --release --locked --bin tenantry \
    && strip --strip-debug target/release/tenantry

# Run: a slim image with the binary, as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin tenantry
COPY --from=build /app/target/release/tenantry /usr/local/bin/tenantry
USER tenantry
ENV BIND_ADDR=0.0.0.0:8080 LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["tenantry"]
CMD ["serve"]
