# syntax=docker/dockerfile:1
# Multi-stage build: compile with the Rust toolchain, run on a small Debian base as non-root.
# The same image, user (uid/gid 10001), port (5000) and health endpoints as docker-compose.yml and
# the Helm chart; scripts/container-check.sh builds and runs it for real (podman/buildah).
# The emulator's data directory exists in the image, owned by 10001, so a new named volume mounted
# there (docker-compose.yml) starts writable for the non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config libssl-dev && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked && strip target/release/tcr-adapter

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tcr \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/tcr-adapter --create-home tcr \
 && install -d -o 10001 -g 10001 /var/lib/tcr-adapter/emulator
COPY --from=build /src/target/release/tcr-adapter /usr/local/bin/tcr-adapter
COPY config.example.toml /etc/tcr-adapter/config.example.toml
USER 10001:10001
WORKDIR /var/lib/tcr-adapter
ENV TCR_ADAPTER__SERVER__LISTEN=0.0.0.0:5000
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:5000/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/tcr-adapter"]
CMD ["serve"]
