#!/usr/bin/env bash
# Starts the evcxr Rust kernel (Jupyter runs this through the kernel spec that setup.sh writes).
#
# Why a wrapper: evcxr builds every kernel's code in a new temporary folder unless EVCXR_TMPDIR
# names a fixed one, and `:cache` never caches path crates, so each kernel start or restart used to
# rebuild poc_helpers (30-60 s). Here each kernel gets a fixed build folder ("slot") from a small
# pool (below), so cargo's own change tracking skips an unchanged poc_helpers,
# and an edited one is rebuilt on the next restart. evcxr allows one kernel per folder (evcxr#304):
# a kernel holds its slot's lock for its whole life, so several notebooks can run at once, each in
# its own slot. When every slot is busy, evcxr falls back to a temporary folder of its own.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# Learner settings unless the caller chose others (the test runner points at scripts/evcxr/test).
export EVCXR_CONFIG_DIR="${EVCXR_CONFIG_DIR:-$LAB_ROOT/scripts/evcxr/lab}"
# evcxr keeps its compile cache (`:cache`) under the XDG cache folder: keep it in the lab's cache,
# so one folder holds (and one `rm -rf` clears) everything the lab compiled.
export XDG_CACHE_HOME="$LAB_CACHE/kernel-cache"
# evcxr's allocator (mimalloc) may back its heap with transparent huge pages. Its rust-analyzer
# builds ~1.7 GB of short-lived syntax trees per kernel, and with huge pages the kernel spent ~2.5 s
# of system time zeroing and splitting them in the `:dep` cell alone. Without: ~0.8 s, and ~100 MB
# less memory per kernel (scripts/measure-kernel-start.py compares both in one run).
export MIMALLOC_ALLOW_THP="${MIMALLOC_ALLOW_THP:-0}"

# Where the slots live. Not under $HOME: evcxr loads each cell's library from target/<triple>/debug,
# while rustc wrote its RUNPATH (to the Rust standard library, e.g. ~/.rustup/…) relative to
# target/<triple>/debug/deps, one folder deeper. The extra `..` is harmless only when the slot and
# the toolchain share no folder but `/` (where `/..` is `/` again), as evcxr's own /tmp folders do.
# Under the same top folder as the toolchain (say /home), the kernel dies with "dlopen failed".
slots="${LAB_KERNEL_SLOTS:-/var/tmp/surrealdb-lab-$(id -u)/kernel-slots}"
sysroot_top=$(rustc --print sysroot 2>/dev/null | cut -d/ -f2)
if [ -n "$sysroot_top" ] && [ "$(echo "$slots" | cut -d/ -f2)" = "$sysroot_top" ]; then
    echo "evcxr-kernel: $slots shares /$sysroot_top with the Rust toolchain; using a temporary build folder (set LAB_KERNEL_SLOTS elsewhere)." >&2
elif command -v flock >/dev/null 2>&1 && mkdir -p "$slots"; then
    for i in 0 1 2 3 4 5 6 7; do
        # fd 9 stays open in evcxr (exec keeps it), so the lock lives exactly as long as the kernel.
        exec 9>"$slots/$i.lock"
        if flock -n 9; then
            export EVCXR_TMPDIR="$slots/$i"
            mkdir -p "$EVCXR_TMPDIR"
            # A cold slot takes the newest build of poc_helpers from another slot (hard links,
            # 0.3-0.5 s), so the second notebook opened is as quick as the first; it also drops the
            # cells an earlier kernel left here. Best effort: evcxr builds whatever is missing.
            # LAB_KERNEL_SEED=0 leaves the slot cold: only to measure what seeding saves.
            if [ "${LAB_KERNEL_SEED:-1}" != 0 ]; then
                "$LAB_VENV/bin/python" "$LAB_ROOT/scripts/kernel_slots.py" prepare "$EVCXR_TMPDIR" \
                    || echo "evcxr-kernel: could not prepare $EVCXR_TMPDIR; evcxr builds what it needs" >&2
            fi
            break
        fi
        exec 9>&-
    done
fi
exec "$LAB_TOOLS/bin/evcxr_jupyter" "$@"
