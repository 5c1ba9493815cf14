#!/usr/bin/env bash
# The evcxr step of setup: puts the Rust Jupyter kernel, evcxr_jupyter $EVCXR_VERSION, at
# $LAB_TOOLS/bin/evcxr_jupyter, taking the first of these that works and saying which one it used:
#   1. the one already there, when it is the pinned version and runs (a second run takes a second);
#   2. evcxr's own prebuilt binary from its GitHub release, published for Linux x86-64 and macOS
#      arm64 only. evcxr publishes no digest file, so the SHA-256 that GitHub records for the release
#      asset (the release API's `digest`) is the check; no recorded digest, no download. The binary
#      must then run here (evcxr builds it on a recent Ubuntu, whose C library may be newer than
#      this system's). LAB_EVCXR_RELEASE_API overrides the release's API
#      address, e.g. for a mirror or the tests' local stand-in;
#   3. `cargo install` from the Rust package registry: ~6 min of compiling on 2 cores, the offline path.
# Why bother: the compile used to be the longest step before the warm kernel could start, so on a
# first run with the official server it decided when JupyterLab opened.
#
# Usage: get-evcxr.sh [--resolve-only]   (--resolve-only: try 1-2 only; exit 10 when 3 is needed)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

resolve_only=0
case "${1:-}" in
    --resolve-only) resolve_only=1 ;;
    "") ;;
    *) echo "usage: $0 [--resolve-only]" >&2; exit 2 ;;
esac

BIN="$LAB_TOOLS/bin/evcxr_jupyter"
SOURCE_FILE="$LAB_TOOLS/evcxr.source"
mkdir -p "$LAB_TOOLS/bin"

# evcxr_jupyter has no --version: the version is what this script installed (a digest-checked
# release asset, or `cargo install --version`), kept beside it; an install by an earlier setup is
# known from cargo's own record. Run without arguments it prints how to install the kernel and
# exits 0, which shows the binary runs here.
VERSION_FILE="$LAB_TOOLS/evcxr.version"
installed_version() {
    cat "$VERSION_FILE" 2>/dev/null ||
        sed -n 's/^"evcxr_jupyter \([^ ]*\) .*/\1/p' "$LAB_TOOLS/.crates.toml" 2>/dev/null || true
}
runs() {
    # Not `grep -q`: it would stop reading at the match, and with pipefail the binary's SIGPIPE on
    # its next line of output would count as a failure (it did, in one test run of three).
    timeout 10 "$1" 2>&1 | grep "To install, run" >/dev/null
}
installed() {
    echo "$EVCXR_VERSION" > "$VERSION_FILE"
    echo "$1" > "$SOURCE_FILE"
    echo "evcxr: $1 (evcxr_jupyter $EVCXR_VERSION at $BIN)"
    exit 0
}

# evcxr infers the type of each notebook variable with rust-analyzer, which reads the standard
# library's source: without rustup's rust-src component (not in rustup's default profile) even
# `let v = vec![1, 2, 3];` fails with "Couldn't automatically determine type of variable `v`".
if [ ! -d "$(rustc --print sysroot)/lib/rustlib/src/rust/library" ]; then
    if command -v rustup >/dev/null 2>&1; then
        echo "evcxr: adding the standard library's source (rustup component add rust-src), which evcxr needs"
        rustup component add rust-src
    else
        echo "error: evcxr needs the Rust standard library's source, and this Rust has none." >&2
        echo "       Fix: install it with your Rust (rustup: 'rustup component add rust-src')." >&2
        exit 1
    fi
fi

# 1. Already installed.
if [ -x "$BIN" ] && [ "$(installed_version)" = "$EVCXR_VERSION" ] && runs "$BIN"; then
    installed "$(cat "$SOURCE_FILE" 2>/dev/null || echo "installed earlier")"
fi

# 2. The prebuilt release binary, verified.
case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) target=x86_64-unknown-linux-gnu ;;
    Darwin-arm64) target=aarch64-apple-darwin ;;
    *) target="" ;;
esac
if [ -z "$target" ]; then
    echo "evcxr: no prebuilt evcxr_jupyter for $(uname -s) $(uname -m); compiling it instead."
elif command -v curl >/dev/null 2>&1; then
    api="${LAB_EVCXR_RELEASE_API:-https://api.github.com/repos/evcxr/evcxr/releases/tags}/v$EVCXR_VERSION"
    name="evcxr_jupyter-v$EVCXR_VERSION-$target.tar.gz"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "evcxr: looking up the prebuilt $name ($api)"
    # The release's JSON is small: a short overall limit makes an unreachable or silent site fall
    # back in seconds. The tarball is ~20 MB: abort only when it stalls (under 1 kB/s for 15 s).
    if curl -fsSL --connect-timeout 4 --max-time 10 -o "$tmp/release.json" "$api"; then
        # "<url> <hex digest>" of the asset, or nothing when the release lists no such asset.
        asset=$(python3 - "$tmp/release.json" "$name" <<'PY'
import json, sys
release, name = json.load(open(sys.argv[1])), sys.argv[2]
for a in release.get("assets", []):
    if a.get("name") == name:
        digest = a.get("digest") or ""
        print(a.get("browser_download_url", ""), digest.removeprefix("sha256:") if digest.startswith("sha256:") else "")
PY
) || true
        url=${asset%% *} want_sum=${asset#* }
        [ "$want_sum" != "$asset" ] || want_sum=""
        if [ -z "$url" ]; then
            echo "evcxr: the v$EVCXR_VERSION release lists no $name; compiling it instead."
        elif [ -z "$want_sum" ]; then
            echo "evcxr: GitHub records no SHA-256 digest for $name, so it cannot be checked; compiling it instead."
        elif ! curl -fsSL --connect-timeout 4 --speed-limit 1024 --speed-time 15 -o "$tmp/$name" "$url"; then
            echo "evcxr: the download of $url failed; compiling it instead."
        elif got_sum=$(sha256sum "$tmp/$name" | cut -d' ' -f1) && [ "$got_sum" != "$want_sum" ]; then
            rm -f "$tmp/$name"
            echo "evcxr: SHA-256 mismatch for $name: GitHub records $want_sum, the download is $got_sum."
            echo "evcxr: the download was deleted; compiling it instead."
        else
            mkdir -p "$tmp/x"
            tar -xzf "$tmp/$name" -C "$tmp/x"
            found=$(find "$tmp/x" -type f -name evcxr_jupyter | head -n 1)
            if [ -n "$found" ] && chmod +x "$found" && runs "$found"; then
                mv "$found" "$BIN"
                installed "prebuilt release binary (SHA-256 verified)"
            fi
            why=$( { [ -n "$found" ] && timeout 10 "$found" 2>&1 | head -n 1; } || true)
            echo "evcxr: the prebuilt binary does not run here (${why:-the tarball holds no evcxr_jupyter}); compiling it instead."
        fi
    else
        echo "evcxr: the release is not reachable (${LAB_EVCXR_RELEASE_API:-https://api.github.com}); compiling it instead."
    fi
fi

# 3. Compile it from the Rust package registry.
if [ "$resolve_only" = 1 ]; then
    exit 10
fi
echo "evcxr: compiling evcxr_jupyter $EVCXR_VERSION from the Rust package registry: ~6 min on 2 cores, cached afterwards."
CARGO_TARGET_DIR="$LAB_CACHE/target-tools" cargo install --locked --root "$LAB_TOOLS" evcxr_jupyter --version "$EVCXR_VERSION"
installed "compiled from the Rust package registry"
