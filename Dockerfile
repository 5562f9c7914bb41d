# syntax=docker/dockerfile:1
# The coachflow image: `docker build -t coachflow .` (BuildKit, the default builder of Docker 23
# and later). helm/coachflow/README.md describes it; scripts/helm checks this file against the
# workspace and the chart.

# Rust toolchain of the builder: at least workspace.package.rust-version (Cargo.toml).
ARG RUST_VERSION=1.95
# The builder and the runtime share one Debian release, so the binary finds the glibc it was
# linked against: bookworm is Debian 12, the runtime's cc-debian12.
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# .dockerignore lets in only what the build reads: the manifests, the lock file, the crates,
# the migrations, the integration tests' manifest (a workspace member) and the protos.
COPY . .
# Dependency caching: the registry, git checkouts and target/ live in BuildKit cache mounts,
# so a rebuild after a source change recompiles only the workspace's own crates. (The caches
# stay on the builder machine; a CI builder that starts empty compiles everything.)
# The binary is copied out of the cached target/ in the same step.
RUN --mount=type=cache,id=coachflow-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=coachflow-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=coachflow-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p coachflow-server --bin coachflow \
 && install -D -m 0755 target/release/coachflow /out/coachflow \
 && install -d -m 0755 /out/data

# glibc, libgcc_s and CA certificates (for amqps://, https:// JWKS, OTLP over TLS); no shell,
# no package manager. The binary links libc, libm and libgcc_s only (rustls, bundled SQLite).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="coachflow" \
      org.opencontainers.image.description="Workflow engine for executive-coaching engagements (gRPC)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/coachflow"
COPY --from=builder /out/coachflow /usr/local/bin/coachflow
# The working directory, writable by the service's user: the embedded SQLite default
# (sqlite://coachflow.db) lands here. With a read-only root filesystem, mount a volume here
# (or use PostgreSQL); the service writes nowhere else.
COPY --from=builder --chown=65532:65532 /out/data /var/lib/coachflow
WORKDIR /var/lib/coachflow
# distroless's nonroot user, numeric so that the kubelet can verify runAsNonRoot.
USER 65532:65532
# Reachable from outside the container. The environment wins over a --config file, so the
# Helm chart sets these three again from its configuration values.
ENV COACHFLOW_GRPC_LISTEN=0.0.0.0:50051 \
    COACHFLOW_METRICS_LISTEN=0.0.0.0:9464 \
    COACHFLOW_LOG_FORMAT=json
# gRPC, Prometheus metrics
EXPOSE 50051 9464
# SIGTERM (the default stop signal) starts the graceful shutdown (shutdown.grace).
ENTRYPOINT ["/usr/local/bin/coachflow"]
CMD ["serve"]
