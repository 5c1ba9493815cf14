#!/usr/bin/env python3
"""Publishes the test run's executed notebooks to docs/executed/, so a learner browsing the
repository sees real outputs (tables, charts, verdicts) before building anything.

The committed notebooks under notebooks/ stay output-free; scripts/run-notebooks.py writes the
executed copies to target/notebooks/. This script copies them into docs/executed/ and makes them
readable from there:
  - relative links and images in markdown are rewritten for the new folder (../docs/x.svg from
    notebooks/ is ../x.svg from docs/executed/; a link to another notebook opens its executed copy);
  - machine-specific paths in outputs (the clone's folder, the home folder) become placeholders;
  - a copy whose code differs from its notebook, or with a code cell that did not run, is refused:
    a published output must come from the notebook as committed (the reference solutions' runs,
    which run-notebooks.py adds after each exercise, marked `lab_injected`, are left out of that
    comparison).

scripts/test.sh runs it after the notebooks pass, so every test run regenerates the copies;
scripts/check-docs.py fails when the committed copies no longer match the notebooks.

Usage: scripts/publish-executed.py [--from target/notebooks] [--to docs/executed]
"""
import argparse
import os
import posixpath
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "notebooks"
DEST = ROOT / "docs" / "executed"

# Markdown links and images: [text](target) / ![alt](target), and <img src="target">.
LINK = re.compile(r"(\]\()([^)\s]+)(\))|(<img[^>]*\ssrc=\")([^\"]+)(\")")


def relink(markdown: str, src_dir: str, dst_dir: str) -> str:
    """Rewrites relative link targets written for `src_dir` (repo-relative) to work from `dst_dir`."""

    def fix(target: str) -> str:
        if re.match(r"^[a-z]+:|^#|^/", target):
            return target
        path, sep, frag = target.partition("#")
        repo_path = posixpath.normpath(posixpath.join(src_dir, path))
        if re.fullmatch(r"notebooks/\d\d_[^/]+\.ipynb", repo_path):
            # Another notebook: its executed copy sits right beside this one.
            return posixpath.basename(repo_path) + sep + frag
        return posixpath.relpath(repo_path, dst_dir) + sep + frag

    def sub(m: re.Match) -> str:
        if m.group(1):
            return m.group(1) + fix(m.group(2)) + m.group(3)
        return m.group(4) + fix(m.group(5)) + m.group(6)

    return LINK.sub(sub, markdown)


def scrub(text: str) -> str:
    """Replaces machine-specific paths with placeholders (nothing machine-specific in the repo)."""
    for path, name in sorted(
        [(str(ROOT), "<repo>"), (os.path.expanduser("~"), "~"), (os.environ.get("LAB_CACHE", ""), "<lab-cache>")],
        key=lambda p: -len(p[0]),
    ):
        if path and path != "/":
            text = text.replace(path, name)
    # Cargo names its registry folders after the registry's host (panic locations show them).
    return re.sub(r"registry/src/[^/\s]+/", "registry/src/<registry>/", text)


def scrub_outputs(cell) -> None:
    for o in cell.get("outputs", []):
        if "text" in o:
            o["text"] = scrub(o["text"])
        for k, v in list(o.get("data", {}).items()):
            if isinstance(v, str):
                o["data"][k] = scrub(v)
        if "traceback" in o:
            o["traceback"] = [scrub(t) for t in o["traceback"]]


def publish(executed: Path, dest_dir: Path) -> str | None:
    """Copies one executed notebook; returns an error message instead when it must not be published."""
    source = SOURCES / executed.name
    if not source.exists():
        return f"{executed.name}: no such notebook under notebooks/"
    nb = nbformat.read(executed, as_version=4)
    src = nbformat.read(source, as_version=4)
    # The reference solutions' runs (metadata lab_injected, see run-notebooks.py) are extra cells
    # of the executed copy, not code of the notebook.
    code = lambda n: [c.source for c in n.cells if c.cell_type == "code" and not c.metadata.get("lab_injected")]  # noqa: E731
    if code(nb) != code(src):
        return f"{executed.name}: its code differs from notebooks/{executed.name}; rerun scripts/run-notebooks.py"
    unrun = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and c.get("execution_count") is None and not c.metadata.get("lab_injected")]
    if unrun:
        return f"{executed.name}: code cells {unrun} did not run (a failed run?); rerun scripts/run-notebooks.py"
    src_dir = "notebooks"
    dst_dir = posixpath.relpath(dest_dir.as_posix(), ROOT.as_posix())
    for c in nb.cells:
        if c.cell_type == "markdown":
            c.source = relink(c.source, src_dir, dst_dir)
        elif c.cell_type == "code":
            scrub_outputs(c)
    nb.metadata.pop("widgets", None)
    dest_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest_dir / executed.name)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="src", type=Path, default=ROOT / "target" / "notebooks")
    ap.add_argument("--to", dest="dst", type=Path, default=DEST)
    args = ap.parse_args()
    names = sorted(p.name for p in SOURCES.glob("[0-9][0-9]_*.ipynb"))
    missing = [n for n in names if not (args.src / n).exists()]
    if missing:
        print(f"error: no executed copy of {missing} in {args.src}; run scripts/run-notebooks.py first", file=sys.stderr)
        return 1
    errors = [e for n in names if (e := publish(args.src / n, args.dst.resolve()))]
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"published {len(names)} executed notebooks to {args.dst.resolve().relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
