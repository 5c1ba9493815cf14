#!/usr/bin/env python3
"""Executes the lab's notebooks headless in the real evcxr Rust kernel, as tests.

Each notebook runs top to bottom in a fresh kernel (nbclient); any cell error — a compile error,
a failed `assert!`, a panic, a timeout — fails the run. The executed copies (with outputs) go to
target/notebooks/ for inspection and for the README screenshots; the committed notebooks must stay
output-free, which this script also checks. One summary line per notebook: cells, passed, time.

Usage: scripts/run-notebooks.py [NOTEBOOK ...] [--timeout SECONDS]
(scripts/test.sh calls it with the lab's environment from scripts/env.sh.)
"""
import argparse
import os
import statistics
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def committed_outputs(nb) -> list[int]:
    """Indexes of code cells that carry outputs or execution counts (should be none in git)."""
    return [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))
    ]


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def failing_output(nb) -> str:
    """The failing cell's source and its error output (compiler message, panic), without colours."""
    for c in nb.cells:
        errors = [o for o in c.get("outputs", []) if o.output_type == "error"]
        if errors:
            o = errors[0]
            stderr = "".join(
                x.get("text", "") for x in c.outputs if x.output_type == "stream" and x.name == "stderr"
            )
            text = stderr + "\n".join(o.get("traceback") or [f"{o.ename}: {o.evalue}"])
            return f"cell:\n{c.source}\nerror:\n{ANSI.sub('', text)}"
    return ""


# Every executed cell: (seconds, notebook, cell number, first line), for the timing summary.
CELL_TIMES: list[tuple[float, str, int, str]] = []


def run(path: Path, out_dir: Path, timeout: int) -> tuple[bool, str]:
    nb = nbformat.read(path, as_version=4)
    dirty = committed_outputs(nb)
    if dirty:
        return False, (
            f"{path.name}: cells {dirty} have saved outputs; clear them before committing "
            "(JupyterLab: Edit → Clear Outputs of All Cells, then save)"
        )
    code_cells = sum(1 for c in nb.cells if c.cell_type == "code")
    times: list[float] = []
    started = [0.0]

    def before(cell, cell_index, **_):
        started[0] = time.monotonic()

    def after(cell, cell_index, **_):
        times.append(time.monotonic() - started[0])
        CELL_TIMES.append((times[-1], path.name, len(times), cell.source.splitlines()[0][:60] if cell.source else ""))
        print(
            f"    [{len(times):>2}/{code_cells}] {times[-1]:6.1f} s  "
            f"{cell.source.splitlines()[0][:70] if cell.source else ''}",
            flush=True,
        )

    client = NotebookClient(
        nb,
        kernel_name="rust",
        # evcxr cannot be interrupted (issue #422); a per-cell timeout is the only way out of a
        # hang. The first cell compiles the helper crate and may take minutes on a cold cache.
        timeout=timeout,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
        on_cell_start=before,
        on_cell_executed=after,
    )
    t0 = time.monotonic()
    error = None
    try:
        client.execute()
    except CellTimeoutError as e:
        error = f"a cell ran longer than {timeout} s: {str(e).splitlines()[0]}"
    except DeadKernelError as e:
        error = f"the kernel died (a panic aborts it in test runs): {e}"
    except CellExecutionError as e:
        error = failing_output(nb) or str(e)
    total = time.monotonic() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / path.name)
    first = f", first cell {times[0]:.1f} s" if times else ""
    if error:
        summary = (
            f"FAIL {path.name}: {len(times)}/{code_cells} cells ran, {total:.1f} s{first}\n"
            f"{error}\n(executed copy with outputs: {out_dir / path.name})"
        )
        return False, summary
    return True, f"ok   {path.name}: {code_cells}/{code_cells} cells passed, {total:.1f} s{first}"


def reap() -> None:
    """Stops whatever a failed notebook's dead kernel left running (its labs are in LAB_DIR)."""
    lab = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "lab"
    if lab.exists():
        subprocess.run([str(lab), "clean", "--all"], capture_output=True, timeout=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--timeout", type=int, default=1500, help="per-cell timeout, seconds")
    ap.add_argument("--out", type=Path, default=ROOT / "target" / "notebooks")
    args = ap.parse_args()
    # A panic must fail the cell: the test config turns off evcxr's "report panics as success".
    os.environ.setdefault("EVCXR_CONFIG_DIR", str(ROOT / "scripts" / "evcxr" / "test"))
    # The notebooks' labs get random free ports and a lab root of their own, so a run never
    # touches the lab you may have open on 8000/8001 (target/lab).
    os.environ.setdefault("LAB_BASE_PORT", "ephemeral")
    os.environ.setdefault("LAB_DIR", str(ROOT / "target" / "notebook-labs"))
    paths = args.notebooks or sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        print("no notebooks found under notebooks/", file=sys.stderr)
        return 1
    results = []
    for p in paths:
        print(f"==> {p.name}", flush=True)
        ok, line = run(p.resolve(), args.out, args.timeout)
        print(line, flush=True)
        results.append((ok, line))
        reap()
    print("\nnotebooks:")
    for _, line in results:
        print("  " + line.splitlines()[0])
    if CELL_TIMES:
        # Compile-and-run time per cell: what a learner waits for after Shift-Enter.
        short = [t for t, *_ in CELL_TIMES if t < 5]
        print(f"\ncells: {len(CELL_TIMES)}; median {statistics.median(t for t, *_ in CELL_TIMES):.1f} s; "
              f"median of the {len(short)} short ones (< 5 s) {statistics.median(short) if short else 0:.1f} s; slowest:")
        for t, nb, i, first in sorted(CELL_TIMES, reverse=True)[:5]:
            print(f"  {t:6.1f} s  {nb} cell {i}: {first}")
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
