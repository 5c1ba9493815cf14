#!/usr/bin/env bash
# Runs every test of the lab — the README's test command, and all that CI runs:
#   1. installs/builds what is missing (setup.sh --for-tests),
#   2. Rust tests of the whole workspace (real `surreal` and `storage-node` processes), then
#      clippy on it with warnings as errors,
#   3. setup's server step against a local download site (test_setup.py),
#   4. the six notebooks executed headless in the real evcxr kernel (any cell error fails), each
#      exercise's reference solution with them; their executed copies are then published to
#      docs/executed/ (so every test run regenerates them),
#   5. a kernel restart that must not rebuild poc_helpers (test_kernel.py), and the kernels' build
#      folders: a cold one takes a warm one's build, old ones are cleaned (test_kernel_slots.py),
#      and JupyterLab shuts down a closed notebook's idle kernel, never an open one's
#      (test_kernel_cull.py),
#   6. the browser check: JupyterLab started as start-lab.sh starts it, in headless Chromium (also:
#      closing a notebook's tab drops its kernel connection),
#   7. the documentation tests (links, runnable examples against a live lab, rustdoc, the notebooks'
#      glossary links, answered predictions and asserted takeaways), after their own unit tests.
# Every lab started here uses ephemeral ports, never the 8000/8001 of a lab you have open.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$LAB_ROOT"

"$LAB_ROOT/scripts/setup.sh" --for-tests

export LAB_BASE_PORT=ephemeral
export LAB_DIR="$LAB_ROOT/target/test-labs"
# Whatever a previous, interrupted run left behind is reaped before anything starts.
"$CARGO_TARGET_DIR/release/lab" --lab-dir "$LAB_DIR" clean --all >/dev/null 2>&1 || true

lab_step "Rust tests (workspace)"
cargo test --locked --workspace --exclude surreal-server -- --test-threads=2

lab_step "clippy (workspace, warnings are errors)"
# surreal-server is left out, as in the tests above: its own code is a three-line `main`, but
# clippy would first type-check the whole server dependency tree in debug mode (~250 crates
# the rest of the workspace does not use, surrealdb-core among them), which nothing else here
# builds: 100 s into a trial it had checked 92 of them and not reached surrealdb-core.
# (rustup's default profile includes clippy; a minimal one does not.)
cargo clippy --version >/dev/null 2>&1 || {
    echo "error: clippy is not installed. Fix: rustup component add clippy" >&2
    exit 1
}
cargo clippy --locked --workspace --all-targets --exclude surreal-server -- -D warnings

lab_step "setup's server step (local download site)"
"$LAB_VENV/bin/python" scripts/test_setup.py

lab_step "notebooks, headless in the evcxr kernel"
"$LAB_VENV/bin/python" scripts/run-notebooks.py
"$LAB_VENV/bin/python" scripts/publish-executed.py

lab_step "kernel restart (no rebuild of an unchanged poc_helpers) and the kernels' build folders"
"$LAB_VENV/bin/python" scripts/test_kernel.py
"$LAB_VENV/bin/python" scripts/test_kernel_slots.py
"$LAB_VENV/bin/python" scripts/test_kernel_cull.py

lab_step "browser check (JupyterLab in headless Chromium)"
scripts/browser-check.sh

lab_step "documentation tests"
"$LAB_VENV/bin/python" scripts/test_check_docs.py
"$LAB_VENV/bin/python" scripts/check-docs.py

lab_step "all tests passed"
