# syntax=docker/dockerfile:1
# Build: the release binary (migrations are embedded in it).
FROM rust:1-bookworm AS build
WORKDIR /app
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src target/release/deps/tenantry* target/release/tenantry*
COPY src ./src
COPY migrations ./migrations
RUN cargo build --release --locked

# Run: a slim image with the binary, as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 tenantry
COPY --from=build /app/target/release/tenantry /usr/local/bin/tenantry
USER tenantry
ENV BIND_ADDR=0.0.0.0:8080 LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["tenantry"]
CMD ["serve"]
