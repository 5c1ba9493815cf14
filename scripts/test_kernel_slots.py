#!/usr/bin/env python3
"""Tests of scripts/kernel_slots.py on made-up build folders (no kernel, no compiler; < 1 s).

What a seeded slot must be for cargo to skip poc_helpers, and for the two slots to stay
independent: this checkout's build taken from the newest donor, large outputs hard-linked,
cargo's rewritable bookkeeping copied (a shared inode would let one slot's rebuild mark the
other's old library fresh), the donor kernel's cells left out, a slot being seeded never used as a
donor; `clean` removes an old idle slot and never a locked one; builds of gone checkouts and
older incremental state are pruned. The real kernels are covered by
scripts/run-notebooks.py, which fails when a later notebook's kernel compiles poc_helpers again.
Run by scripts/test.sh.
"""
import fcntl
import os
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel_slots as ks  # noqa: E402

DEBUG = Path("target/x86_64-unknown-linux-gnu/debug")
BIG = b"x" * (ks.LINK_MIN + 1)


def make_build(slot: Path, lib_rs: str, h: str, when: float) -> None:
    """A slot holding a poc_helpers build (hash h) of the checkout whose lib.rs is lib_rs."""
    d = slot / DEBUG
    (d / "deps").mkdir(parents=True, exist_ok=True)
    dep_info = d / "deps" / f"poc_helpers-{h}.d"
    dep_info.write_text(f"{d}/deps/poc_helpers-{h}.d: {lib_rs} /x/src/other.rs\n")
    (d / "deps" / f"libpoc_helpers-{h}.rlib").write_bytes(BIG)
    (d / "deps" / "libpolars-1.rlib").write_bytes(BIG)
    (d / "deps" / "libcode_7.so").write_bytes(BIG)  # a cell of the donor's kernel
    fp = d / ".fingerprint" / f"poc_helpers-{h}"
    fp.mkdir(parents=True, exist_ok=True)
    (fp / "lib-poc_helpers").write_text("fresh")
    (fp / "dep-lib-poc_helpers").write_bytes(BIG)  # large, but cargo rewrites it in place
    for p in [dep_info, *(d / "deps").iterdir(), *fp.iterdir()]:
        os.utime(p, (when, when))


class Seed(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.slots = Path(self.tmp.name)
        os.environ["LAB_KERNEL_SLOTS"] = str(self.slots)
        self.lib = ks.checkout_helpers()
        self.now = time.time()

    def tearDown(self):
        self.tmp.cleanup()

    def test_a_cold_slot_takes_the_newest_build_of_this_checkout(self):
        make_build(self.slots / "0", self.lib, "aaa", self.now - 100)
        make_build(self.slots / "1", self.lib, "bbb", self.now - 10)  # newer: the donor
        make_build(self.slots / "2", "/elsewhere/poc_helpers/src/lib.rs", "ccc", self.now)  # another clone
        cold = self.slots / "3"
        cold.mkdir()
        ks.prepare(cold)
        deps, fp = cold / DEBUG / "deps", cold / DEBUG / ".fingerprint" / "poc_helpers-bbb"
        self.assertTrue((deps / "libpoc_helpers-bbb.rlib").exists(), "the donor's library was not taken")
        self.assertFalse((deps / "libpoc_helpers-ccc.rlib").exists(), "took another clone's build")
        self.assertEqual(ks.helper_build_time(cold, self.lib), ks.helper_build_time(self.slots / "1", self.lib),
                         "the dep-info time must survive: cargo compares it with the sources")
        donor_lib = self.slots / "1" / DEBUG / "deps" / "libpoc_helpers-bbb.rlib"
        self.assertTrue(os.path.samefile(deps / "libpoc_helpers-bbb.rlib", donor_lib), "a large output must be a hard link")
        for f in fp.iterdir():
            self.assertEqual(f.stat().st_nlink, 1, f"{f.name} is shared with the donor: cargo rewrites it in place")
        self.assertFalse((deps / "libcode_7.so").exists(), "took the donor kernel's cell library")
        self.assertFalse((cold / ks.SEEDING).exists(), "the seeding marker was left behind")

    def test_a_slot_with_the_newest_build_is_left_alone_and_loses_old_cells(self):
        make_build(self.slots / "0", self.lib, "aaa", self.now - 100)
        make_build(self.slots / "1", self.lib, "bbb", self.now)
        ks.prepare(self.slots / "1")
        deps = self.slots / "1" / DEBUG / "deps"
        self.assertFalse((deps / "libpoc_helpers-aaa.rlib").exists(), "an older build was pulled in")
        self.assertFalse((deps / "libcode_7.so").exists(), "an earlier kernel's cell library was kept")

    def test_a_slot_being_seeded_is_no_donor(self):
        make_build(self.slots / "0", self.lib, "aaa", self.now)
        (self.slots / "0" / ks.SEEDING).touch()
        cold = self.slots / "1"
        cold.mkdir()
        ks.prepare(cold)
        self.assertFalse((cold / DEBUG / "deps" / "libpoc_helpers-aaa.rlib").exists(),
                         "seeded from a half-seeded slot")

    def test_clean_removes_an_old_idle_slot_but_never_a_locked_one(self):
        old = self.now - 30 * 86400
        for name in ("0", "1", "2"):
            make_build(self.slots / name, self.lib, name, old)
            (self.slots / f"{name}.lock").touch()
            os.utime(self.slots / f"{name}.lock", (old, old))
            os.utime(self.slots / name, (old, old))
        os.utime(self.slots / "2.lock")  # used just now
        fd = os.open(self.slots / "1.lock", os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)  # a running kernel holds slot 1
        try:
            ks.clean(days=7)
        finally:
            os.close(fd)
        self.assertFalse((self.slots / "0").exists(), "an old idle slot was kept")
        self.assertTrue((self.slots / "1").exists(), "a slot in use was removed")
        self.assertTrue((self.slots / "2").exists(), "a recently used slot was removed")

    def test_prune_drops_builds_of_gone_checkouts_and_older_incremental_state(self):
        gone = "/gone/clone/poc_helpers/src/lib.rs"
        make_build(self.slots / "0", gone, "old", self.now - 100)
        make_build(self.slots / "1", self.lib, "cur", self.now)
        inc = self.slots / "1" / DEBUG / "incremental"
        for name, age in (("poc_helpers-aa", 100), ("poc_helpers-bb", 0), ("ctx-x", 50), ("ctx-y", 5)):
            (inc / name / "s-1").mkdir(parents=True)
            (inc / name / "s-1" / "0.o").write_bytes(BIG)
            for p in (inc / name / "s-1", inc / name):
                os.utime(p, (self.now - age, self.now - age))
        (self.slots / "1.lock").touch()
        ks.prepare(self.slots / "1")  # the donor (slot 0) has no newer build of ours: no seeding
        deps, fp = self.slots / "1" / DEBUG / "deps", self.slots / "1" / DEBUG / ".fingerprint"
        self.assertTrue((deps / "libpoc_helpers-cur.rlib").exists(), "this checkout's build was pruned")
        self.assertTrue((fp / "poc_helpers-cur").exists(), "this checkout's fingerprint was pruned")
        self.assertEqual(sorted(p.name for p in inc.iterdir()), ["ctx-y", "poc_helpers-bb"],
                         "only the newest incremental state of each crate stays")
        ks.clean(days=7)  # slot 0 is idle and recent: pruned, not removed
        deps0 = self.slots / "0" / DEBUG / "deps"
        self.assertFalse((deps0 / "libpoc_helpers-old.rlib").exists(), "a build of a gone checkout was kept")
        self.assertFalse((deps0 / "poc_helpers-old.d").exists(), "its dep-info was kept")
        self.assertFalse((self.slots / "0" / DEBUG / ".fingerprint" / "poc_helpers-old").exists())
        self.assertTrue((deps0 / "libpolars-1.rlib").exists(), "a dependency's library was pruned")

    def test_report_counts_a_linked_file_once(self):
        make_build(self.slots / "0", self.lib, "aaa", self.now)
        (self.slots / "1").mkdir()
        ks.prepare(self.slots / "1")
        line = ks.report()
        self.assertIn("1 +0 MB", line, line)


if __name__ == "__main__":
    unittest.main(verbosity=2)
