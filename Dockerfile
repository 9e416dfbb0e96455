# syntax=docker/dockerfile:1
#
# One image for every Hookline service; the command picks the service:
#   docker run hookline dev | ingest | subscriptions | delivery
# and the same binary is the operator CLI:
#   docker run hookline tenant get acme --subscriptions-url http://subscriptions:50051

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The workspace root is the hookline-e2e test package, so name the binary's
# package (-p); `--bin hookline` alone finds no such target at the root.
# protox compiles the protos, so no protoc is needed.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p hookline --bin hookline \
    && install -m 0755 target/release/hookline /usr/local/bin/hookline

FROM debian:bookworm-slim
# ca-certificates: HTTPS deliveries (rustls with the system roots);
# curl: container health checks against /readyz.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin hookline
COPY --from=build /usr/local/bin/hookline /usr/local/bin/hookline
USER hookline
# Listen on all interfaces inside the container (the binary's defaults are
# loopback-only). Point HOOKLINE_NATS_URL and HOOKLINE_DATABASE_URL at your
# servers; see README.md#configuration for every variable.
ENV HOOKLINE_GRPC_ADDR=0.0.0.0:50051 \
    HOOKLINE_HTTP_ADDR=0.0.0.0:9464
# gRPC (services, health, reflection) and HTTP /healthz, /readyz, /metrics.
EXPOSE 50051 9464
ENTRYPOINT ["hookline"]
CMD ["dev"]
