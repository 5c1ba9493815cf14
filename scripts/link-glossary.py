#!/usr/bin/env python3
"""Links the first use of each glossary term in every notebook's markdown to docs/glossary.md.

A newcomer meets TSO, region or p99 once without a definition; the first time each notebook names
a term, the word becomes a link to its entry. The terms, the words that name them and the matcher
are in scripts/notebook_text_checks.py (TERMS), which check-docs.py's `glossary` check uses too,
so running this script is how that check's failures are fixed. It never links inside code,
headings, HTML or an existing link, and running it again changes nothing.

Usage: scripts/link-glossary.py [--check] [NOTEBOOK …]   (default: notebooks/NN_*.ipynb)
"""
import argparse
import sys
from pathlib import Path

from notebook_text_checks import ROOT, link_first_uses, notebook_json, read_notebook, source_notebooks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a link is missing")
    args = ap.parse_args()
    missing = 0
    for path in args.notebooks or source_notebooks():
        raw = path.read_text(encoding="utf-8")
        nb = read_notebook(path)
        added = link_first_uses(nb)
        for cell, words in added:
            print(f"{path.name}: cell {cell}: {'unlinked' if args.check else 'linked'} \"{' '.join(words.split())}\"")
        missing += len(added)
        if added and not args.check:
            path.write_text(notebook_json(nb), encoding="utf-8")
        elif not added and notebook_json(nb) != raw:
            # The format this script writes must be the repository's, or a run would churn files.
            print(f"{path.name}: not in the repository's notebook format (indent 1, keys in order)", file=sys.stderr)
            return 1
    print(f"{missing} link(s) {'missing' if args.check else 'added'}")
    return 1 if args.check and missing else 0


if __name__ == "__main__":
    sys.exit(main())
