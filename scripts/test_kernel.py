#!/usr/bin/env python3
"""Kernel restart test: a restart must not rebuild poc_helpers, and an edit must take effect.

Starts the real Rust kernel through the lab's kernel spec (scripts/evcxr-kernel.sh gives it a fixed
build folder), runs notebook 01's first two code cells (`:dep poc_helpers` and the prelude), then:
  1. restarts the kernel and runs them again: the same build folder is used and poc_helpers'
     compiled library is untouched (its file's modification time is the evidence; no time is asserted);
  2. marks poc_helpers' lib.rs as edited (a new modification time), restarts, runs them again:
     the library is rebuilt, so a learner's edit reaches the next restart.
The seconds from the restart request to the first cell's reply (and the kernel's own start within
them) are printed for the closing note, not asserted.
Run by scripts/test.sh after the notebooks.
"""
import os
import sys
import time
import unittest
from pathlib import Path

import nbformat
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parent.parent
LIB_RS = ROOT / "poc_helpers" / "src" / "lib.rs"


def first_cells() -> list[str]:
    nb = nbformat.read(ROOT / "notebooks" / "01_setup.ipynb", as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"][:2]


class Kernel:
    def __init__(self):
        os.environ.setdefault("EVCXR_CONFIG_DIR", str(ROOT / "scripts" / "evcxr" / "test"))
        self.km = KernelManager(kernel_name="rust")
        self.km.start_kernel(cwd=str(ROOT / "notebooks"))
        self.client()

    def client(self):
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def run(self, code: str) -> str:
        out: list[str] = []

        def hook(msg):
            content = msg["content"]
            if msg["msg_type"] == "stream":
                out.append(content["text"])
            elif msg["msg_type"] in ("execute_result", "display_data"):
                out.append(content["data"].get("text/plain", ""))
            elif msg["msg_type"] == "error":
                out.append(f"{content['ename']}: {content['evalue']}")

        reply = self.kc.execute_interactive(code, timeout=1800, output_hook=hook)
        text = "".join(out)
        if reply["content"]["status"] != "ok":
            raise AssertionError(f"cell failed:\n{code}\n{text}")
        return text

    def restart(self):
        self.kc.stop_channels()
        self.km.restart_kernel(now=False)
        self.client()

    def stop(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)


def helper_libs(build_dir: Path) -> dict[Path, int]:
    """poc_helpers' compiled libraries in a kernel build folder, with their modification times."""
    return {p: p.stat().st_mtime_ns for p in build_dir.glob("target/**/deps/libpoc_helpers-*")}


class Restart(unittest.TestCase):
    def test_restart_skips_an_unchanged_helper_and_rebuilds_an_edited_one(self):
        cells = first_cells()
        self.assertTrue(cells[0].startswith(":dep poc_helpers"), cells[0])
        k = Kernel()
        lib_stat = LIB_RS.stat()
        try:
            for c in cells:
                k.run(c)
            folder = k.run('std::env::var("EVCXR_TMPDIR").unwrap_or_default()').strip().strip('"')
            self.assertTrue(folder, "the kernel has no fixed build folder (scripts/evcxr-kernel.sh)")
            before = helper_libs(Path(folder))
            self.assertTrue(before, f"no compiled poc_helpers under {folder}")

            t0 = time.monotonic()
            k.restart()
            ready = time.monotonic() - t0
            k.run(cells[0])
            first = time.monotonic() - t0
            k.run(cells[1])
            again = k.run('std::env::var("EVCXR_TMPDIR").unwrap_or_default()').strip().strip('"')
            print(f"\n    restart → first cell returned in {first:.1f} s: the kernel was ready after {ready:.1f} s,"
                  f" the first cell took {first - ready:.1f} s (build folder {again})", file=sys.stderr)
            self.assertEqual(again, folder, "the restarted kernel got another build folder")
            self.assertEqual(helper_libs(Path(folder)), before, "poc_helpers was rebuilt after a restart")

            # An edit (here: a new modification time, as saving the file gives) must be rebuilt.
            os.utime(LIB_RS)
            k.restart()
            for c in cells:
                k.run(c)
            after = helper_libs(Path(folder))
            self.assertNotEqual(after, before, "an edited poc_helpers was not rebuilt on restart")
        finally:
            # Give lib.rs its real time back, so no other build sees it as changed.
            os.utime(LIB_RS, ns=(lib_stat.st_atime_ns, lib_stat.st_mtime_ns))
            k.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
