#!/usr/bin/env bash
# The lab's main command: installs what is missing (see setup.sh), then opens JupyterLab on
# the notebooks. JupyterLab listens on 127.0.0.1 only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$LAB_ROOT/scripts/setup.sh"
# Kernels inherit this: evcxr's compile cache for interactive use.
export EVCXR_CONFIG_DIR="$LAB_ROOT/scripts/evcxr/lab"
# Served from the repository root (so the notebooks' ../docs/ images resolve), opening the first
# notebook; each kernel still runs in its notebook's folder.
cd "$LAB_ROOT"
echo "Opening JupyterLab on notebooks/01_setup.ipynb. Stop it with Ctrl-C; if a kernel died with a lab"
echo "running, the next lab reaps it (or run: $CARGO_TARGET_DIR/release/lab clean --all)."
exec "$LAB_VENV/bin/jupyter" lab "${JUPYTER_ROOT_FLAG[@]}" --ServerApp.ip=127.0.0.1 "$@" notebooks/01_setup.ipynb
