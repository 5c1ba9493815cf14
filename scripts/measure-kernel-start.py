#!/usr/bin/env python3
"""Measures what a Rust kernel's start costs, and compares the lab's kernel settings with evcxr's.

Starts the real kernel through the lab's kernel spec (scripts/evcxr-kernel.sh) several times, runs
notebook 01's first two cells and a first cell that defines a variable, and prints for each cell
the wall time, the kernel process's CPU time (user + system) and its resident memory afterwards.
Runs alternate between two settings, in the same invocation, and the summary prints the lab's
medians as ratios to the baseline's:
  baseline  evcxr's own allocator settings (mimalloc with transparent huge pages allowed),
  lab       what scripts/evcxr-kernel.sh sets (MIMALLOC_ALLOW_THP=0).
Nothing here asserts a time. Needs a warm kernel build folder (scripts/setup.sh) and a quiet machine.

With --try NAME=VALUE (repeatable), the baseline is the lab's settings and the candidate is the
lab's settings plus those variables: how the lab's kernel settings were chosen and can be revisited.

Usage: scripts/measure-kernel-start.py [--runs N] [--try NAME=VALUE ...]   (default 3 runs of each)
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_kernel import Kernel, first_cells  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
SETTINGS = {"baseline": {"MIMALLOC_ALLOW_THP": "1"}, "lab": {}}
CELLS = ["dep", "use", "first let"]


def usage(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and resident GB of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9
    return cpu, rss


def one_run(env: dict) -> dict:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        t = time.monotonic()
        k = Kernel()
        row = {"start": (time.monotonic() - t, None, None)}
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    pid = k.km.provisioner.process.pid  # evcxr-kernel.sh execs evcxr_jupyter: same pid
    try:
        for name, code in zip(CELLS, first_cells() + ["let x = 1 + 1; x"]):
            cpu0, _ = usage(pid)
            t = time.monotonic()
            k.run(code)
            wall = time.monotonic() - t
            cpu1, rss = usage(pid)
            row[name] = (wall, cpu1 - cpu0, rss)
    finally:
        k.stop()
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--try", dest="tries", action="append", default=[], metavar="NAME=VALUE",
                    help="compare the lab's settings (baseline) with the lab's plus these variables")
    args = ap.parse_args()
    if args.tries:
        bad = [t for t in args.tries if "=" not in t]
        if bad:
            ap.error(f"--try takes NAME=VALUE, got {bad[0]!r}")
        SETTINGS["baseline"] = {}
        SETTINGS["lab"] = dict(t.split("=", 1) for t in args.tries)
        print(f"baseline: the lab's settings; candidate ('lab' below): plus {SETTINGS['lab']}")
    os.environ.setdefault("EVCXR_CONFIG_DIR", str(Path(__file__).resolve().parent / "evcxr" / "lab"))
    results = {name: [] for name in SETTINGS}
    for i in range(args.runs):
        for name, env in SETTINGS.items():
            row = one_run(env)
            results[name].append(row)
            cells = "  ".join(f"{c} {row[c][0]:.1f} s wall, {row[c][1]:.1f} s CPU" for c in CELLS)
            print(f"run {i + 1} {name:8}  start {row['start'][0]:.1f} s  {cells}  RSS {row[CELLS[-1]][2]:.2f} GB", flush=True)

    def med(name: str, cell: str, i: int) -> float:
        return statistics.median(r[cell][i] for r in results[name])

    print(f"\nmedians over {args.runs} runs (lab ÷ baseline):")
    for cell in ["start"] + CELLS:
        b, lab = med("baseline", cell, 0), med("lab", cell, 0)
        line = f"  {cell:10} wall {lab:5.1f} s vs {b:5.1f} s = {lab / b:.2f}"
        if cell != "start":
            bc, lc = med("baseline", cell, 1), med("lab", cell, 1)
            line += f"   CPU {lc:4.1f} s vs {bc:4.1f} s = {lc / bc:.2f}"
        print(line)
    b, lab = med("baseline", CELLS[-1], 2), med("lab", CELLS[-1], 2)
    print(f"  kernel RSS after them: {lab:.2f} GB vs {b:.2f} GB = {lab / b:.2f}")
    first = [r["start"][0] + r["dep"][0] for r in results["lab"]]
    print(f"  kernel start → first cell (lab): median {statistics.median(first):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
