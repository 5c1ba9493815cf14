#!/usr/bin/env python3
"""Tests that JupyterLab, started the lab's way (scripts/jupyter-lab.sh), shuts down the kernel of
a closed notebook and never the kernel of an open one.

Why: every Rust kernel holds ~1.5 GB, and closing a notebook's tab leaves its kernel running.
jupyter-lab.sh has Jupyter cull a kernel that no client is connected to after it has been idle
for LAB_KERNEL_CULL_IDLE seconds. Here that is 3 s (checked every second): one kernel with no
connection (a closed tab) must go, one with an open channel connection (an open tab) must stay
though it is just as idle. A real Jupyter server and real kernels (Python ones: the setting is the
server's, and they start in a second); ~15 s. Run by scripts/test.sh.
"""
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
from pathlib import Path

from tornado.ioloop import IOLoop
from tornado.websocket import websocket_connect

ROOT = Path(__file__).resolve().parent.parent
IDLE = 3
TOKEN = "cull-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cull(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.port = free_port()
        env = dict(os.environ, LAB_KERNEL_CULL_IDLE=str(IDLE), LAB_KERNEL_CULL_INTERVAL="1",
                   JUPYTER_RUNTIME_DIR=f"{self.tmp.name}/runtime",
                   JUPYTERLAB_WORKSPACES_DIR=f"{self.tmp.name}/ws")
        self.log = open(f"{self.tmp.name}/jupyter.log", "w+")
        self.server = subprocess.Popen(
            [str(ROOT / "scripts" / "jupyter-lab.sh"), "--no-browser", f"--ServerApp.port={self.port}",
             f"--IdentityProvider.token={TOKEN}", "--ServerApp.port_retries=0"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.api("GET", "/api/status")
                break
            except OSError:
                if self.server.poll() is not None or time.monotonic() > deadline:
                    self.fail(f"JupyterLab did not start:\n{self.server_log()}")
                time.sleep(0.3)

    def tearDown(self):
        os.killpg(self.server.pid, 15)
        self.server.wait(timeout=30)
        self.log.close()
        self.tmp.cleanup()

    def server_log(self) -> str:
        self.log.seek(0)
        return self.log.read()[-3000:]

    def api(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"token {TOKEN}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def kernels(self) -> set:
        return {k["id"] for k in self.api("GET", "/api/kernels")}

    def test_a_closed_notebooks_kernel_is_shut_down_and_an_open_ones_is_kept(self):
        closed = self.api("POST", "/api/kernels", {"name": "python3"})["id"]
        opened = self.api("POST", "/api/kernels", {"name": "python3"})["id"]
        loop = IOLoop.current()
        # What a notebook tab holds: a connection to its kernel's channels.
        conn = loop.run_sync(lambda: websocket_connect(
            f"ws://127.0.0.1:{self.port}/api/kernels/{opened}/channels?token={TOKEN}"))
        try:
            deadline = time.monotonic() + IDLE + 20
            while closed in self.kernels() and time.monotonic() < deadline:
                loop.run_sync(lambda: asyncio.sleep(0.5))  # keep the connection served
            alive = self.kernels()
            self.assertNotIn(closed, alive, f"the kernel no tab is connected to was not shut down after "
                                            f"{IDLE} s idle:\n{self.server_log()}")
            self.assertIn(opened, alive, f"the kernel of an open tab was shut down:\n{self.server_log()}")
            self.assertIn("Culling kernel", self.server_log())
        finally:
            conn.close()
            if opened in self.kernels():
                self.api("DELETE", f"/api/kernels/{opened}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
