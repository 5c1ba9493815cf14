#!/usr/bin/env python3
"""Warms the Rust kernel before the learner arrives (a step of scripts/setup.sh).

Runs the notebooks' exact dependency set in a real evcxr kernel, with the learner's evcxr settings
(scripts/evcxr/lab): every distinct `:dep` cell of the notebooks, then notebook 01's prelude cell.
That fills evcxr's compile cache (polars, plotters, the SurrealDB SDK…) and compiles poc_helpers
into a kernel build folder (scripts/evcxr-kernel.sh), so the first cell of notebook 01 returns in
seconds instead of minutes. A key over what the build depends on skips the work when nothing
changed; a progress line every 20 s says the kernel is compiling, not stuck.
"""
import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CACHE = Path(os.environ["LAB_CACHE"])
KEY_FILE = CACHE / "evcxr" / "warm.key"


def warm_cells() -> list[str]:
    """The `:dep` cells of every notebook (each once, in order), then 01's `use` prelude cell."""
    deps: list[str] = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            src = cell.source.strip()
            if cell.cell_type == "code" and src.startswith(":dep") and src not in deps:
                deps.append(src)
    first = nbformat.read(NOTEBOOKS / "01_setup.ipynb", as_version=4)
    uses = [c.source.strip() for c in first.cells if c.cell_type == "code" and c.source.strip().startswith("use ")]
    return deps + uses[:1]


def key(cells: list[str]) -> str:
    """Everything the warm build depends on: the cells, where the helper crate lives (cargo builds
    a path crate per path) and its files, the lock file, the evcxr settings and version, and the
    Rust compiler."""
    h = hashlib.sha256(str(ROOT).encode())
    for c in cells:
        h.update(c.encode())
    files = sorted(p for p in (ROOT / "poc_helpers").rglob("*") if p.is_file())
    for p in files + [ROOT / "Cargo.lock", ROOT / "scripts/evcxr/lab/init.evcxr"]:
        h.update(str(p.relative_to(ROOT)).encode())
        h.update(p.read_bytes())
    h.update(subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.encode())
    h.update(os.environ.get("EVCXR_VERSION", "").encode())
    return h.hexdigest()


def main() -> int:
    cells = warm_cells()
    k = key(cells)
    if KEY_FILE.exists() and KEY_FILE.read_text().strip() == k:
        print("kernel already warm (nothing changed since the last warm-up)")
        return 0
    os.environ["EVCXR_CONFIG_DIR"] = str(ROOT / "scripts" / "evcxr" / "lab")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = NotebookClient(nb, kernel_name="rust", timeout=3600, resources={"metadata": {"path": str(NOTEBOOKS)}})
    t0 = time.monotonic()
    done = threading.Event()

    def report():
        while not done.wait(20):
            print(f"compiling the notebooks' dependencies in the kernel: {time.monotonic() - t0:.0f} s", flush=True)

    threading.Thread(target=report, daemon=True).start()
    try:
        client.execute()
    finally:
        done.set()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    if errors:
        print(f"warm-up failed: {errors[0].get('evalue')}", file=sys.stderr)
        return 1
    KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    KEY_FILE.write_text(k)
    print(f"kernel warm: {len(cells)} cells compiled in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
