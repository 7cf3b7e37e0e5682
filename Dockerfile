# syntax=docker/dockerfile:1
# The webhook-operator image: the one binary on a distroless base, running as non-root.
#   make image                      # docker build -t $(IMAGE) .
# Every role runs from it: controller, router, deliver (started by the controller), local.

ARG RUST_VERSION=1.95

# --- build ------------------------------------------------------------------------------------
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# Only what cargo needs (see .dockerignore); benches/ because Cargo.toml declares them.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin webhook-operator \
    && cp target/release/webhook-operator /webhook-operator

# --- run --------------------------------------------------------------------------------------
# glibc, libgcc and CA certificates (webhook receivers' and NATS TLS), nothing else: no shell,
# no package manager. Debian 12, like the build stage, so the glibc matches.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /webhook-operator /usr/local/bin/webhook-operator
# "nonroot" (65532:65532), numeric so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/webhook-operator"]
LABEL org.opencontainers.image.title="webhook-operator" \
      org.opencontainers.image.description="Kubernetes-native webhook delivery over NATS JetStream" \
      org.opencontainers.image.licenses="Apache-2.0"
