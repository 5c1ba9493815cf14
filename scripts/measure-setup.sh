#!/usr/bin/env bash
# Measures a first run as a new user gets it: clones this repository (its last commit) into a
# temporary folder and runs its setup with an empty lab cache (LAB_CACHE) and an empty Cargo home,
# then times JupyterLab's start and the first two cells of notebook 01 in the warmed kernel.
# Prints setup's timeline and the totals that the README's first-run table quotes.
#
# Usage: scripts/measure-setup.sh [--archive [--compile-evcxr]]
#   --archive  the official-archive path: a local HTTP server serves a tarball of the `surreal`
#              that setup already chose, with its SHA-256 file, standing in for SurrealDB's site,
#              and a tarball of the evcxr_jupyter setup installed, with a release JSON carrying its
#              digest, standing in for evcxr's GitHub release (get-evcxr.sh).
#   --compile-evcxr  with --archive: evcxr's release is unreachable, so evcxr_jupyter is compiled.
#   default    the offline path: neither site is reachable, so the server and evcxr are compiled.
# Takes as long as a first run (the offline path: about half an hour on 2 cores).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

archive=0 evcxr_site=0
for arg in "$@"; do
    case "$arg" in
        --archive) archive=1 evcxr_site=1 ;;
        --compile-evcxr) evcxr_site=0 ;;
        *) echo "usage: $0 [--archive [--compile-evcxr]]" >&2; exit 2 ;;
    esac
done

work=$(mktemp -d /tmp/lab-first-run.XXXXXX)
site_pid=""
cleanup() {
    [ -z "$site_pid" ] || kill "$site_pid" 2>/dev/null || true
    # The CLI's background build (setup --defer-cli), if it is still compiling.
    [ ! -f "$work/cache/setup/lab-cli.pid" ] || kill -- -"$(cat "$work/cache/setup/lab-cli.pid")" 2>/dev/null || true
    "$work/cache/target/release/lab" --lab-dir "$work/clone/target/lab" clean --all >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

git clone -q "$LAB_ROOT" "$work/clone"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

if [ "$archive" = 1 ]; then
    [ -x "$SURREAL_BIN" ] || { echo "error: --archive serves the surreal that setup chose; run scripts/setup.sh first" >&2; exit 1; }
    name="surreal-v$SURREAL_VERSION.$(uname -s | tr 'A-Z' 'a-z')-$(uname -m | sed 's/x86_64/amd64/;s/aarch64/arm64/')"
    mkdir -p "$work/site/v$SURREAL_VERSION"
    tar -czf "$work/site/v$SURREAL_VERSION/$name.tgz" -C "$(dirname "$(readlink -f "$SURREAL_BIN")")" "$(basename "$(readlink -f "$SURREAL_BIN")")" --transform 's|.*|surreal|'
    sha256sum "$work/site/v$SURREAL_VERSION/$name.tgz" | cut -d' ' -f1 > "$work/site/v$SURREAL_VERSION/$name.txt"
    port=$(free_port)
    python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work/site" >/dev/null 2>&1 &
    site_pid=$!
    base="http://127.0.0.1:$port"
    # Setup must find the site up, or it would (rightly) fall back to the source build.
    until curl -sf -o /dev/null "$base/v$SURREAL_VERSION/$name.txt"; do sleep 0.2; done
    path_name="official archive (served locally)"
else
    base="http://127.0.0.1:$(free_port)"   # nothing listens there: the offline path
    path_name="offline (source build)"
fi

# evcxr's release, as GitHub's API describes it, on the same local site; else nowhere.
evcxr_api="http://127.0.0.1:$(free_port)"
if [ "$evcxr_site" = 1 ]; then
    [ "$archive" = 1 ] || { echo "error: --compile-evcxr goes with --archive" >&2; exit 2; }
    case "$(uname -s)-$(uname -m)" in
        Linux-x86_64) target=x86_64-unknown-linux-gnu ;;
        Darwin-arm64) target=aarch64-apple-darwin ;;
        *) echo "error: evcxr publishes no prebuilt binary for this OS and CPU; add --compile-evcxr" >&2; exit 2 ;;
    esac
    ename="evcxr_jupyter-v$EVCXR_VERSION-$target"
    mkdir -p "$work/site/evcxr/$ename" "$work/site/evcxr-api"
    cp "$LAB_TOOLS/bin/evcxr_jupyter" "$work/site/evcxr/$ename/"
    tar -czf "$work/site/evcxr/$ename.tar.gz" -C "$work/site/evcxr" "$ename"
    python3 - "$work/site/evcxr-api/v$EVCXR_VERSION" "$ename.tar.gz" "$base/evcxr/$ename.tar.gz" \
        "$(sha256sum "$work/site/evcxr/$ename.tar.gz" | cut -d' ' -f1)" <<'PY'
import json, sys
out, name, url, digest = sys.argv[1:]
json.dump({"assets": [{"name": name, "browser_download_url": url, "digest": f"sha256:{digest}"}]}, open(out, "w"))
PY
    evcxr_api="$base/evcxr-api"
    path_name="$path_name, evcxr's release binary (served locally)"
elif [ "$archive" = 1 ]; then
    path_name="$path_name, evcxr compiled"
fi

# A new user's environment: no SURREAL_BIN, no surreal on PATH, nothing cached.
run_env=(env -u SURREAL_BIN -u LAB_USER_SURREAL_BIN -u CARGO_TARGET_DIR -u STORAGE_NODE_BIN
    -u JUPYTER_PATH -u EVCXR_CONFIG_DIR
    LAB_CACHE="$work/cache" CARGO_HOME="$work/cargo-home" LAB_KERNEL_SLOTS="$work/kernel-slots" LAB_SERVER_BASE_URL="$base" LAB_EVCXR_RELEASE_API="$evcxr_api"
    PATH="$(echo "$PATH" | tr ':' '\n' | grep -v "$LAB_CACHE" | while read -r d; do [ -e "$d/surreal" ] || echo "$d"; done | paste -sd: -)")

echo "first run, $path_name: setup in a fresh clone ($work/clone)"
t0=$SECONDS
# As start-lab.sh runs it: the `lab` CLI builds in the background after setup (--defer-cli).
"${run_env[@]}" "$work/clone/scripts/setup.sh" --defer-cli 2>&1 | tee "$work/setup.log" | sed 's/^/  | /'
setup_s=$((SECONDS - t0))

# JupyterLab, started as start-lab.sh starts it, until it answers.
jport=$(free_port)
t1=$(date +%s.%N)
"${run_env[@]}" "$work/clone/scripts/jupyter-lab.sh" --no-browser --ServerApp.port="$jport" --IdentityProvider.token='' >"$work/jupyter.log" 2>&1 &
jpid=$!
until curl -sf "http://127.0.0.1:$jport/api/status" >/dev/null; do sleep 0.2; done
jupyter_s=$(python3 -c "print(f'{$(date +%s.%N) - $t1:.1f}')")
kill "$jpid"; wait "$jpid" 2>/dev/null || true

# The first two cells of notebook 01 in a new kernel, as the learner runs them.
cells=$("${run_env[@]}" EVCXR_CONFIG_DIR="$work/clone/scripts/evcxr/lab" bash -c "source '$work/clone/scripts/env.sh'; cd '$work/clone'; '$work/clone/.venv/bin/python' - <<'PY'
import sys, time
sys.path.insert(0, 'scripts')
from test_kernel import Kernel, first_cells
k = Kernel()
times = []
for c in first_cells():
    t = time.monotonic(); k.run(c); times.append(time.monotonic() - t)
k.stop()
print(' '.join(f'{t:.1f}' for t in times))
PY")

echo
echo "== first run, $path_name =="
grep -A20 '^setup timeline' "$work/setup.log" | sed -n '2,20p' | grep -v '^setup done' || true
printf 'setup (clone to everything installed, kernel warm): %d:%02d\n' $((setup_s / 60)) $((setup_s % 60))
echo "JupyterLab answering after: ${jupyter_s} s"
echo "notebook 01, first two cells (s): $cells"
printf 'clone to JupyterLab open with a warm kernel: %d:%02d\n' $(((setup_s + ${jupyter_s%.*}) / 60)) $(((setup_s + ${jupyter_s%.*}) % 60))
