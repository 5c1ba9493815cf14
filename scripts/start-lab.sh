#!/usr/bin/env bash
# The lab's main command: installs what is missing (see setup.sh), then opens JupyterLab on
# the notebooks. JupyterLab listens on 127.0.0.1 only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$LAB_ROOT/scripts/setup.sh"
# Kernels inherit this: evcxr's compile cache for interactive use.
export EVCXR_CONFIG_DIR="$LAB_ROOT/scripts/evcxr/lab"
cd "$LAB_ROOT/notebooks"
echo "Opening JupyterLab. Start with 01_setup.ipynb; stop with Ctrl-C (then run the cleanup cells' 'lab clean' if a kernel died)."
exec "$LAB_VENV/bin/jupyter" lab --ServerApp.ip=127.0.0.1 "$@"
