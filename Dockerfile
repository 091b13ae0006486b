# roomcast container: a Rust builder stage running scripts/build-release.sh (the same script CI runs),
# then a small Debian runtime with only the binary, a non-root user and a volume for the history file.
#
#   docker build --build-arg ROOMCAST_GIT_COMMIT=$(git rev-parse --short HEAD) -t roomcast .
#   docker run -p 8000:8000 -v roomcast-data:/data roomcast
#
# See docs/DEPLOY.md.

# Fully qualified names: buildah and podman refuse short names unless a search registry is configured.
FROM docker.io/library/rust:1-bookworm AS builder
WORKDIR /src
# .git is not copied (see .dockerignore); pass the commit for roomcast_build_info instead.
ARG ROOMCAST_GIT_COMMIT=unknown
ENV ROOMCAST_GIT_COMMIT=${ROOMCAST_GIT_COMMIT}
COPY . .
RUN bash scripts/build-release.sh

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin roomcast \
    && mkdir -p /data && chown roomcast:roomcast /data
COPY --from=builder /src/target/release/roomcast /usr/local/bin/roomcast
USER roomcast
VOLUME /data
EXPOSE 8000
ENV ROOMCAST_LOG_FORMAT=json
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/healthz >/dev/null || exit 1
# SIGTERM (Docker's default stop signal) closes clients with 1001 and commits all history; keep
# --shutdown-grace below `docker stop --time` (10 s by default).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/roomcast"]
CMD ["--addr", "0.0.0.0:8000", "--db", "/data/roomcast.db"]
