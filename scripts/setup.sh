#!/usr/bin/env bash
# Installs everything the lab needs, idempotently (a second run takes seconds):
#   1. the SurrealDB server, the storage node and the `lab` CLI (release build, cached),
#   2. a project-local Python virtualenv (.venv) with JupyterLab and the notebook runner,
#   3. the evcxr Jupyter kernel for Rust (pinned), registered inside .venv only.
# Options: --for-tests also installs what only the test command needs: Chromium (browser check)
# and Graphviz (renders the architecture diagram's source in the docs test).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$LAB_ROOT"

for_tests=0
for arg in "$@"; do
    case "$arg" in
        --for-tests) for_tests=1 ;;
        *) echo "usage: $0 [--for-tests]" >&2; exit 2 ;;
    esac
done

need() {
    command -v "$1" >/dev/null 2>&1 || { echo "error: '$1' is required but not installed. $2" >&2; exit 1; }
}
need cargo "Install Rust with https://rustup.rs (then open a new shell)."
need python3 "Install Python 3.9+ (e.g. 'sudo apt-get install python3 python3-venv')."

# Runs apt-get as root, through sudo when we are not root; tells the user what to do if neither works.
apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: please install these packages with your system's package manager: $*" >&2
        return 1
    fi
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}

lab_step "1/3 SurrealDB server, storage node and lab CLI"
"$LAB_ROOT/scripts/build-server.sh"

lab_step "2/3 Python environment (.venv): JupyterLab, nbclient"
if [ ! -x "$LAB_VENV/bin/python" ]; then
    python3 -m venv "$LAB_VENV" || { echo "error: 'python3 -m venv' failed; install the venv module (e.g. 'sudo apt-get install python3-venv')." >&2; exit 1; }
fi
req_hash=$(sha256sum scripts/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$LAB_VENV/.requirements.sha256" 2>/dev/null)" != "$req_hash" ]; then
    "$LAB_VENV/bin/python" -m pip install --quiet --upgrade pip
    "$LAB_VENV/bin/python" -m pip install --quiet -r scripts/requirements.txt
    echo "$req_hash" > "$LAB_VENV/.requirements.sha256"
else
    echo "up to date"
fi

lab_step "3/3 evcxr Jupyter kernel $EVCXR_VERSION"
if ! "$LAB_TOOLS/bin/evcxr_jupyter" --version 2>/dev/null | grep -q "$EVCXR_VERSION"; then
    echo "Installing evcxr_jupyter $EVCXR_VERSION from crates.io (~6 min the first time)."
    CARGO_TARGET_DIR="$LAB_CACHE/target-tools" cargo install --locked --quiet \
        --root "$LAB_TOOLS" evcxr_jupyter --version "$EVCXR_VERSION"
fi
if [ ! -f "$JUPYTER_PATH/kernels/rust/kernel.json" ]; then
    # With JUPYTER_PATH set (env.sh), the kernel spec lands inside .venv, not in ~/.local.
    "$LAB_TOOLS/bin/evcxr_jupyter" --install >/dev/null
fi
"$LAB_VENV/bin/jupyter" kernelspec list | grep -q "rust" || { echo "error: the Rust kernel did not register" >&2; exit 1; }
echo "kernel: $(ls "$JUPYTER_PATH/kernels")"

if [ "$for_tests" = 1 ]; then
    missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v dot >/dev/null 2>&1 || missing+=(graphviz)
    command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
    if [ ${#missing[@]} -gt 0 ]; then
        lab_step "test tools: ${missing[*]}"
        apt_install "${missing[@]}"
    fi
fi

lab_step "setup done"
