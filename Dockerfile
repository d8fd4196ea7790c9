# Turnstile: the gateway (`turnstile`) and the load generator (`turnstile-load`) in one small
# image. cargo-chef caches the dependency build in its own layer, so a source change rebuilds
# only our crates.
#
# Both base images are build arguments, pinned (cargo-chef 0.1.77 on Rust 1.95), so a build
# behind a registry mirror can name its own: --build-arg CHEF_IMAGE=... --build-arg
# RUNTIME_IMAGE=...
ARG CHEF_IMAGE=lukemathwalker/cargo-chef:0.1.77-rust-1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# The tag is pinned in the ARG above; hadolint does not read ARG defaults.
# hadolint ignore=DL3006
FROM ${CHEF_IMAGE} AS chef
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# `dist`: the optimised profile that ships (thin LTO, one codegen unit; see Cargo.toml). Only
# the two binaries' dependencies: the workspace's test and bench crates (reqwest, criterion,
# governor, ...) are not built into the cache, so a dependency change does not pay for them.
RUN cargo chef cook --profile dist --locked --recipe-path recipe.json \
    --bin turnstile --bin turnstile-load
COPY . .
RUN cargo build --profile dist --locked --bin turnstile --bin turnstile-load \
    && cp target/dist/turnstile target/dist/turnstile-load /usr/local/bin/

# hadolint ignore=DL3006
FROM ${RUNTIME_IMAGE} AS runtime
# A fixed, unprivileged uid and gid: the gateway needs no privilege (it listens above 1024).
# The group is created with gid 10001 so that USER 10001:10001 names a real group.
RUN groupadd --system --gid 10001 turnstile \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin turnstile
COPY --from=builder /usr/local/bin/turnstile /usr/local/bin/turnstile-load /usr/local/bin/
COPY loadtest /opt/turnstile/loadtest
WORKDIR /opt/turnstile
USER 10001:10001
# Inside a container the gateway must listen beyond loopback; everything else keeps its
# defaults and can be set with TURNSTILE_* variables (see the README's configuration table).
ENV TURNSTILE_LISTEN=0.0.0.0:8080
# 8080: the API, /metrics, /healthz, /readyz. 8081: the admin API, when TURNSTILE_ADMIN_LISTEN
# sets it (it requires TURNSTILE_ADMIN_TOKEN beyond loopback). 8082: Envoy's rate limit service
# (gRPC), when TURNSTILE_RLS__LISTEN sets it.
EXPOSE 8080 8081 8082
# Liveness (GET /healthz). Readiness (/readyz: the backend serves; for redis, Redis answers) is
# `turnstile --readiness-check`, for orchestrators that separate the two.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD ["turnstile", "--healthcheck"]
ENTRYPOINT ["turnstile"]
