#!/usr/bin/env bash
# The server step of setup: puts the official SurrealDB 3.3.5 `surreal` at $LAB_CACHE/bin/surreal,
# taking the first of these that works and saying which one it used:
#   1. SURREAL_BIN, when the caller set it (an explicit choice: if it is wrong, setup stops with the fix);
#   2. a `surreal` on PATH whose `surreal version` reports exactly 3.3.5 (e.g. SurrealDB's installer);
#   3. the official release archive for this OS and CPU, checked against the SHA-256 digest that
#      SurrealDB publishes beside it (LAB_SERVER_BASE_URL overrides the download address);
#   4. the source build of the workspace's `surreal_server` crate: the offline path, ~26 min on 2 cores.
# The lab's scripts and poc_helpers start whatever $LAB_CACHE/bin/surreal points at, so the notebooks,
# the CLI and the tests all run the server that setup chose.
#
# Usage: get-server.sh [--resolve-only | --with-lab-binaries | --with-storage-node]
#   --resolve-only       try 1-3 only; exit 10 when the source build would be needed.
#   --with-lab-binaries  also build the storage node, then the `lab` CLI (setup and build-server.sh).
#   --with-storage-node  also build the storage node only, the one binary the notebooks start
#                        (start-lab.sh builds the `lab` CLI after JupyterLab opens).
# Each release binary is always built by the same cargo invocation, whichever command asks for it
# (start-lab.sh, test.sh, build-server.sh): the server with the storage node (the source build), or
# the storage node alone, and the `lab` CLI always alone, afterwards. Cargo unifies dependency
# features over the packages of one invocation: adding the CLI to the server's invocation changes
# the features of crates the server also uses (hashbrown, rustix, the SDK, …), so a command that
# built them together and another that built them apart would each recompile the server's tree.
# Apart, the CLI also stays off the way to JupyterLab (start-lab.sh builds it in the background).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$LAB_ROOT"

resolve_only=0 lab_binaries=0 storage_only=0
case "${1:-}" in
    --resolve-only) resolve_only=1 ;;
    --with-lab-binaries) lab_binaries=1 ;;
    --with-storage-node) lab_binaries=1 storage_only=1 ;;
    "") ;;
    *) echo "usage: $0 [--resolve-only | --with-lab-binaries | --with-storage-node]" >&2; exit 2 ;;
esac

# The `lab` CLI, when asked for: always in a cargo invocation of its own (see the top).
build_cli() {
    if [ "$lab_binaries" = 1 ] && [ "$storage_only" = 0 ]; then
        cargo build --locked --release -p lab_cli
    fi
}

# The lab's own binaries, when asked for, after the server was found elsewhere.
found() {
    if [ "$lab_binaries" = 1 ]; then
        cargo build --locked --release -p storage_node
    fi
    build_cli
    exit 0
}

WANT="$SURREAL_VERSION"
BIN_DIR="$LAB_CACHE/bin"
LINK="$BIN_DIR/surreal"
mkdir -p "$BIN_DIR"

# `surreal version` prints e.g. "3.3.5 for linux on x86_64"; the first word is the version.
version_of() {
    timeout 10 "$1" version 2>/dev/null | head -n 1 | awk '{print $1}'
}

# Points the lab's link at $1 and records where it came from ($2) for `setup` and the README table.
use_server() {
    ln -sfn "$1" "$LINK"
    echo "$2" > "$BIN_DIR/surreal.source"
    echo "server: $2 ($1, version $(version_of "$1"))"
}

# 1. An explicit SURREAL_BIN (env.sh keeps the caller's value in LAB_USER_SURREAL_BIN).
if [ -n "${LAB_USER_SURREAL_BIN:-}" ]; then
    got=$(version_of "$LAB_USER_SURREAL_BIN" || true)
    if [ "$got" != "$WANT" ]; then
        echo "error: SURREAL_BIN=$LAB_USER_SURREAL_BIN reports version '${got:-none (does it run?)}'; the lab needs $WANT." >&2
        echo "       Point SURREAL_BIN at a surreal $WANT binary, or unset it to let setup find or build one." >&2
        exit 1
    fi
    use_server "$LAB_USER_SURREAL_BIN" "SURREAL_BIN"
    found
fi

# 2. A `surreal` on PATH (not our own link, which would only point back at an earlier choice).
on_path=$(PATH=$(echo "$PATH" | tr ':' '\n' | grep -vxF "$BIN_DIR" | paste -sd: -) command -v surreal || true)
if [ -n "$on_path" ]; then
    got=$(version_of "$on_path" || true)
    if [ "$got" = "$WANT" ]; then
        use_server "$on_path" "surreal on PATH"
        found
    fi
    echo "server: not using $on_path: it reports version '${got:-none}', the lab needs exactly $WANT."
fi

# 3. The official archive, verified. Cached: a second run finds the verified binary and takes seconds.
case "$(uname -s)" in Linux) os=linux ;; Darwin) os=darwin ;; *) os="" ;; esac
case "$(uname -m)" in x86_64|amd64) arch=amd64 ;; aarch64|arm64) arch=arm64 ;; *) arch="" ;; esac
official_dir="$LAB_CACHE/server/surreal-v$WANT.$os-$arch"
if [ -x "$official_dir/surreal" ] && [ "$(version_of "$official_dir/surreal")" = "$WANT" ]; then
    use_server "$official_dir/surreal" "official archive (cached)"
    found
fi
if [ -n "$os" ] && [ -n "$arch" ] && command -v curl >/dev/null 2>&1; then
    base="${LAB_SERVER_BASE_URL:-https://download.surrealdb.com}"
    name="surreal-v$WANT.$os-$arch"
    url="$base/v$WANT/$name"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "server: downloading the official archive $url.tgz"
    # The digest is tiny: a short overall limit makes an unreachable or silent server fall back in
    # seconds. The archive may be large: abort only when it stalls (under 1 kB/s for 15 s).
    if curl -fsSL --connect-timeout 4 --max-time 10 -o "$tmp/digest.txt" "$url.txt" &&
        curl -fsSL --connect-timeout 4 --speed-limit 1024 --speed-time 15 -o "$tmp/$name.tgz" "$url.tgz"; then
        want_sum=$(tr -d ' \t\r\n' < "$tmp/digest.txt" | tr 'A-F' 'a-f' | cut -c1-64)
        got_sum=$(sha256sum "$tmp/$name.tgz" | cut -d' ' -f1)
        if [ "$want_sum" != "$got_sum" ]; then
            rm -f "$tmp/$name.tgz"
            echo "server: SHA-256 mismatch for $name.tgz: SurrealDB publishes ${want_sum:-nothing}, the download is $got_sum."
            echo "server: the download was deleted; falling back to the next option."
        else
            mkdir -p "$tmp/x"
            tar -xzf "$tmp/$name.tgz" -C "$tmp/x"
            found=$(find "$tmp/x" -type f -name surreal | head -n 1)
            if [ -n "$found" ] && chmod +x "$found" && [ "$(version_of "$found")" = "$WANT" ]; then
                mkdir -p "$official_dir"
                mv "$found" "$official_dir/surreal"
                use_server "$official_dir/surreal" "official archive (SHA-256 verified)"
                rm -rf "$tmp"
                found
            fi
            echo "server: the archive holds no working surreal $WANT; falling back to the next option."
        fi
    else
        echo "server: the official archive is not reachable ($base); falling back to the next option."
    fi
fi

# 4. The source build: the offline path.
if [ "$resolve_only" = 1 ]; then
    exit 10
fi
if [ -x "$CARGO_TARGET_DIR/release/surreal" ]; then
    echo "server: the source build (cached in $CARGO_TARGET_DIR; cargo checks it is up to date)."
else
    echo "server: building SurrealDB $WANT from source (the offline path): ~26 min on 2 cores, cached afterwards."
fi
cargo build --locked --release -p surreal-server -p storage_node
use_server "$CARGO_TARGET_DIR/release/surreal" "source build"
build_cli
