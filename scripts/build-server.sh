#!/usr/bin/env bash
# Builds the official SurrealDB 3.3.5 server (`surreal`) and the lab's own binaries
# (`storage-node`, `lab`) in release mode, into the shared cache folder.
#
# The first build compiles SurrealDB from crates.io: about 45 minutes on 2 cores. Later runs
# take seconds because the cache folder outlives the clone.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$LAB_ROOT"

if [ ! -x "$SURREAL_BIN" ]; then
    echo "Building the SurrealDB server for the first time: ~45 min on 2 cores (cached afterwards)."
fi
# --locked: build exactly the versions in Cargo.lock, so every learner runs the same server.
cargo build --locked --release -p surreal-server -p storage_node -p lab_cli
"$SURREAL_BIN" version
