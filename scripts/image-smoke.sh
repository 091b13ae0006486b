#!/usr/bin/env bash
# Builds the container image from the Dockerfile with buildah (daemonless: `apt-get install -y buildah`,
# run as root) and checks it: it runs as a non-root user, starts, and two clients chat through it.
# Prints the image size. Not part of `scripts/test` or CI: it needs the base images (Docker Hub) and
# takes minutes; see docs/DEPLOY.md.
#
#   scripts/image-smoke.sh                      # full build: builder stage + runtime stage
#   ROOMCAST_IMAGE_BINARY=target/release/roomcast scripts/image-smoke.sh
#       # runtime stage only, with this binary standing in for the builder stage (no rust image needed)
#
# ROOMCAST_IMAGE_PULL=never uses only base images already in buildah's local storage (for instance a
# `docker.io/library/debian:bookworm-slim` made locally with debootstrap, see docs/DEPLOY.md).
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${ROOMCAST_IMAGE_TAG:-localhost/roomcast:smoke}"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

args=(--isolation chroot --format docker --build-arg "ROOMCAST_GIT_COMMIT=$commit" -t "$tag")
[ -z "${ROOMCAST_IMAGE_PULL:-}" ] || args+=("--pull=$ROOMCAST_IMAGE_PULL")
work="$(mktemp -d)"
ctr=""
server=""
cleanup() {
  [ -z "$server" ] || { kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
  [ -z "$ctr" ] || buildah rm "$ctr" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
if [ -n "${ROOMCAST_IMAGE_BINARY:-}" ]; then
  # The runtime stage copies /src/target/release/roomcast from the stage `builder`.
  mkdir -p "$work/builder/src/target/release"
  cp "$ROOMCAST_IMAGE_BINARY" "$work/builder/src/target/release/roomcast"
  args+=(--build-context "builder=$work/builder")
fi
buildah bud "${args[@]}" .
echo "image-smoke: $(buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$tag")"

ctr="$(buildah from "$tag")"
uid="$(buildah run --isolation chroot "$ctr" -- id -u)"
if [ "$uid" = 0 ]; then
  echo "image-smoke: the image runs as root" >&2
  exit 1
fi
echo "image-smoke: runs as uid $uid"

# chroot isolation shares the host's network: the server listens on a free loopback port.
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
buildah run --isolation chroot "$ctr" -- /usr/local/bin/roomcast --addr "127.0.0.1:$port" \
  --db /data/roomcast.db --log-level warn >"$work/server.out" 2>&1 &
server=$!
for _ in $(seq 1 300); do
  grep -q "listening on" "$work/server.out" && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.out" >&2; echo "image-smoke: the server exited" >&2; exit 1; }
  sleep 0.1
done
grep -q "listening on" "$work/server.out" || { cat "$work/server.out" >&2; echo "image-smoke: no 'listening on' in 30 s" >&2; exit 1; }
python3 scripts/ws-chat.py 127.0.0.1 "$port"
echo "image-smoke: ok ($tag)"
