#!/usr/bin/env bash
# Installs everything the lab needs, idempotently (a second run takes seconds). Steps that do not
# depend on each other run at the same time, each in the background with its own log:
#   server         the official SurrealDB 3.3.5 `surreal` (get-server.sh: SURREAL_BIN, PATH, the
#                  official archive, else the source build together with the lab's binaries),
#   lab binaries   the storage node, then the `lab` CLI (release builds, cached); with --defer-cli
#                  only the storage node (the one binary the notebooks start), and the `lab` CLI
#                  is built afterwards in the background at low priority (log: lab-cli.log),
#                  so JupyterLab opens without waiting for it,
#   python         a project-local virtualenv (.venv) with JupyterLab and the notebook runner,
#   evcxr          the evcxr Jupyter kernel for Rust (pinned; get-evcxr.sh: evcxr's prebuilt release
#                  binary, SHA-256 checked, else compiled), registered inside .venv only,
#   packages       mold, which evcxr uses by itself when it is on PATH, and with --for-tests the test
#                  tools (only where apt-get may run: as root or with password-less sudo),
#   warm kernel    once python and evcxr are ready: compiles the notebooks' dependencies into
#                  evcxr's cache and build folder, so the first cell of notebook 01 returns in seconds.
# Every 20 s it prints each running step's progress, time elapsed and time expected; at the end, a
# timeline (also kept in $LAB_CACHE/setup/timeline.txt). Logs: $LAB_CACHE/setup/<step>.log.
# Options: --for-tests also installs what only the test command needs: Chromium (browser check),
# Graphviz (the architecture diagram's source) and Node.js with npm.
#          --defer-cli builds the `lab` CLI after setup, in the background (start-lab.sh uses it):
#          JupyterLab then waits only for what the notebooks start, the server and the storage node.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$LAB_ROOT"

for_tests=0 defer_cli=0
for arg in "$@"; do
    case "$arg" in
        --for-tests) for_tests=1 ;;
        --defer-cli) defer_cli=1 ;;
        *) echo "usage: $0 [--for-tests] [--defer-cli]" >&2; exit 2 ;;
    esac
done

need() {
    command -v "$1" >/dev/null 2>&1 || { echo "error: '$1' is required but not installed. $2" >&2; exit 1; }
}
need cargo "Install Rust with https://rustup.rs (then open a new shell)."
need python3 "Install Python 3.9+ (e.g. 'sudo apt-get install python3 python3-venv')."
need curl "Install curl (e.g. 'sudo apt-get install curl'); setup downloads the official server with it."

SETUP_DIR="$LAB_CACHE/setup"
mkdir -p "$SETUP_DIR/timings"
: > "$SETUP_DIR/timeline.txt"

# Expected durations (seconds) of a step that has real work to do, measured on a 2-core machine.
# A step that ran before on this machine expects its own last measured time instead.
declare -A EXPECT=(
    [server]=1560 [lab-binaries]=420 [storage-node]=240 [python]=60 [evcxr]=360 [packages]=120 [warm-kernel]=300
)
declare -A PID START LOGF
ORDER=()

fmt() { printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); }
expected() { cat "$SETUP_DIR/timings/$1" 2>/dev/null || echo "${EXPECT[$1]}"; }

# Runs "$@" as step $1 in the background, in its own process group (so a failure or Ctrl-C can
# stop the whole step, cargo and rustc included).
start_step() {
    local name=$1; shift
    LOGF[$name]="$SETUP_DIR/$name.log"
    START[$name]=$SECONDS
    ORDER+=("$name")
    setsid bash -c '"$@"' _ "$@" >"${LOGF[$name]}" 2>&1 &
    PID[$name]=$!
    printf '[%s] %-13s started (expected ~%s when there is work to do)\n' "$(fmt $SECONDS)" "$name" "$(fmt "$(expected "$name")")"
}

stop_all() {
    for n in "${!PID[@]}"; do kill -- -"${PID[$n]}" 2>/dev/null || true; done
}
trap 'stop_all; exit 130' INT TERM

# One line of progress for a running step: cargo's crate count, else the last line of its log.
progress() {
    local log=${LOGF[$1]} n last
    n=$(grep -c '^ *Compiling ' "$log" 2>/dev/null || true)
    last=$(grep -v '^\s*$' "$log" 2>/dev/null | tail -n 1 | cut -c1-70 || true)
    if [ "${n:-0}" -gt 0 ]; then echo "$n crates compiled, now: ${last## }"; else echo "${last:-working}"; fi
}

# Waits for step $1; records its time; on failure shows its log's tail and stops the other steps.
finish_step() {
    local name=$1 rc=0
    wait "${PID[$name]}" || rc=$?
    local took=$((SECONDS - START[$name]))
    unset "PID[$name]"
    printf '%-13s start %6s  took %6s  %s\n' "$name" "$(fmt "${START[$name]}")" "$(fmt $took)" \
        "$([ $rc = 0 ] && echo ok || echo "FAILED ($rc)")" >> "$SETUP_DIR/timeline.txt"
    if [ $rc != 0 ]; then
        printf '[%s] %-13s FAILED (exit %s) after %s. Last lines of %s:\n' "$(fmt $SECONDS)" "$name" "$rc" "$(fmt $took)" "${LOGF[$name]}"
        tail -n 25 "${LOGF[$name]}" | sed 's/^/    /'
        stop_all
        exit 1
    fi
    # Only real work sets the expectation for next time (an up-to-date check takes seconds).
    [ $took -lt 30 ] || echo $took > "$SETUP_DIR/timings/$name"
    printf '[%s] %-13s done in %s: %s\n' "$(fmt $SECONDS)" "$name" "$(fmt $took)" "$(grep -v '^\s*$' "${LOGF[$name]}" | tail -n 1 | cut -c1-90)"
}

# Polls the running steps; finishes those that ended; prints progress every 20 s.
# Returns when none of the named steps is running.
wait_for() {
    local last_report=$SECONDS
    while :; do
        local running=0
        # Every step that ended is finished now, not only the awaited ones: its time is then the
        # time it took (a step that ended early was once recorded only when the wait reached it),
        # and a failure anywhere stops setup at once.
        for n in "${ORDER[@]}"; do
            [ -n "${PID[$n]:-}" ] || continue
            kill -0 "${PID[$n]}" 2>/dev/null || finish_step "$n"
        done
        for n in "$@"; do
            [ -z "${PID[$n]:-}" ] || running=1
        done
        [ $running = 1 ] || return 0
        if [ $((SECONDS - last_report)) -ge 20 ]; then
            last_report=$SECONDS
            for n in "${ORDER[@]}"; do
                [ -n "${PID[$n]:-}" ] || continue
                printf '[%s] %-13s %s of ~%s — %s\n' "$(fmt $SECONDS)" "$n" "$(fmt $((SECONDS - START[$n])))" \
                    "$(fmt "$(expected "$n")")" "$(progress "$n")"
            done
        fi
        sleep 1
    done
}

# Runs apt-get as root, or through sudo without a password prompt; else says what to install.
can_apt() { command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; }; }
apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}
export -f apt_install

echo "Setting up the lab (cache: $LAB_CACHE). Steps run in parallel; logs in $SETUP_DIR/."

# The server choice itself takes seconds; only the source build is long.
resolve_start=$SECONDS server_source=""
if scripts/get-server.sh --resolve-only > "$SETUP_DIR/server.log" 2>&1; then
    sed 's/^/    /' "$SETUP_DIR/server.log"
    # Kept now: the lab-binaries step runs get-server.sh again, which then finds the server cached.
    server_source=$(cat "$LAB_CACHE/bin/surreal.source")
    printf '%-13s start %6s  took %6s  ok (%s)\n' server "$(fmt $resolve_start)" "$(fmt $((SECONDS - resolve_start)))" \
        "$server_source" >> "$SETUP_DIR/timeline.txt"
    if [ "$defer_cli" = 1 ]; then
        start_step storage-node scripts/get-server.sh --with-storage-node
    else
        start_step lab-binaries scripts/get-server.sh --with-lab-binaries
    fi
else
    rc=$?
    [ $rc = 10 ] || { cat "$SETUP_DIR/server.log" >&2; exit $rc; }
    sed 's/^/    /' "$SETUP_DIR/server.log"
    # The source build, with the storage node in the same cargo invocation, then the CLI unless it
    # is deferred (get-server.sh says why each binary always builds in the same invocation).
    if [ "$defer_cli" = 1 ]; then
        start_step server scripts/get-server.sh --with-storage-node
    else
        start_step server scripts/get-server.sh --with-lab-binaries
    fi
fi

start_step python bash -c '
    if [ ! -x "$LAB_VENV/bin/python" ]; then
        python3 -m venv "$LAB_VENV" || { echo "error: python3 -m venv failed; install the venv module (e.g. sudo apt-get install python3-venv)." >&2; exit 1; }
    fi
    req_hash=$(sha256sum scripts/requirements.txt | cut -d" " -f1)
    if [ "$(cat "$LAB_VENV/.requirements.sha256" 2>/dev/null)" != "$req_hash" ]; then
        "$LAB_VENV/bin/python" -m pip install --upgrade pip
        "$LAB_VENV/bin/python" -m pip install -r scripts/requirements.txt
        echo "$req_hash" > "$LAB_VENV/.requirements.sha256"
    fi
    echo "JupyterLab $("$LAB_VENV/bin/jupyter-lab" --version) in .venv"'

# evcxr's prebuilt release binary when it can be had (seconds), else `cargo install` (get-evcxr.sh).
start_step evcxr scripts/get-evcxr.sh

# System packages, in one apt step (apt allows one at a time): mold, which links each notebook
# cell faster and which evcxr picks up by itself, and for tests Chromium, Graphviz and Node.js.
packages=()
command -v mold >/dev/null 2>&1 || packages+=(mold)
if [ "$for_tests" = 1 ]; then
    command -v chromium >/dev/null 2>&1 || packages+=(chromium)
    command -v dot >/dev/null 2>&1 || packages+=(graphviz)
    command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
fi
if [ ${#packages[@]} -gt 0 ]; then
    if can_apt; then
        start_step packages bash -c "apt_install ${packages[*]} && echo 'installed ${packages[*]}'"
    elif [ "$for_tests" = 1 ]; then
        echo "error: the tests need these packages: ${packages[*]}; install them with your package manager." >&2
        exit 1
    else
        echo "    tip: install mold (e.g. 'sudo apt-get install mold'): evcxr links every cell with it, faster."
    fi
fi

# The kernel needs Python (Jupyter) and evcxr; the server and the apt steps keep running meanwhile.
wait_for python evcxr
# The kernel spec, inside .venv: evcxr's own, started through scripts/evcxr-kernel.sh, which
# gives each running kernel a fixed build folder (so a restart does not rebuild poc_helpers).
"$LAB_TOOLS/bin/evcxr_jupyter" --install >/dev/null
"$LAB_VENV/bin/python" - "$JUPYTER_PATH/kernels/rust/kernel.json" "$LAB_ROOT/scripts/evcxr-kernel.sh" <<'PY'
import json, sys
path, wrapper = sys.argv[1], sys.argv[2]
spec = json.load(open(path))
spec["argv"][0] = wrapper
json.dump(spec, open(path, "w"), indent=1)
PY
start_step warm-kernel "$LAB_VENV/bin/python" scripts/warm-kernel.py

wait_for "${ORDER[@]}"
"$SURREAL_BIN" version >/dev/null

echo
echo "setup timeline (also in $SETUP_DIR/timeline.txt):"
sed 's/^/    /' "$SETUP_DIR/timeline.txt"
echo "setup done in $(fmt $SECONDS); server: ${server_source:-$(cat "$LAB_CACHE/bin/surreal.source")}; evcxr: $(cat "$LAB_TOOLS/evcxr.source")"
# Disk: the kernels' build folders that no kernel has used for a week go (never one in use), then
# what the lab holds: the build folders (files shared by hard links counted once) and the cache.
"$LAB_VENV/bin/python" scripts/kernel_slots.py clean --days 7
"$LAB_VENV/bin/python" scripts/kernel_slots.py report
echo "lab cache: $(du -sh "$LAB_CACHE" 2>/dev/null | cut -f1) in $LAB_CACHE (build targets, evcxr's compile cache, tools)"
if [ "$defer_cli" = 1 ]; then
    # The `lab` CLI is for the terminal, not the notebooks: it compiles now, at the lowest CPU
    # priority so a notebook's cells come first, in its own session so it outlives this script
    # (a no-op in seconds when it is up to date). Its pid is kept for whoever must stop it.
    setsid nice -n 19 cargo build --locked --release -p lab_cli >"$SETUP_DIR/lab-cli.log" 2>&1 &
    echo $! > "$SETUP_DIR/lab-cli.pid"
    echo "the lab CLI ($CARGO_TARGET_DIR/release/lab) is being built in the background; log: $SETUP_DIR/lab-cli.log"
fi
