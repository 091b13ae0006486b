#!/usr/bin/env bash
# Builds the release binary exactly as the Dockerfile's builder stage does, then checks that it runs.
# CI runs this script (.ci/run) so the container build cannot rot while Docker is unavailable there.
#
# Output: target/release/roomcast. Set ROOMCAST_GIT_COMMIT to record a commit when there is no .git.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p roomcast --bin roomcast

# Smoke check: the binary starts, parses its flags and reports the package version and the commit
# (`roomcast 0.1.0 (1a2b3c4)`, or `(unknown)` outside git without ROOMCAST_GIT_COMMIT).
version="$(target/release/roomcast --version)"
expected="roomcast $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1) "
case "$version" in
  "$expected("*")") ;;
  *)
    echo "build-release: expected '$expected(<commit>)', got '$version'" >&2
    exit 1
    ;;
esac
target/release/roomcast --print-config >/dev/null
echo "build-release: ok ($version)"
