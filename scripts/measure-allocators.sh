#!/usr/bin/env bash
# Compares the lab's `surreal` (glibc's malloc) with the same server built with the official
# release binary's allocator (jemalloc, with SurrealDB's allocation tracking), in one run:
# idle, peak and after-load memory per node, throughput and p99, as ratios (`lab bench
# --compare-server`). The official binary itself is the better comparison when it can be
# downloaded: pass it as the first argument instead of building one.
#
# Usage: scripts/measure-allocators.sh [PATH-TO-OTHER-SURREAL] [lab bench flags, e.g. --reps 5]
#
# Without a path it builds the jemalloc variant once (the surreal-server crate's `jemalloc`
# feature) into its own target folder, $LAB_CACHE/target-jemalloc, so the lab's own build is
# left untouched: ~26 min on 2 cores the first time, seconds after that.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$LAB_ROOT"

[ -x "$SURREAL_BIN" ] || { echo "error: the lab's server is not set up yet; run scripts/setup.sh (or scripts/build-server.sh) first" >&2; exit 1; }
lab="$CARGO_TARGET_DIR/release/lab"
[ -x "$lab" ] || cargo build --release --locked -p lab_cli

if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    other="$1"
    shift
else
    lab_step "building surreal with jemalloc (the official binary's allocator) into \$LAB_CACHE/target-jemalloc"
    CARGO_TARGET_DIR="$LAB_CACHE/target-jemalloc" \
        cargo build --release --locked -p surreal-server --features surreal-server/jemalloc
    other="$LAB_CACHE/target-jemalloc/release/surreal"
fi

lab_step "comparing $(readlink -f "$SURREAL_BIN") (lab) with $other (other)"
exec "$lab" bench --compare-server "$other" "$@"
