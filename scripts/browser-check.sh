#!/usr/bin/env bash
# Browser check (part of the test command): starts JupyterLab exactly as start-lab.sh does
# (scripts/jupyter-lab.sh: the repository as the served root), on an ephemeral loopback port with a
# clean profile, and lets browser-check.cjs verify in headless Chromium that the learner's notebooks'
# markdown images and links load, and that the published executed copies (docs/executed, written
# by publish-executed.py from run-notebooks.py's run) render their tables and charts; it takes the
# README's screenshots.
#   --update-docs  also copy the screenshots to docs/img/ (for the README)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$LAB_ROOT"

update_docs=0
[ "${1:-}" = "--update-docs" ] && update_docs=1
ls docs/executed/*.ipynb >/dev/null 2>&1 || { echo "error: no executed notebooks in docs/executed; run scripts/run-notebooks.py, then scripts/publish-executed.py" >&2; exit 1; }
command -v chromium >/dev/null || { echo "error: chromium is missing; run scripts/setup.sh --for-tests" >&2; exit 1; }

# playwright-core drives the system Chromium; installed once into the cache (no browser download).
export BROWSER_CHECK_MODULES="$LAB_CACHE/browser-check"
if [ ! -d "$BROWSER_CHECK_MODULES/node_modules/playwright-core" ]; then
    command -v npm >/dev/null || { echo "error: npm is missing; install Node.js (e.g. 'sudo apt-get install nodejs npm')" >&2; exit 1; }
    mkdir -p "$BROWSER_CHECK_MODULES"
    (cd "$BROWSER_CHECK_MODULES" && echo '{"private":true}' > package.json &&
        npm install --silent --no-audit --no-fund playwright-core@1.65.1)
fi

# A clean JupyterLab profile: no news pop-up, no restored workspace, nothing from the user's own.
tmp=$(mktemp -d)
# Outputs produced outside JupyterLab are untrusted, and JupyterLab does not render untrusted SVG;
# sign them as a user who ran them would (the signature store lives in this temporary profile).
export JUPYTER_DATA_DIR="$tmp/data"
"$LAB_VENV/bin/jupyter" trust docs/executed/*.ipynb >/dev/null
mkdir -p "$tmp/settings/@jupyterlab/apputils-extension"
echo '{"fetchNews": "false", "checkForUpdates": false}' > "$tmp/settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
port=$("$LAB_VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
JUPYTERLAB_SETTINGS_DIR="$tmp/settings" JUPYTERLAB_WORKSPACES_DIR="$tmp/ws" \
    scripts/jupyter-lab.sh --no-browser --ServerApp.port="$port" --IdentityProvider.token='' \
    >"$tmp/jupyter.log" 2>&1 &
jupyter_pid=$!
trap 'kill $jupyter_pid 2>/dev/null; wait $jupyter_pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 60); do
    curl -sf "http://127.0.0.1:$port/api/status" >/dev/null && break
    sleep 0.5
done
curl -sf "http://127.0.0.1:$port/api/status" >/dev/null || { echo "error: JupyterLab did not start:" >&2; cat "$tmp/jupyter.log" >&2; exit 1; }

node scripts/browser-check.cjs "http://127.0.0.1:$port" "$LAB_ROOT/target/screenshots"
if [ "$update_docs" = 1 ]; then
    mkdir -p docs/img && cp target/screenshots/*.png docs/img/
    echo "screenshots copied to docs/img/"
fi
