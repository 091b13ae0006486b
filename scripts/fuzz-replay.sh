#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/, a crate of its own) on the stable toolchain and replays their seed
# corpus (fuzz/corpus/<target>) through them; a seed that panics fails the script.
#
# Why: the targets name the library's public API (`http`, `protocol::json`, `ws::codec`); building
# them here is what keeps that API public (lib.rs is `pub(crate)` by default) and the seeds from
# regressing into a panic. This is not fuzzing (no coverage instrumentation on stable, no new
# inputs): real fuzzing is in fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
cargo build --locked --bins --quiet
for target in http_request json_command ws_decoder; do
    echo "fuzz-replay: $target: $(find "corpus/$target" -type f | wc -l) seeds"
    # A crash is reported by libFuzzer (exit status non-zero); its input is written to target/, not
    # beside the sources.
    "target/debug/$target" -runs=0 -artifact_prefix=target/ "corpus/$target" 2>&1 | tail -n 1
done
