#!/usr/bin/env python3
"""The Rust kernels' build folders ("slots"): seed a cold one from a warm one, clean old ones, report.

scripts/evcxr-kernel.sh gives every kernel its own slot (evcxr allows one kernel per build folder,
evcxr#304), and a kernel holds its slot's lock (`<slot>.lock`, flock) for its whole life. Setup
warms one slot; a second notebook opened while the first is running used to get a cold slot and
recompile poc_helpers there (~30 s before its first cell returned, ~1 GB more disk).

`prepare SLOT` (run by evcxr-kernel.sh with SLOT locked, before evcxr starts): when another slot
holds a newer build of this checkout's poc_helpers, SLOT takes that slot's build. Cargo then finds
everything fresh and compiles only the cell: its fingerprints and dep-info name files relative to
the target folder or the package, so they hold in any slot. Large build outputs are hard links
(rustc and the linker replace an output by renaming a new file over it, and rustc's incremental
folders are made of hard links already), so a seeded slot costs almost no disk. Cargo's small
bookkeeping files are copies, because cargo rewrites those in place: a link would let one slot's
rebuild mark the other slot's old library as fresh. It also removes the cell libraries a previous
kernel left in SLOT (evcxr never deletes them; ~16 MB per cell).

`prepare` and `clean` also prune what no kernel can use again, which would otherwise pile up in a
slot that stays in use: builds of poc_helpers whose checkout is gone (each clone, worktree or CI
run at a new path adds one: ~30 MB of libraries), and all but the newest incremental state of
poc_helpers and of the cell crate (~250 MB per poc_helpers build; it only speeds up the rebuild
after an edit, and rustc starts a new one when it finds none).

`clean` removes slots that no kernel holds and that were last used more than --days ago.
`report` prints the slots' disk use, each file counted once however many slots link it.

Usage: kernel_slots.py prepare SLOT | clean [--days N] | report     (slots folder: LAB_KERNEL_SLOTS)
"""
import argparse
import fcntl
import os
import shutil
import sys
import time
from pathlib import Path

SEEDING = ".seeding"  # present while a slot is being seeded: never a donor then
LINK_MIN = 64 * 1024  # smaller files are copied: cheap, and safe from in-place rewrites


def slots_dir() -> Path:
    default = f"/var/tmp/surrealdb-lab-{os.getuid()}/kernel-slots"
    return Path(os.environ.get("LAB_KERNEL_SLOTS", default))


def checkout_helpers() -> str:
    """The source file that identifies this checkout's poc_helpers build in a dep-info file."""
    return str(Path(__file__).resolve().parent.parent / "poc_helpers" / "src" / "lib.rs")


def helper_builds(slot: Path, lib_rs: str) -> dict[str, float]:
    """This checkout's poc_helpers builds in `slot`: cargo's hash of each → its dep-info file's
    time (when it was built). The dep-info file names the sources, so it tells the checkout."""
    builds = {}
    for deps in (slot / "target").glob("*/debug/deps"):
        for d in deps.glob("poc_helpers-*.d"):
            try:
                if lib_rs in d.read_text(errors="replace").split("\n", 1)[0].split():
                    builds[d.stem.split("-", 1)[1]] = d.stat().st_mtime
            except OSError:
                pass
    return builds


def helper_build_time(slot: Path, lib_rs: str) -> float:
    """When `slot` last built this checkout's poc_helpers, or 0."""
    return max(helper_builds(slot, lib_rs).values(), default=0.0)


def skip(rel: Path) -> bool:
    """Files a seeded slot must not take: the donor kernel's cells and half-written outputs."""
    name = rel.name
    parts = rel.parts
    if name.startswith("libcode_") or name in (".cargo-lock", "libctx.d", "libctx.so"):
        return True
    if name.endswith(".rcgu.o") or any(p.endswith(("-working", ".temp-archive")) for p in parts):
        return True
    # The cell crate ("ctx") is rebuilt for every cell anyway.
    return any(p.startswith("ctx-") for p in parts) or name.startswith(("libctx-", "ctx-"))


def place(src: Path, dst: Path, link: bool) -> None:
    """Puts src at dst as a new file (never writing into an existing one, which may be linked)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        dst.unlink()
    except FileNotFoundError:
        pass
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # another file system: copy
    shutil.copy2(src, dst)


def seed(slot: Path, donor: Path, lib_rs: str) -> tuple[int, int]:
    """Gives `slot` the donor's build: fingerprints first, so a file copied before the donor's
    cargo updated it can only look stale, never fresh. Returns (files linked, files copied).

    Files the slot has already are kept (cargo names an output by a hash of its inputs, so they
    are the same), except this checkout's poc_helpers: the donor's build of it replaces ours.
    Other checkouts' builds in the slot (several clones share the slots) stay as they are."""
    src_root, dst_root = donor / "target", slot / "target"
    ours = tuple(f"poc_helpers-{h}" for h in helper_builds(donor, lib_rs))
    files = [p for p in src_root.rglob("*") if p.is_file() and not p.is_symlink()]
    rels = [p.relative_to(src_root) for p in files]
    rels = [r for r in rels if not skip(r)]
    rels.sort(key=lambda r: ".fingerprint" not in r.parts)
    linked = copied = 0
    for rel in rels:
        src = src_root / rel
        try:
            size = src.stat().st_size
        except FileNotFoundError:
            continue  # the donor's cargo removed it meanwhile
        small = (".fingerprint" in rel.parts or rel.suffix in (".d", ".json", ".timestamp")
                 or rel.name in ("output", "root-output", "stderr") or size < LINK_MIN)
        dst = dst_root / rel
        if dst.exists() and not any(o in str(rel) for o in ours):
            continue
        try:
            place(src, dst, link=not small)
        except FileNotFoundError:
            continue
        if small:
            copied += 1
        else:
            linked += 1
    return linked, copied


def file_stats(root: Path):
    """lstat() of every file under `root` (files that vanish meanwhile are skipped)."""
    for dirpath, _, names in os.walk(root):
        for n in names:
            try:
                yield os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue


def remove(path: Path) -> int:
    """Deletes a file or a folder; returns the bytes freed (a file still linked elsewhere frees none)."""
    freed = 0
    try:
        if path.is_dir() and not path.is_symlink():
            freed = sum(st.st_blocks * 512 for st in file_stats(path) if st.st_nlink == 1)
            shutil.rmtree(path, ignore_errors=True)
        else:
            st = path.lstat()
            path.unlink()
            if st.st_nlink == 1:
                freed += st.st_blocks * 512
    except OSError:
        pass
    return freed


def newest(path: Path) -> float:
    """The latest modification time of a folder or of what it directly holds."""
    try:
        return max([path.stat().st_mtime] + [c.stat().st_mtime for c in path.iterdir()])
    except OSError:
        return 0.0


def prune(slot: Path) -> int:
    """Deletes from `slot` what no kernel can use again; returns the bytes freed.

    - A poc_helpers build whose checkout is gone (the lib.rs its dep-info names no longer exists):
      cargo names a path crate's build by its path, so no checkout can ever find it fresh again.
    - All but the newest incremental folder of poc_helpers and of the cell crate ("ctx"): each
      build of poc_helpers has its own (~250 MB), and rustc simply starts a new one when none is
      there. The newest belongs to the checkout compiled last, the one a restart rebuilds.
    Only for a slot no kernel is using: prepare() runs before evcxr starts, clean() holds the lock."""
    freed = 0
    for debug in (slot / "target").glob("*/debug"):
        deps = debug / "deps"
        for d in deps.glob("poc_helpers-*.d"):
            try:
                first = d.read_text(errors="replace").split("\n", 1)[0].split()
            except OSError:
                continue
            sources = [t for t in first if t.endswith("/src/lib.rs") and t.startswith("/")]
            if not sources or any(Path(t).exists() for t in sources):
                continue
            h = d.stem.split("-", 1)[1]
            for gone in (d, deps / f"libpoc_helpers-{h}.rlib", deps / f"libpoc_helpers-{h}.rmeta",
                         debug / ".fingerprint" / f"poc_helpers-{h}"):
                freed += remove(gone)
        for crate in ("poc_helpers", "ctx"):
            states = sorted((debug / "incremental").glob(f"{crate}-*"), key=newest)
            for old in states[:-1]:
                freed += remove(old)
    return freed


def remove_old_cells(slot: Path) -> int:
    """Deletes the cell libraries (libcode_N.so) a previous kernel left; returns bytes freed."""
    return sum(remove(so) for so in (slot / "target").glob("*/debug/deps/libcode_*.so"))


def is_locked(lock: Path) -> bool:
    """Whether a kernel holds this slot (its lock file is flocked)."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def prepare(slot: Path) -> None:
    slot = slot.resolve()
    t0 = time.monotonic()
    freed = remove_old_cells(slot)
    lib_rs = checkout_helpers()
    mine = helper_build_time(slot, lib_rs)
    donors = []
    for other in slot.parent.iterdir():
        if other == slot or not other.is_dir() or (other / SEEDING).exists():
            continue
        t = helper_build_time(other, lib_rs)
        if t > mine:
            donors.append((t, other))
    if donors:
        donor = max(donors)[1]
        marker = slot / SEEDING
        marker.touch()
        linked, copied = seed(slot, donor, lib_rs)
        marker.unlink()
        print(f"kernel slot {slot.name}: took the build of slot {donor.name} ({linked} files linked, "
              f"{copied} copied) in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    else:
        (slot / SEEDING).unlink(missing_ok=True)  # left by a seeding that was cut short
    if freed >= 1e6:
        print(f"kernel slot {slot.name}: removed {freed / 1e6:.0f} MB of an earlier kernel's cells", file=sys.stderr)
    # After seeding: a donor also hands over the stale builds it still holds.
    pruned = prune(slot)
    if pruned >= 1e6:
        print(f"kernel slot {slot.name}: removed {pruned / 1e6:.0f} MB of stale builds (checkouts that are gone, "
              "older incremental state)", file=sys.stderr)


def disk_use(paths: list[Path], seen: set) -> int:
    """Bytes on disk under `paths`, each inode counted once across calls sharing `seen`."""
    total = 0
    for root in paths:
        for st in file_stats(root):
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def slots() -> list[Path]:
    d = slots_dir()
    return sorted((p for p in d.iterdir() if p.is_dir()), key=lambda p: p.name) if d.is_dir() else []


def report() -> str:
    """One line: total disk of the slots (shared files once) and each slot's own share."""
    all_slots = slots()
    if not all_slots:
        return f"kernel slots: none yet ({slots_dir()})"
    seen: set = set()
    total, parts = 0, []
    for s in all_slots:
        own = disk_use([s], seen)  # what this slot adds to the ones before it
        total += own
        state = "in use" if is_locked(s.parent / f"{s.name}.lock") else "idle"
        parts.append(f"{s.name} +{own / 1e6:.0f} MB {state}")
    return (f"kernel slots: {total / 1e9:.2f} GB on disk in {slots_dir()} (a file linked into several "
            "slots counted once: " + ", ".join(parts) + ")")


def clean(days: float) -> None:
    """Removes slots not in use whose last kernel started more than `days` ago, and prunes the
    other slots not in use (see prune)."""
    now = time.time()
    for s in slots():
        lock = s.parent / f"{s.name}.lock"
        last = max((p.stat().st_mtime for p in (lock, s) if p.exists()), default=0)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # hold it while deleting: no kernel starts here
        except OSError:
            os.close(fd)
            continue
        try:
            if now - last >= days * 86400:
                shutil.rmtree(s, ignore_errors=True)
                print(f"kernel slot {s.name}: removed (unused for {(now - last) / 86400:.0f} days)")
            else:
                pruned = prune(s)
                if pruned >= 1e6:
                    print(f"kernel slot {s.name}: removed {pruned / 1e6:.0f} MB of stale builds")
        finally:
            os.close(fd)
        if now - last < days * 86400:
            os.utime(lock, (last, last))  # a lock created here to prune is no kernel's use: keep the age


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("slot", type=Path)
    c = sub.add_parser("clean")
    c.add_argument("--days", type=float, default=7)
    sub.add_parser("report")
    args = ap.parse_args()
    if args.cmd == "prepare":
        prepare(args.slot)
    elif args.cmd == "clean":
        clean(args.days)
    else:
        print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
