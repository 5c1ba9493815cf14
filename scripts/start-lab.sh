#!/usr/bin/env bash
# The lab's main command: installs what is missing (setup.sh: parallel steps, seconds when nothing
# is missing), then opens JupyterLab on the repository, at notebooks/01_setup.ipynb.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# The `lab` CLI is not needed to open the notebooks: setup builds it in the background afterwards.
"$LAB_ROOT/scripts/setup.sh" --defer-cli
echo "Opening JupyterLab at notebooks/01_setup.ipynb. Stop it with Ctrl-C; if a kernel died with a lab"
echo "running, the next lab reaps it (or run: $CARGO_TARGET_DIR/release/lab clean --all)."
exec "$LAB_ROOT/scripts/jupyter-lab.sh" "$@"
