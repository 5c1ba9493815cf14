#!/usr/bin/env bash
# Renders the architecture diagram's text source (docs/architecture.dot) to docs/architecture.svg.
# Run it after editing the .dot file; the docs test (scripts/check-docs.py) fails when the
# committed SVG no longer matches its source.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v dot >/dev/null || { echo "error: Graphviz 'dot' is missing; install it with 'sudo apt-get install graphviz' (or scripts/setup.sh --for-tests)" >&2; exit 1; }
# The source's hash goes into the SVG as a comment, so the docs test can tell a stale SVG
# without depending on the exact bytes a given Graphviz version writes.
hash=$(sha256sum docs/architecture.dot | cut -c1-16)
dot -Tsvg docs/architecture.dot | sed "1a <!-- source: docs/architecture.dot sha256:$hash -->" > docs/architecture.svg
echo "docs/architecture.svg written (source sha256:$hash)"
