# Shared settings for the lab's scripts (sourced, not run).
#
# Everything expensive to rebuild lives in one cache folder outside the clone (LAB_CACHE), so a
# fresh clone (or CI's clean checkout) reuses the server, the evcxr install and the notebooks'
# compiled dependencies.

LAB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAB_CACHE="${LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/surrealdb-lab}"
export LAB_ROOT LAB_CACHE

# One Cargo target folder for the workspace (server, storage node, helpers, CLI).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$LAB_CACHE/target}"
# Tools installed with `cargo install` (evcxr_jupyter) go here, not into ~/.cargo/bin.
LAB_TOOLS="$LAB_CACHE/tools"
# The project-local Python environment with JupyterLab and the notebook runner.
LAB_VENV="$LAB_ROOT/.venv"
export LAB_TOOLS LAB_VENV

# Jupyter finds the Rust kernel spec inside the venv, never in the user's global config.
export JUPYTER_PATH="$LAB_VENV/share/jupyter"
export PATH="$LAB_TOOLS/bin:$LAB_VENV/bin:$HOME/.cargo/bin:$PATH"

# Pinned versions (keep in sync with environment.yml and README).
EVCXR_VERSION="0.22.0"
SURREAL_VERSION="3.3.5"
export EVCXR_VERSION SURREAL_VERSION

# The binaries the lab starts. The server step (get-server.sh) links the server it chose at
# $LAB_CACHE/bin/surreal; a SURREAL_BIN set by the caller is kept apart, as the first choice it is.
if [ -z "${LAB_USER_SURREAL_BIN+x}" ]; then
    LAB_USER_SURREAL_BIN="${SURREAL_BIN:-}"
    export LAB_USER_SURREAL_BIN
fi
export SURREAL_BIN="$LAB_CACHE/bin/surreal"
export STORAGE_NODE_BIN="${STORAGE_NODE_BIN:-$CARGO_TARGET_DIR/release/storage-node}"

# Jupyter refuses to run as root unless told to (containers and CI machines often run as root).
JUPYTER_ROOT_FLAG=()
[ "$(id -u)" -ne 0 ] || JUPYTER_ROOT_FLAG=(--allow-root)

# Prints a step header with elapsed time, so slow first runs explain themselves.
lab_step() {
    printf '\n==> %s  (%ss)\n' "$*" "$SECONDS"
}
