#!/usr/bin/env python3
"""Executes the lab's notebooks headless in the real evcxr Rust kernel, as tests.

Each notebook runs top to bottom in a fresh kernel (nbclient); any cell error — a compile error,
a failed `assert!`, a panic, a timeout — fails the run. The executed copies (with outputs) go to
target/notebooks/ for inspection, for the README screenshots and for docs/executed/
(scripts/publish-executed.py); the committed notebooks must stay output-free, which this script
also checks. One summary line per notebook: cells, passed, time.

Kernels stay alive until the last notebook has finished, as a learner's JupyterLab keeps them, so
every notebook after the first starts its kernel beside the earlier ones (each in its own build
folder, scripts/evcxr-kernel.sh). From that run, at no extra cost, the summary prints what the
learner waits for and what the kernels cost: each notebook's first-cell time (the `:dep` cell,
against the 10 s goal; printed, never asserted), each kernel's memory (RSS of evcxr and of its
child process that runs the cells) after its first cells and with all kernels alive at the end,
and the kernel build folders' disk use. One check can fail: a kernel that starts while an
earlier one of this run has built poc_helpers must not compile poc_helpers again (its build
folder takes the earlier build, scripts/kernel_slots.py). All kernels are shut down at the end,
also when a notebook fails.

Exercises ("Try it yourself"): a cell with metadata `"exercise": "<id>"` is the one a learner
edits; it runs unedited, and its check cell (metadata `"exercise_check": "<id>"`) must then say
"✏️ Not yet". Right after that check, in the same kernel, the reference solution
`notebooks/solutions/<id>.rs` runs in place of the edited cell and the check cell runs again; it
must say "✅ Solved". The executed copy shows both: the exercise as a learner first sees it, then,
right after its check, a note and the two extra cells (metadata `"lab_injected"`), marked as the
reference solution run by the test. scripts/publish-executed.py and check-docs.py compare the
copy's code with the notebook's without those cells. Every exercise needs a solution file, and
every solution an exercise.

Usage: scripts/run-notebooks.py [NOTEBOOK ...] [--timeout SECONDS]
(scripts/test.sh calls it with the lab's environment from scripts/env.sh.)
"""
import argparse
import atexit
import os
import signal
import statistics
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbclient.util import ensure_async, run_sync

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import kernel_slots  # noqa: E402

NOTEBOOKS = ROOT / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions"
SOLVED, NOT_YET = "✅ Solved", "✏️ Not yet"  # poc_helpers::present::exercise's markers


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


def output_text(cell) -> str:
    """Everything a cell printed or displayed, as one string."""
    parts = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            parts.append(o.get("text", ""))
        elif o.output_type in ("display_data", "execute_result"):
            parts.extend(str(v) for v in o.get("data", {}).values())
        elif o.output_type == "error":
            parts.append("\n".join(o.get("traceback") or [f"{o.ename}: {o.evalue}"]))
    return ANSI.sub("", "\n".join(parts))


def exercise_ids(nb) -> tuple[list[str], list[str]]:
    """The ids of the notebook's exercise cells and of its check cells, in order."""
    edit = [c.metadata["exercise"] for c in nb.cells if "exercise" in c.get("metadata", {})]
    chk = [c.metadata["exercise_check"] for c in nb.cells if "exercise_check" in c.get("metadata", {})]
    return edit, chk


class ExerciseError(Exception):
    pass


class LabNotebookClient(NotebookClient):
    """nbclient's client, plus one step: after each exercise's check cell, the solution run."""

    async def async_execute(self, reset_kc: bool = False, **kwargs):
        self.reset_execution_trackers()
        # The kernel outlives this notebook (KEPT, shut down by main at the end).
        async with self.async_setup_kernel(cleanup_kc=False, **kwargs):
            info = await self.async_wait_for_reply(await ensure_async(self.kc.kernel_info()))
            if info is not None and "language_info" in info["content"]:
                self.nb.metadata["language_info"] = info["content"]["language_info"]
            solved: list[tuple[int, str, list]] = []
            for index, cell in enumerate(self.nb.cells):
                await self.async_execute_cell(cell, index, execution_count=self.code_cells_executed + 1)
                ex = cell.get("metadata", {}).get("exercise_check")
                if ex:
                    solved.append((index, ex, await self.solve(ex, cell, index)))
            # The reference solution's run goes into the executed copy right after the check,
            # marked as such; from the last to the first, so earlier indexes stay valid.
            for index, ex, cells in reversed(solved):
                note = nbformat.v4.new_markdown_cell(
                    f"**Reference solution, run by the test** (`notebooks/solutions/{ex}.rs` in place "
                    "of the cell you edit, then the check again). It is not in the notebook you open: "
                    "try the exercise yourself first.")
                note.metadata["lab_injected"] = "note"
                self.nb.cells[index + 1:index + 1] = [note, *cells]
            self.set_widgets_metadata()
        return self.nb

    async def run_injected(self, source: str, label: str, index: int, original):
        """Runs `source` as an extra cell at `index`, not saved in the notebook; returns it.

        nbclient stores an executed cell at its index, so the original cell is put back after.
        """
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["lab_injected"] = label
        try:
            await self.async_execute_cell(cell, index)
        finally:
            self.nb.cells[index] = original
        return cell

    async def rerun_if_silent(self, cell, index: int, ex: str, original) -> str:
        """The check's output; re-runs the check once when it printed nothing at all.

        evcxr can report a cell finished before its last output reaches the notebook (seen once
        in several runs of 05: a cell's printout went missing). A check is a pure read, so
        running it again is safe; a check that answers says Solved or Not yet, never nothing.
        """
        text = output_text(cell)
        if SOLVED in text or NOT_YET in text:
            return text
        print(f"    exercise {ex}: the check printed nothing; running it once more", flush=True)
        return output_text(await self.run_injected(cell.source, "check, again", index, original))

    async def solve(self, ex: str, check_cell, index: int) -> list:
        """Checks the unedited exercise says Not yet, then runs the reference solution and the
        check; returns those two executed cells (the check's last run)."""
        before = await self.rerun_if_silent(check_cell, index, ex, check_cell)
        if NOT_YET not in before:
            raise ExerciseError(f"exercise {ex}: unedited, its check must say '{NOT_YET}', got:\n{before}")
        solution = SOLUTIONS / f"{ex}.rs"
        ran = []
        for label, source in (("solution", solution.read_text()), ("check", check_cell.source)):
            try:
                ran.append(await self.run_injected(source, label, index, check_cell))
            except CellExecutionError as e:
                raise ExerciseError(f"exercise {ex}: the reference {label} cell failed:\n{e}") from None
        text = output_text(ran[-1])
        if SOLVED not in text and NOT_YET not in text:
            ran[-1] = await self.run_injected(check_cell.source, "check, again", index, check_cell)
        after = output_text(ran[-1])
        if SOLVED not in after:
            raise ExerciseError(f"exercise {ex}: with {solution.relative_to(ROOT)}, its check must say '{SOLVED}', got:\n{after}")
        print(f"    exercise {ex}: unedited → not yet; reference solution → solved", flush=True)
        return ran

    # nbclient binds `execute` to the base class's coroutine; bind it to the one above.
    execute = run_sync(async_execute)


# Every executed cell: (seconds, notebook, cell number, first line), for the timing summary.
CELL_TIMES: list[tuple[float, str, int, str]] = []
FIRST_CELL_GOAL = 10.0  # seconds to a notebook's first result, with earlier kernels running (issue 24)
FIRST_CELLS = 3  # "after the first cells": :dep, the prelude, starting the lab


class KernelRecord:
    """A notebook's kernel, kept alive until the run ends, and what it cost."""

    def __init__(self, notebook: str, client):
        self.notebook, self.client = notebook, client
        self.pid = None
        self.slot = ""
        self.first_cell = None
        self.first_from_start = None  # also counting the kernel's start, as a learner waits
        self.rss_first = None
        self.helper_before = 0.0  # when its slot last built this checkout's poc_helpers
        self.rebuilt = False

    def attach(self) -> None:
        """Reads the kernel's pid and build folder once it runs (evcxr-kernel.sh execs evcxr)."""
        if self.pid is None and self.client.km is not None and self.client.km.has_kernel:
            self.pid = self.client.km.provisioner.process.pid
            try:
                env = Path(f"/proc/{self.pid}/environ").read_bytes().split(b"\0")
            except OSError:  # the kernel died at start: its cell fails and says so
                return
            self.slot = next((e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"EVCXR_TMPDIR=")), "")
            if self.slot:
                self.helper_before = kernel_slots.helper_build_time(Path(self.slot), kernel_slots.checkout_helpers())

    def processes(self) -> list[int]:
        """The kernel (evcxr) and the process of the same program it runs the cells in; not the
        lab's nodes, which the cells start as that process's children (reap() stops those)."""
        if self.pid is None:
            return []
        try:
            exe = os.readlink(f"/proc/{self.pid}/exe")
        except OSError:
            return []
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            try:
                if os.readlink(f"/proc/{p}/exe") != exe:
                    continue
                kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
            except OSError:
                continue
            out.append(p)
            todo.extend(int(k) for k in kids)
        return out

    def rss(self) -> tuple[float, float]:
        """GB resident: (evcxr itself, its child processes)."""
        sizes = []
        for p in self.processes():
            try:
                sizes.append(int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE / 1e9)
            except OSError:
                sizes.append(0.0)
        return (sizes[0], sum(sizes[1:])) if sizes else (0.0, 0.0)

    def shutdown(self) -> None:
        pids = self.processes()
        try:
            self.client._cleanup_kernel()  # nbclient's own: shutdown request, then kill after a grace time
        except Exception as e:  # a dead kernel is fine here; the sweep below ends whatever is left
            print(f"    kernel of {self.notebook}: shutdown: {e}", flush=True)
        for p in pids:
            try:
                os.kill(p, 0)
            except OSError:
                continue
            print(f"    kernel of {self.notebook}: process {p} outlived the shutdown; killing it", flush=True)
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass


PAGE = os.sysconf("SC_PAGE_SIZE")
KEPT: list[KernelRecord] = []


def shutdown_kernels() -> None:
    while KEPT:
        KEPT.pop().shutdown()


atexit.register(shutdown_kernels)


def run(path: Path, out_dir: Path, timeout: int) -> tuple[bool, str]:
    nb = nbformat.read(path, as_version=4)
    dirty = committed_outputs(nb)
    if dirty:
        return False, (
            f"{path.name}: cells {dirty} have saved outputs; clear them before committing "
            "(JupyterLab: Edit → Clear Outputs of All Cells, then save)"
        )
    edit, chk = exercise_ids(nb)
    missing = [e for e in edit if not (SOLUTIONS / f"{e}.rs").exists()]
    if sorted(edit) != sorted(chk) or missing:
        return False, (
            f"{path.name}: exercises {edit} and check cells {chk} must pair up, each with a "
            f"solution in notebooks/solutions/ (missing: {missing})"
        )
    code_cells = sum(1 for c in nb.cells if c.cell_type == "code")
    times: list[float] = []
    started = [0.0]

    def before(cell, cell_index, **_):
        rec.attach()  # before the first cell runs: its build folder as the kernel found it
        started[0] = time.monotonic()

    def after(cell, cell_index, **_):
        if cell.get("metadata", {}).get("lab_injected"):
            print(f"           {time.monotonic() - started[0]:6.1f} s  (exercise {cell.metadata.lab_injected})", flush=True)
            return
        times.append(time.monotonic() - started[0])
        if len(times) == 1:
            rec.first_cell = times[0]
            rec.first_from_start = time.monotonic() - t0
            # Did the first cell compile poc_helpers in this kernel's build folder?
            if rec.slot:
                rec.rebuilt = kernel_slots.helper_build_time(Path(rec.slot), kernel_slots.checkout_helpers()) > rec.helper_before
        if len(times) == FIRST_CELLS:
            rec.rss_first = rec.rss()
        CELL_TIMES.append((times[-1], path.name, len(times), cell.source.splitlines()[0][:60] if cell.source else ""))
        print(
            f"    [{len(times):>2}/{code_cells}] {times[-1]:6.1f} s  "
            f"{cell.source.splitlines()[0][:70] if cell.source else ''}",
            flush=True,
        )

    client = LabNotebookClient(
        nb,
        kernel_name="rust",
        # evcxr cannot be interrupted (issue #422); a per-cell timeout is the only way out of a
        # hang. The first cell compiles the helper crate and may take minutes on a cold cache.
        timeout=timeout,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
        on_cell_start=before,
        on_cell_executed=after,
    )
    rec = KernelRecord(path.name, client)
    KEPT.append(rec)
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
    except ExerciseError as e:
        error = str(e)
    total = time.monotonic() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / path.name)
    first = f", first cell {times[0]:.1f} s" if times else ""
    # A kernel started after an earlier kernel of this run built poc_helpers must find that
    # build in its own folder (scripts/kernel_slots.py seeds it); compiling again means it did not.
    if not error and rec.rebuilt and any(k.slot and k is not rec and k.first_cell is not None for k in KEPT):
        error = (f"the kernel compiled poc_helpers again in {rec.slot}, although an earlier kernel of this run "
                 "had built it: its build folder did not take that build (scripts/kernel_slots.py prepare)")
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


def print_kernels() -> None:
    """First-cell times, memory and build-folder disk of this run's kernels, all still alive."""
    print(f"\nkernels ({len(KEPT)} alive, as in a JupyterLab with these notebooks open):")
    total = 0.0
    for k in KEPT:
        evcxr, cells = k.rss()
        total += evcxr + cells
        first = (f"{k.first_cell:5.1f} s ({k.first_from_start:.1f} s from the kernel's start)"
                 if k.first_cell is not None else "n/a")
        flag = "" if k.first_cell is None or k.first_cell <= FIRST_CELL_GOAL else f"  (over the {FIRST_CELL_GOAL:.0f} s goal)"
        early = f"{sum(k.rss_first):.2f} GB" if k.rss_first else "n/a"
        print(f"  {k.notebook:24} first cell {first}{flag}; RSS after {FIRST_CELLS} cells {early}, now "
              f"{evcxr + cells:.2f} GB (evcxr {evcxr:.2f} + cells {cells:.2f}); build folder {Path(k.slot).name or 'temporary'}"
              f"{', compiled poc_helpers' if k.rebuilt else ''}", flush=True)
    print(f"  all kernels: {total:.2f} GB RSS")
    print("  " + kernel_slots.report(), flush=True)


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
    all_ids = {e for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) for e in exercise_ids(nbformat.read(p, as_version=4))[0]}
    orphans = sorted(s.stem for s in SOLUTIONS.glob("*.rs") if s.stem not in all_ids)
    if orphans:
        print(f"notebooks/solutions/ has solutions for no exercise: {orphans}; remove them or add the exercise", file=sys.stderr)
        return 1
    results = []
    try:
        for p in paths:
            print(f"==> {p.name}", flush=True)
            ok, line = run(p.resolve(), args.out, args.timeout)
            print(line, flush=True)
            results.append((ok, line))
            reap()
        print_kernels()
    finally:
        shutdown_kernels()
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
