#!/usr/bin/env bash
# Starts JupyterLab the one way the lab does: start-lab.sh calls it for the learner, and the browser
# check calls it (with its own port and profile), so the test sees what the learner sees.
#
# The repository root is the served root, so a notebook's ../docs/architecture.svg and every
# ../docs/... link resolve. Jupyter takes its root from a positional notebook argument
# (`jupyter lab notebooks/01_setup.ipynb` serves notebooks/), so the first notebook is opened
# through the default URL instead. Listens on 127.0.0.1 only. Extra arguments go to Jupyter.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# Kernels inherit this: the learner's evcxr settings (compile cache on).
export EVCXR_CONFIG_DIR="${EVCXR_CONFIG_DIR:-$LAB_ROOT/scripts/evcxr/lab}"
# A Rust kernel holds ~1.5 GB (evcxr's rust-analyzer, docs/troubleshooting.md#memory), and closing
# a notebook's tab leaves its kernel running. So Jupyter shuts down a kernel that no tab is
# connected to once it has been idle for LAB_KERNEL_CULL_IDLE seconds (10 min; 0 = never). A kernel
# of an open notebook, or one running a cell, is never shut down (cull_connected, cull_busy: off).
cull_idle="${LAB_KERNEL_CULL_IDLE:-600}"
case "$cull_idle" in
    ''|*[!0-9]*) echo "error: LAB_KERNEL_CULL_IDLE must be whole seconds (0 = never), got '$cull_idle'" >&2; exit 2 ;;
esac
cd "$LAB_ROOT"
exec "$LAB_VENV/bin/jupyter" lab "${JUPYTER_ROOT_FLAG[@]}" --ServerApp.ip=127.0.0.1 \
    --ServerApp.root_dir="$LAB_ROOT" --ServerApp.default_url=/lab/tree/notebooks/01_setup.ipynb \
    --MappingKernelManager.cull_idle_timeout="$cull_idle" \
    --MappingKernelManager.cull_interval="${LAB_KERNEL_CULL_INTERVAL:-60}" \
    --MappingKernelManager.cull_connected=False --MappingKernelManager.cull_busy=False "$@"
