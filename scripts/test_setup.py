#!/usr/bin/env python3
"""Tests of setup's server and evcxr steps (get-server.sh, get-evcxr.sh) against real files and a
real HTTP server.

A local HTTP server on 127.0.0.1 stands in for SurrealDB's download site: it serves a tarball of the
`surreal` binary that setup already has, plus its SHA-256 digest file, named as the official ones.
Each test runs get-server.sh with an empty LAB_CACHE of its own and a PATH without any `surreal`:
  - the official archive is downloaded, verified, used, and a lab starts on it;
  - a wrong digest is refused with a clear message, the download deleted, and setup falls back;
  - an unreachable or silent download site falls back within seconds;
  - a `surreal` on PATH that reports another version is not used, and the message says why;
  - SURREAL_BIN wins when right and stops setup with the fix when wrong.
For the evcxr step, the same site stands in for evcxr's GitHub release: a release JSON as GitHub's
API gives it (assets with their download address and SHA-256 digest) and a tarball of the
evcxr_jupyter that setup already has, named and laid out as evcxr's release workflow makes them:
  - the prebuilt binary is downloaded, verified, installed, and a second run keeps it;
  - a wrong digest, or no recorded digest, is refused and setup falls back to compiling;
  - a binary that does not run here is not installed, and the message says why;
  - an unreachable release falls back within seconds;
  - a Rust without the standard library's source (which evcxr's type inference reads) gets it
    from rustup, or setup stops with the fix.
Run by scripts/test.sh (after setup, which provides the binary to serve).
"""
import hashlib
import http.server
import json
import os
import platform
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GET_SERVER = ROOT / "scripts" / "get-server.sh"
VERSION = "3.3.5"
CACHE = Path(os.environ["LAB_CACHE"])
GET_EVCXR = ROOT / "scripts" / "get-evcxr.sh"
EVCXR_VERSION = os.environ["EVCXR_VERSION"]
REAL_EVCXR = Path(os.environ["LAB_TOOLS"]) / "bin" / "evcxr_jupyter"
EVCXR_TARGET = {("Linux", "x86_64"): "x86_64-unknown-linux-gnu", ("Darwin", "arm64"): "aarch64-apple-darwin"}.get(
    (platform.system(), platform.machine()))
REAL_SURREAL = (CACHE / "bin" / "surreal").resolve()
LAB = Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "lab"
OS = {"Linux": "linux", "Darwin": "darwin"}[platform.system()]
ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine()]
NAME = f"surreal-v{VERSION}.{OS}-{ARCH}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Site:
    """A download site on loopback serving <root>/v3.3.5/<name>.tgz and <name>.txt."""

    def __init__(self, root: Path):
        handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **kw)  # noqa: E731
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class ServerStep(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not REAL_SURREAL.is_file():
            raise unittest.SkipTest(f"no surreal at {CACHE / 'bin' / 'surreal'}: run scripts/setup.sh first")
        cls.site_dir = Path(tempfile.mkdtemp(prefix="lab-site-"))
        release = cls.site_dir / f"v{VERSION}"
        release.mkdir()
        tgz = release / f"{NAME}.tgz"
        with tarfile.open(tgz, "w:gz") as tar:
            tar.add(REAL_SURREAL, arcname="surreal")
        cls.digest = hashlib.sha256(tgz.read_bytes()).hexdigest()
        (release / f"{NAME}.txt").write_text(cls.digest + "\n")
        cls.site = Site(cls.site_dir)

    @classmethod
    def tearDownClass(cls):
        cls.site.close()
        shutil.rmtree(cls.site_dir, ignore_errors=True)

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="lab-setup-test-"))
        self.bin = self.tmp / "path-bin"
        self.bin.mkdir()

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_step(self, base_url: str, *args: str, extra_env: dict | None = None) -> tuple[int, str, float]:
        """get-server.sh with an empty cache, no SURREAL_BIN and no other `surreal` on PATH."""
        path = [str(self.bin)] + [
            d for d in os.environ["PATH"].split(":") if d and not (Path(d) / "surreal").exists()
        ]
        env = {k: v for k, v in os.environ.items() if k not in ("SURREAL_BIN", "LAB_USER_SURREAL_BIN")}
        env.update(LAB_CACHE=str(self.tmp / "cache"), LAB_SERVER_BASE_URL=base_url, PATH=":".join(path))
        env.update(extra_env or {})
        t0 = time.monotonic()
        p = subprocess.run([str(GET_SERVER), *args], env=env, capture_output=True, text=True, timeout=600)
        return p.returncode, p.stdout + p.stderr, time.monotonic() - t0

    def fake_surreal(self, reports: str) -> Path:
        fake = self.bin / "surreal"
        fake.write_text(f"#!/bin/sh\necho '{reports} for linux on x86_64'\n")
        fake.chmod(0o755)
        return fake

    def test_official_archive_is_downloaded_verified_and_a_lab_starts_on_it(self):
        rc, out, _ = self.run_step(self.site.url)
        self.assertEqual(rc, 0, out)
        self.assertIn("official archive (SHA-256 verified)", out)
        link = self.tmp / "cache" / "bin" / "surreal"
        downloaded = self.tmp / "cache" / "server" / NAME / "surreal"
        self.assertEqual(link.resolve(), downloaded)
        # A second run reuses the verified binary without downloading again.
        rc, out, _ = self.run_step("http://127.0.0.1:9", "--resolve-only")
        self.assertEqual(rc, 0, out)
        self.assertIn("official archive (cached)", out)
        # The lab starts on the downloaded binary and reports its version.
        env = dict(os.environ, SURREAL_BIN=str(link), LAB_DIR=str(self.tmp / "labs"), LAB_BASE_PORT="ephemeral")
        try:
            up = subprocess.run([str(LAB), "up", "--nodes", "1"], env=env, capture_output=True, text=True, timeout=180)
            self.assertEqual(up.returncode, 0, up.stdout + up.stderr)
            status = subprocess.run([str(LAB), "status"], env=env, capture_output=True, text=True, timeout=60)
            self.assertIn(VERSION, status.stdout, status.stdout + status.stderr)
            sql = subprocess.run([str(LAB), "sql", "a", "RETURN 1 + 1"], env=env, capture_output=True, text=True, timeout=60)
            self.assertIn("2", sql.stdout, sql.stdout + sql.stderr)
        finally:
            subprocess.run([str(LAB), "clean"], env=env, capture_output=True, timeout=120)

    def test_a_wrong_digest_is_refused_deleted_and_setup_falls_back(self):
        bad = Path(tempfile.mkdtemp(prefix="lab-site-bad-"))
        try:
            shutil.copytree(self.site_dir, bad, dirs_exist_ok=True)
            (bad / f"v{VERSION}" / f"{NAME}.txt").write_text("0" * 64 + "\n")
            site = Site(bad)
            try:
                rc, out, _ = self.run_step(site.url, "--resolve-only")
            finally:
                site.close()
        finally:
            shutil.rmtree(bad, ignore_errors=True)
        self.assertEqual(rc, 10, out)  # 10: the next option, the source build, is needed
        self.assertIn("SHA-256 mismatch", out)
        self.assertIn("deleted", out)
        self.assertFalse((self.tmp / "cache" / "server" / NAME / "surreal").exists())
        self.assertFalse((self.tmp / "cache" / "bin" / "surreal").exists())

    def test_an_unreachable_site_falls_back_within_seconds(self):
        rc, out, took = self.run_step(f"http://127.0.0.1:{free_port()}", "--resolve-only")
        self.assertEqual(rc, 10, out)
        self.assertIn("not reachable", out)
        self.assertLess(took, 5, "a refused connection should fall back at once")

    def test_a_silent_site_falls_back_within_seconds(self):
        # Accepts connections and never answers: only curl's time limits get setup out of it.
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        try:
            rc, out, took = self.run_step(f"http://127.0.0.1:{silent.getsockname()[1]}", "--resolve-only")
        finally:
            silent.close()
        self.assertEqual(rc, 10, out)
        self.assertIn("not reachable", out)
        self.assertLess(took, 15)

    def test_a_surreal_on_path_with_another_version_is_not_used(self):
        fake = self.fake_surreal("2.1.4")
        rc, out, _ = self.run_step(f"http://127.0.0.1:{free_port()}", "--resolve-only")
        self.assertEqual(rc, 10, out)
        self.assertIn(f"not using {fake}: it reports version '2.1.4', the lab needs exactly {VERSION}", out)

    def test_a_surreal_on_path_with_the_right_version_is_used(self):
        fake = self.fake_surreal(VERSION)
        rc, out, _ = self.run_step(f"http://127.0.0.1:{free_port()}", "--resolve-only")
        self.assertEqual(rc, 0, out)
        self.assertIn("server: surreal on PATH", out)
        self.assertEqual((self.tmp / "cache" / "bin" / "surreal").resolve(), fake)

    def test_surreal_bin_wins_and_a_wrong_one_names_the_fix(self):
        rc, out, _ = self.run_step(self.site.url, extra_env={"SURREAL_BIN": str(REAL_SURREAL)})
        self.assertEqual(rc, 0, out)
        self.assertIn("server: SURREAL_BIN", out)
        wrong = self.fake_surreal("2.1.4")
        rc, out, _ = self.run_step(self.site.url, extra_env={"SURREAL_BIN": str(wrong)})
        self.assertEqual(rc, 1, out)
        self.assertIn("Point SURREAL_BIN at a surreal 3.3.5 binary, or unset it", out)


class EvcxrStep(unittest.TestCase):
    """get-evcxr.sh against a local stand-in for evcxr's GitHub release."""

    NAME = f"evcxr_jupyter-v{EVCXR_VERSION}-{EVCXR_TARGET}"

    @classmethod
    def setUpClass(cls):
        if EVCXR_TARGET is None:
            raise unittest.SkipTest("evcxr publishes no prebuilt binary for this OS and CPU")
        if not REAL_EVCXR.is_file():
            raise unittest.SkipTest(f"no evcxr_jupyter at {REAL_EVCXR}: run scripts/setup.sh first")
        cls.site_dir = Path(tempfile.mkdtemp(prefix="lab-evcxr-site-"))
        cls.good = cls.tarball("good", REAL_EVCXR)
        # A binary that cannot run here, as evcxr's build would be on a system with an older C library.
        broken = cls.site_dir / "broken-bin"
        broken.write_text("#!/bin/sh\necho \"evcxr_jupyter: /lib/libc.so.6: version 'GLIBC_2.99' not found\" >&2\nexit 1\n")
        broken.chmod(0o755)
        cls.broken = cls.tarball("broken", broken)
        cls.site = Site(cls.site_dir)

    @classmethod
    def tarball(cls, folder: str, binary: Path) -> str:
        """<folder>/<NAME>.tar.gz holding <NAME>/evcxr_jupyter, as evcxr's release workflow packs it."""
        (cls.site_dir / folder).mkdir()
        tgz = cls.site_dir / folder / f"{cls.NAME}.tar.gz"
        with tarfile.open(tgz, "w:gz", compresslevel=1) as tar:
            tar.add(binary, arcname=f"{cls.NAME}/evcxr_jupyter")
        return hashlib.sha256(tgz.read_bytes()).hexdigest()

    @classmethod
    def tearDownClass(cls):
        cls.site.close()
        shutil.rmtree(cls.site_dir, ignore_errors=True)

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="lab-evcxr-test-"))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def release(self, folder: str, digest: str | None) -> str:
        """Writes a release JSON (GitHub API's shape) for <folder>'s tarball; returns the API base URL."""
        api = self.tmp / "site" / "api"
        api.mkdir(parents=True, exist_ok=True)
        asset = {"name": f"{self.NAME}.tar.gz", "browser_download_url": f"{self.site.url}/{folder}/{self.NAME}.tar.gz"}
        if digest is not None:
            asset["digest"] = f"sha256:{digest}"
        other = {"name": f"evcxr-v{EVCXR_VERSION}-{EVCXR_TARGET}.tar.gz", "digest": "sha256:" + "1" * 64,
                 "browser_download_url": f"{self.site.url}/nowhere.tar.gz"}
        (api / f"v{EVCXR_VERSION}").write_text(json.dumps({"tag_name": f"v{EVCXR_VERSION}", "assets": [other, asset]}))
        self.api_site = Site(self.tmp / "site")
        self.addCleanup(self.api_site.close)
        return f"{self.api_site.url}/api"

    def run_step(self, api: str, *args: str) -> tuple[int, str, float]:
        """get-evcxr.sh with an empty lab cache (so nothing is installed yet)."""
        env = dict(os.environ, LAB_CACHE=str(self.tmp / "cache"), LAB_EVCXR_RELEASE_API=api)
        t0 = time.monotonic()
        p = subprocess.run([str(GET_EVCXR), *args], env=env, capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout + p.stderr, time.monotonic() - t0

    def installed(self) -> Path:
        return self.tmp / "cache" / "tools" / "bin" / "evcxr_jupyter"

    def test_the_prebuilt_binary_is_downloaded_verified_and_installed(self):
        api = self.release("good", self.good)
        rc, out, _ = self.run_step(api, "--resolve-only")
        self.assertEqual(rc, 0, out)
        self.assertIn("prebuilt release binary (SHA-256 verified)", out)
        self.assertEqual(self.installed().read_bytes(), REAL_EVCXR.read_bytes())
        # It runs: without arguments evcxr_jupyter prints how to install the kernel spec.
        hello = subprocess.run([str(self.installed())], capture_output=True, text=True, timeout=30)
        self.assertIn("--install", hello.stdout + hello.stderr)
        # A second run keeps it, with nothing reachable.
        rc, out, _ = self.run_step(f"http://127.0.0.1:{free_port()}", "--resolve-only")
        self.assertEqual(rc, 0, out)
        self.assertIn("prebuilt release binary (SHA-256 verified)", out)
        self.assertNotIn("looking up", out)

    def test_a_wrong_digest_is_refused_deleted_and_setup_falls_back(self):
        rc, out, _ = self.run_step(self.release("good", "0" * 64), "--resolve-only")
        self.assertEqual(rc, 10, out)  # 10: the next option, compiling it, is needed
        self.assertIn("SHA-256 mismatch", out)
        self.assertIn("deleted", out)
        self.assertFalse(self.installed().exists())

    def test_an_asset_without_a_recorded_digest_is_not_used(self):
        rc, out, _ = self.run_step(self.release("good", None), "--resolve-only")
        self.assertEqual(rc, 10, out)
        self.assertIn("no SHA-256 digest", out)
        self.assertFalse(self.installed().exists())

    def test_a_binary_that_does_not_run_here_is_not_installed_and_the_reason_is_shown(self):
        rc, out, _ = self.run_step(self.release("broken", self.broken), "--resolve-only")
        self.assertEqual(rc, 10, out)
        self.assertIn("does not run here", out)
        self.assertIn("GLIBC_2.99", out)
        self.assertFalse(self.installed().exists())

    def test_an_unreachable_release_falls_back_within_seconds(self):
        rc, out, took = self.run_step(f"http://127.0.0.1:{free_port()}", "--resolve-only")
        self.assertEqual(rc, 10, out)
        self.assertIn("not reachable", out)
        self.assertLess(took, 5, "a refused connection should fall back at once")

    def run_with_toolchain(self, with_rustup: bool) -> tuple[int, str, Path]:
        """get-evcxr.sh over a Rust whose sysroot has no library source (a fake rustc), with or
        without a rustup, which here only records what it was asked and adds the source."""
        sysroot = self.tmp / "sysroot"
        fake = self.tmp / "fake-bin"
        fake.mkdir()
        (fake / "rustc").write_text(f"#!/bin/sh\necho {sysroot}\n")
        asked = self.tmp / "rustup-args"
        if with_rustup:
            (fake / "rustup").write_text(
                f"#!/bin/sh\necho \"$@\" > {asked}\nmkdir -p {sysroot}/lib/rustlib/src/rust/library\n")
        for f in fake.iterdir():
            f.chmod(0o755)
        # HOME elsewhere, so env.sh puts no real ~/.cargo/bin (rustc, rustup) before the fakes.
        env = dict(os.environ, HOME=str(self.tmp), LAB_CACHE=str(self.tmp / "cache"),
                   LAB_EVCXR_RELEASE_API=f"http://127.0.0.1:{free_port()}", PATH=f"{fake}:/usr/bin:/bin")
        p = subprocess.run([str(GET_EVCXR), "--resolve-only"], env=env, capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout + p.stderr, asked

    def test_a_missing_standard_library_source_is_added_with_rustup(self):
        rc, out, asked = self.run_with_toolchain(with_rustup=True)
        self.assertTrue(asked.exists(), out)
        self.assertEqual(asked.read_text().split(), ["component", "add", "rust-src"])
        self.assertEqual(rc, 10, out)  # then on to the binary, here unreachable

    def test_a_missing_standard_library_source_without_rustup_names_the_fix(self):
        rc, out, _ = self.run_with_toolchain(with_rustup=False)
        self.assertEqual(rc, 1, out)
        self.assertIn("rustup component add rust-src", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
