#!/usr/bin/env python3
"""The documentation test: keeps README.md, docs/ and the notebooks' text true to the code.

Eight checks, one summary line each; the exit status is non-zero when any fails:

1. links     every relative link and image in README.md, docs/*.md and the notebooks' markdown
             cells points at a file or folder that exists, and an anchor into a .md file
             (`#port-conflicts`) at one of its headings (GitHub's heading ids).
2. diagram   docs/architecture.svg carries the sha256 of docs/architecture.dot it was rendered
             from (scripts/render-diagram.sh writes it), and Graphviz `dot` renders the source
             without error (when `dot` is installed).
3. runnable  every fenced block marked runnable in README.md and docs/*.md runs against a real
             lab this script starts with the `lab` CLI (2 nodes over the embedded storage
             node, ephemeral ports, its own LAB_DIR under target/), and exits 0.
4. rustdoc   `cargo doc -p poc_helpers --no-deps` passes with -D warnings -D missing_docs.
5. notebooks what can be checked mechanically of the notebooks' text and published outputs:
             - docs/executed/ holds an executed copy of every notebook (scripts/publish-executed.py,
               run by test.sh), with the notebook's exact code, every code cell run, and no path
               of the machine that ran it;
             - every reference line a chart draws (the spec's limits, the PR-003 bound: charts
               record their labels in the SVG) is named in that notebook's markdown, and every
               bold `**spec PR-…**` / `**PR-… bound**` a markdown cell names is drawn by a chart;
             - markdown states no measured-looking number (ms, MB, ops/s, ×, % …) other than the
               spec's limits and the lab's own settings listed in STATED: a number that depends
               on the machine is printed by a cell from the run instead.
6. glossary  docs/glossary.md has one `##` entry per term of TERMS (scripts/notebook_text_checks.py,
             the one map of terms and the words that name them), and in every notebook the first
             markdown use of each term, outside code, headings, HTML and other links, is a link
             to its entry. scripts/link-glossary.py adds the missing links.
7. predictions  every markdown cell with "✍️" and "Predict" is answered within its section (up to
             the next markdown cell with a `## ` heading, or the notebook's end): a code cell there
             has, in its output in docs/executed/, a line that starts with "Answer:" and some text,
             after optional whitespace and symbols (emoji, ✔, →, *, -). Outputs read: the stream
             text and the text/plain or text/markdown of results and displays.
8. takeaways every static bullet of a notebook's `## Takeaway` section (to the next level-1 or -2
             heading) that names an outcome (error, fail, lost/lose, conflict, timeout, faster,
             slower, stale, outage, under/over/within a limit or bar, "no … were") ends with
             `<!-- asserted: TEXT -->`, TEXT verbatim inside an assert!/assert_eq!/assert_ne! of
             that notebook's code; otherwise a cell should print the bullet from the run.
6–8 need no lab or build (7 reads the executed copies); scripts/test_check_docs.py tests 7 and 8
on small notebooks of its own.

Marking a block runnable — an HTML comment on the line right before the fence:

    <!-- runnable -->            ```bash / sh / python / javascript   runs against the lab
    <!-- runnable: no-lab -->    ```bash / sh   runs with no lab up (it manages labs itself)
    <!-- same-as: PATH -->       ```rust   its text must appear verbatim in the file PATH

Blocks run one by one, in document order, each in a fresh process (no shared shell
variables), so every block must be complete on its own; the database state they create
carries over to later blocks of the same file, and every file starts with a fresh lab.
Before a block runs, `127.0.0.1:8000`, `localhost:8001`, `--base-port 8000`, … are rewritten
to the ports node-a, node-b, … really got, and `127.0.0.1:2379` to the storage node's, so the
docs can show the ports a learner sees (no-lab blocks are not rewritten). Blocks see LAB_DIR
and LAB_BASE_PORT=ephemeral, so `lab status`, `lab sql b …` (default lab name) address the
test's lab, never one on 8000/8001. A block fails the check with its file:line when it exits
non-zero or runs longer than BLOCK_TIMEOUT.
Assert inside the block (grep -q, assert, throw) what the reader is told to expect.

Languages: bash/sh run with `bash -e -o pipefail` from the repository root; python with the
project's .venv; javascript as an ES module with node, from $LAB_CACHE/npm where this script
installs the pinned `surrealdb` npm package (JS_SDK_VERSION, which docs/api.md must name).

Run it (~15 s when everything is built; 2–3 minutes more when `lab` must be rebuilt first):

    .venv/bin/python scripts/check-docs.py            # all checks
    .venv/bin/python scripts/check-docs.py --only links,diagram
    python3 scripts/check-docs.py --only glossary,predictions,takeaways   # no lab, no .venv needed
    .venv/bin/python scripts/check-docs.py --only runnable -v   # and show every block's output

Needs: the release binaries (scripts/build-server.sh; this script refreshes `lab` and
`storage-node` with the same cargo command), .venv with scripts/requirements.txt, node + npm
for the JavaScript examples, and optionally Graphviz `dot`. The lab is always cleaned up, also
when a check fails or the script is interrupted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

# The notebook-prose checks and the markdown helpers they share with `links` (one heading-id rule).
from notebook_text_checks import (FENCE_RE, INLINE_CODE_RE, cell_text, glossary_problems, heading_ids,
                                  prediction_problems, source_notebooks, takeaway_problems)

ROOT = Path(__file__).resolve().parent.parent

# The official JavaScript SDK, pinned: docs/api.md's install command must name this version.
JS_SDK_VERSION = "2.0.8"
# One block may build the Rust SDK example (seconds when the workspace is built, minutes cold).
BLOCK_TIMEOUT = 900
RUNNABLE_LANGS = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python",
                  "py": "python", "javascript": "javascript", "js": "javascript"}

MARKER_RE = re.compile(r"^\s*<!--\s*(runnable|same-as)\s*(?::\s*(.*?))?\s*-->\s*$")
MD_LINK_RE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REF_DEF_RE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
HTML_REF_RE = re.compile(r"<(?:img|a|source)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.I)
SCHEME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
EXECUTED = ROOT / "docs" / "executed"
REF_LINES_RE = re.compile(r'<metadata data-lab="reference-lines">(.*?)</metadata>', re.S)
BOLD_REF_RE = re.compile(r"\*\*((?:spec )?PR-\d{3}[^*]*)\*\*")
# A number with a unit of measurement, as prose would state a measurement.
MEASURE_RE = re.compile(r"(?<![\w.-])(\d+(?:[.,]\d+)?)\s?(ms|µs|us|s|min|MB|GB|KiB|ops/s|×|x|%)(?![\w])")
# Numbers that hold on every machine, and why. Anything else measured-looking in markdown fails.
STATED = {
    "30 s": "PR-001's limit",
    "100 ms": "PR-002's limit",
    "200 MB": "PR-004's limit",
    "2 ×": "PR-003's k: the cluster's p99 growth against one node's, a stated definition",
    "100 %": "a definition: every core of the machine busy (04's CPU shares)",
    "90 %": "the workload's read share, a setting",
    "10 %": "the knee's definition (within 10 % of peak throughput)",
    "250 ms": "the sampler's interval, a setting",
    "3 s": "a run's length, a setting",
    "6 s": "a run's length, a setting",
    "1 ms": "a prediction choice offered to the reader (04)",
    "10 ms": "a prediction choice offered to the reader (04)",
    "6 s|8 s|12 s|14 s|15 s": "BankPlan::short()'s fault schedule (05), a setting",
    "300 ms": "the conflict race's pause (05), a setting",
    "20 ms": "the store-failover drill's write interval (05, section 9), a setting",
}
STATED = {k: why for keys, why in STATED.items() for k in keys.split("|")}
# "about 40 s" in a section heading or intro is a time hint for the reader, approximate by design.
TIME_HINT_RE = re.compile(r"about \d+(?:[.,]\d+)?\s?(?:s|min)\b", re.I)
SVG_SOURCE_RE = re.compile(r"<!-- source: docs/architecture\.dot sha256:([0-9a-f]+) -->")


def lab_env() -> dict[str, str]:
    """The environment scripts/env.sh sets up (CARGO_TARGET_DIR, SURREAL_BIN, PATH, …).

    Sourcing the real file keeps one definition of where builds and caches live.
    """
    out = subprocess.run(["bash", "-c", f'source "{ROOT}/scripts/env.sh" && env -0'],
                         check=True, capture_output=True).stdout
    env = {}
    for item in out.split(b"\0"):
        if b"=" in item:
            k, v = item.split(b"=", 1)
            env[k.decode()] = v.decode(errors="replace")
    return env


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


# ----- 1. links ------------------------------------------------------------------------------

def markdown_targets(text: str):
    """(line number, target) of every link and image outside code."""
    fence = None
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE_RE.match(line)
        if fence:
            if m and m.group(2)[0] == fence[0] and len(m.group(2)) >= len(fence) and not m.group(3):
                fence = None
            continue
        if m:
            fence = m.group(2)
            continue
        plain = INLINE_CODE_RE.sub("", line)
        for regex in (MD_LINK_RE, REF_DEF_RE, HTML_REF_RE):
            for t in regex.findall(plain):
                yield n, t


def check_links() -> tuple[bool, str]:
    sources: list[tuple[str, Path, str]] = []
    for f in doc_files():
        if f.exists():
            sources.append((rel(f), f.parent, f.read_text(encoding="utf-8")))
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted(EXECUTED.glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8")).get("cells", [])
        for i, cell in enumerate(cells):
            if cell.get("cell_type") == "markdown":
                src = cell.get("source", "")
                src = "".join(src) if isinstance(src, list) else src
                sources.append((f"{rel(nb)} cell {i}", nb.parent, src))
    broken, count = [], 0
    for where, base, text in sources:
        for line, target in markdown_targets(text):
            if SCHEME_RE.match(target):
                continue
            count += 1
            path, _, anchor = target.partition("#")
            path = path.split("?", 1)[0]
            if not path:  # an anchor in the same file
                if where.endswith(".md") and unquote(anchor) not in heading_ids(text):
                    broken.append(f"  {where}:{line}: {target}: no heading with that anchor here")
                continue
            resolved = (ROOT / path.lstrip("/")) if path.startswith("/") else (base / unquote(path))
            if not resolved.exists():
                broken.append(f"  {where}:{line}: {target} → {rel(resolved)} does not exist")
            elif anchor and resolved.suffix == ".md" and resolved.is_file() and \
                    unquote(anchor) not in heading_ids(resolved.read_text(encoding="utf-8")):
                broken.append(f"  {where}:{line}: {target}: {rel(resolved)} has no heading with that anchor")
    files = len({w.split(' cell ')[0] for w, _, _ in sources})
    if broken:
        print("\n".join(broken))
        return False, f"{len(broken)} of {count} relative links/images in {files} files are broken"
    return True, f"{count} relative links and images in {files} files resolve"


# ----- 2. diagram ----------------------------------------------------------------------------

def check_diagram() -> tuple[bool, str]:
    dot_src, svg = ROOT / "docs/architecture.dot", ROOT / "docs/architecture.svg"
    if not dot_src.exists() or not svg.exists():
        return False, "docs/architecture.dot or docs/architecture.svg is missing"
    want = hashlib.sha256(dot_src.read_bytes()).hexdigest()[:16]
    m = SVG_SOURCE_RE.search(svg.read_text(encoding="utf-8"))
    if not m:
        return False, "architecture.svg has no `source: … sha256:` comment: run scripts/render-diagram.sh"
    if m.group(1) != want:
        return False, (f"architecture.svg was rendered from another version of architecture.dot "
                       f"(sha256:{m.group(1)}, source is sha256:{want}): run scripts/render-diagram.sh")
    if not shutil.which("dot"):
        return True, f"architecture.svg matches its source (sha256:{want}); `dot` not installed, render not tried"
    r = subprocess.run(["dot", "-Tsvg", str(dot_src), "-o", os.devnull], capture_output=True, text=True)
    if r.returncode != 0 or "Error" in r.stderr:
        print(r.stderr)
        return False, "`dot` cannot render docs/architecture.dot"
    return True, f"architecture.svg matches its source (sha256:{want}) and `dot` renders it"


# ----- 3. runnable blocks --------------------------------------------------------------------

@dataclass
class Block:
    file: Path
    line: int          # line of the opening fence
    lang: str          # bash / python / javascript / rust
    kind: str          # runnable / same-as
    arg: str           # "" / "no-lab" / the path of same-as
    text: str

    @property
    def where(self) -> str:
        return f"{rel(self.file)}:{self.line}"


def find_blocks(path: Path) -> tuple[list[Block], list[str]]:
    blocks, errors = [], []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        marker = MARKER_RE.match(lines[i])
        if not marker:
            i += 1
            continue
        where = f"{rel(path)}:{i + 1}"
        fence = FENCE_RE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if not fence:
            errors.append(f"  {where}: `{lines[i].strip()}` is not followed by a code fence on the next line")
            i += 1
            continue
        indent, ticks, lang = fence.group(1), fence.group(2), fence.group(3).lower()
        body, j = [], i + 2
        while j < len(lines):
            close = FENCE_RE.match(lines[j])
            if close and close.group(2)[0] == ticks[0] and len(close.group(2)) >= len(ticks) and not close.group(3):
                break
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        kind, arg = marker.group(1), (marker.group(2) or "").strip()
        if kind == "runnable" and lang not in RUNNABLE_LANGS:
            errors.append(f"  {where}: runnable blocks must be bash, sh, python or javascript, not `{lang}`")
        elif kind == "runnable" and arg not in ("", "no-lab"):
            errors.append(f"  {where}: unknown option `{arg}` (use `<!-- runnable -->` or `<!-- runnable: no-lab -->`)")
        elif kind == "runnable" and arg == "no-lab" and RUNNABLE_LANGS[lang] != "bash":
            errors.append(f"  {where}: only bash blocks can be `no-lab`")
        elif kind == "same-as" and not arg:
            errors.append(f"  {where}: `same-as` needs a path, e.g. <!-- same-as: poc_helpers/examples/rust_sdk.rs -->")
        else:
            blocks.append(Block(path, i + 2, RUNNABLE_LANGS.get(lang, lang), kind, arg, "\n".join(body) + "\n"))
        i = j + 1
    return blocks, errors


class Lab:
    """The test's own lab, driven through the `lab` CLI exactly as the docs drive it."""

    NAME = "lab"  # the CLI's default, so `lab status` in a doc block finds it (LAB_DIR is ours)

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.root = ROOT / "target" / "docs-check"
        self.bin = Path(env["CARGO_TARGET_DIR"]) / "release" / "lab"
        self.env.update(LAB_DIR=str(self.root), LAB_BASE_PORT="ephemeral")
        self.ports: list[int] = []
        self.storage_port: int | None = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([str(self.bin), "--lab-dir", str(self.root), *args], env=self.env,
                           capture_output=True, text=True, timeout=180)
        if check and r.returncode != 0:
            raise RuntimeError(f"`lab {' '.join(args)}` failed:\n{r.stdout}{r.stderr}")
        return r

    def up(self) -> None:
        self.clean()
        self.cli("--name", self.NAME, "up", "--storage", "shared", "--ephemeral")
        state = json.loads((self.root / self.NAME / "state.json").read_text())
        self.ports = [n["port"] for n in state["nodes"]]
        self.storage_port = state.get("storage_port")

    @property
    def running(self) -> bool:
        return bool(self.ports)

    def clean(self) -> None:
        """Stops and deletes every lab under our root, including ones a block started."""
        if self.root.is_dir():
            for d in sorted(self.root.iterdir()):
                if (d / "state.json").exists():
                    self.cli("--name", d.name, "clean", check=False)
            shutil.rmtree(self.root, ignore_errors=True)
        self.ports, self.storage_port = [], None

    def rewrite(self, text: str) -> str:
        """Docs show node-a on 8000, node-b on 8001 …; the test's lab has other ports."""
        def node_port(m: re.Match) -> str:
            i = int(m.group(2)) - 8000
            return f"{m.group(1)}{self.ports[i]}" if i < len(self.ports) else m.group(0)
        text = re.sub(r"\b((?:127\.0\.0\.1|localhost):)(800\d)\b", node_port, text)
        text = re.sub(r"(--base-port[ =])(800\d)\b", node_port, text)
        if self.storage_port:
            text = re.sub(r"\b(127\.0\.0\.1|localhost):2379\b", rf"\g<1>:{self.storage_port}", text)
        return text


def ensure_js_sdk(env: dict[str, str]) -> tuple[Path, list[str]]:
    """Installs the pinned JS SDK once into $LAB_CACHE/npm; returns that folder and node's flags."""
    npm_dir = Path(env["LAB_CACHE"]) / "npm"
    pkg = npm_dir / "node_modules" / "surrealdb" / "package.json"
    installed = json.loads(pkg.read_text()).get("version") if pkg.exists() else None
    if installed != JS_SDK_VERSION:
        if not shutil.which("npm", path=env["PATH"]):
            raise RuntimeError("npm is missing: install Node.js 20+ (with npm) for the JavaScript examples")
        npm_dir.mkdir(parents=True, exist_ok=True)
        print(f"  installing surrealdb@{JS_SDK_VERSION} (npm) into {npm_dir}")
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--save-exact",
                        f"surrealdb@{JS_SDK_VERSION}"], cwd=npm_dir, env=env, check=True,
                       capture_output=True, timeout=600)
    # Node 22+ has a global WebSocket; Node 20 needs this flag for the SDK's ws:// engine.
    has_ws = subprocess.run(["node", "-p", "typeof WebSocket"], env=env, capture_output=True,
                            text=True).stdout.strip() == "function"
    return npm_dir, [] if has_ws else ["--experimental-websocket"]


def run_block(block: Block, lab: Lab, env: dict[str, str], tmp: Path, js) -> tuple[bool, str, str]:
    """Runs one block; returns (passed, why it failed, its output)."""
    text = lab.rewrite(block.text) if block.arg != "no-lab" else block.text
    cache = env["LAB_CACHE"]
    if cache != str(Path.home() / ".cache/surrealdb-lab"):
        # The docs name the default cache folder; follow a relocated one (XDG_CACHE_HOME, CI).
        text = text.replace("~/.cache/surrealdb-lab", cache).replace("$HOME/.cache/surrealdb-lab", cache)
    if block.lang == "bash":
        script = tmp / "block.sh"
        script.write_text(text)
        cmd, cwd = ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", str(script)], ROOT
    elif block.lang == "python":
        python = ROOT / ".venv/bin/python"
        if not python.exists():
            return False, "no .venv: run scripts/setup.sh (it installs scripts/requirements.txt)", ""
        script = tmp / "block.py"
        script.write_text(text)
        cmd, cwd = [str(python), str(script)], ROOT
    else:
        if not shutil.which("node", path=env["PATH"]):
            return False, "node is missing: install Node.js 20+ with npm", ""
        npm_dir, flags = js()
        # Inside the npm folder, so `import … from "surrealdb"` resolves to the pinned install.
        script = npm_dir / f".docs-check-{os.getpid()}.mjs"
        script.write_text(text)
        cmd, cwd = ["node", *flags, str(script)], npm_dir
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=BLOCK_TIMEOUT)
        ok, why = proc.returncode == 0, f"exit {proc.returncode}"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        ok, why = False, f"timed out after {BLOCK_TIMEOUT} s"
    except BaseException:
        # Interrupted: the block runs in its own session, so Ctrl-C never reached it.
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    finally:
        if block.lang == "javascript":
            script.unlink(missing_ok=True)
    return ok, "" if ok else why, out


def check_same_as(block: Block) -> str | None:
    target = ROOT / block.arg
    if not target.exists():
        return f"  {block.where}: same-as file {block.arg} does not exist"
    want = [l.rstrip() for l in block.text.strip("\n").splitlines()]
    have = [l.rstrip() for l in target.read_text(encoding="utf-8").splitlines()]
    for k in range(len(have) - len(want) + 1):
        if have[k:k + len(want)] == want:
            return None
    return f"  {block.where}: the block is no longer a verbatim part of {block.arg}: copy it again"


def check_runnable(env: dict[str, str], verbose: bool = False) -> tuple[bool, str]:
    all_blocks, problems = [], []
    for f in doc_files():
        if f.exists():
            blocks, errors = find_blocks(f)
            all_blocks += blocks
            problems += errors
    api = ROOT / "docs/api.md"
    if api.exists() and f"surrealdb@{JS_SDK_VERSION}" not in api.read_text(encoding="utf-8"):
        problems.append(f"  docs/api.md: its npm install command must pin surrealdb@{JS_SDK_VERSION}, "
                        "the version this test installs (update both together)")
    for b in all_blocks:
        if b.kind == "same-as" and (err := check_same_as(b)):
            problems.append(err)
    runnable = [b for b in all_blocks if b.kind == "runnable"]
    if not runnable:
        print("\n".join(problems))
        return not problems, "no runnable blocks found"

    surreal = Path(env["SURREAL_BIN"])
    if not surreal.exists():
        return False, f"{surreal} is missing: get it once with scripts/build-server.sh (seconds with the official archive, ~26 min from source)"
    # scripts/build-server.sh itself (the server setup chose, then the lab's own binaries, with the
    # same cargo packages as setup): a no-op when fresh, seconds after a small change.
    print("  refreshing the release binaries (lab, storage-node) …", flush=True)
    b = subprocess.run([str(ROOT / "scripts" / "build-server.sh")], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    if b.returncode != 0:
        print(b.stderr[-4000:])
        return False, "building the lab's release binaries failed"

    lab = Lab(env)
    js_state: dict = {}

    def js():
        if "v" not in js_state:
            js_state["v"] = ensure_js_sdk(env)
        return js_state["v"]

    passed, t0 = 0, time.monotonic()
    with tempfile.TemporaryDirectory(prefix="check-docs-") as tmp:
        try:
            current = None
            for block in runnable:
                if block.file != current:
                    # A fresh lab per file: one file's data never leaks into another's examples.
                    current = block.file
                    lab.clean()
                if block.arg == "no-lab":
                    lab.clean()
                elif not lab.running:
                    lab.up()
                    print(f"  lab up for {rel(block.file)}: nodes on {', '.join(map(str, lab.ports))}, "
                          f"storage node on {lab.storage_port} (LAB_DIR={rel(lab.root)})", flush=True)
                started = time.monotonic()
                ok, why, out = run_block(block, lab, env, Path(tmp), js)
                took = time.monotonic() - started
                if ok:
                    passed += 1
                    print(f"  ok    {block.where} {block.lang} ({took:.1f} s)", flush=True)
                    if verbose:
                        print("\n".join("        " + l for l in out.rstrip().splitlines()), flush=True)
                else:
                    problems.append(f"  {block.where}: {block.lang} block failed ({why})")
                    print(f"  FAIL  {block.where} {block.lang} ({why}, {took:.1f} s); its output:")
                    print("\n".join("        " + l for l in out.rstrip().splitlines()[-40:]), flush=True)
                if block.arg == "no-lab":
                    lab.clean()
        except Exception as e:  # a lab that cannot start fails the check, with the reason
            problems.append(f"  {e}")
        finally:
            lab.clean()
    if problems:
        print("\n".join(problems))
        return False, f"{passed} of {len(runnable)} runnable blocks passed; see the problems above"
    return True, (f"{passed} runnable blocks passed against a live lab "
                  f"({time.monotonic() - t0:.0f} s); same-as blocks match their files")


# ----- 4. rustdoc ----------------------------------------------------------------------------

def check_rustdoc(env: dict[str, str]) -> tuple[bool, str]:
    denv = dict(env, RUSTDOCFLAGS="-D warnings -D missing_docs")
    r = subprocess.run(["cargo", "doc", "--locked", "-p", "poc_helpers", "--no-deps"], cwd=ROOT,
                       env=denv, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr[-6000:])
        return False, "rustdoc of poc_helpers fails with -D warnings -D missing_docs (see above)"
    return True, "cargo doc -p poc_helpers --no-deps is clean with -D warnings -D missing_docs"


# ----- 5. notebooks --------------------------------------------------------------------------

def svg_outputs(cell) -> list[str]:
    out = []
    for o in cell.get("outputs", []):
        v = o.get("data", {}).get("image/svg+xml")
        if v:
            out.append("".join(v) if isinstance(v, list) else v)
    return out


def check_notebooks() -> tuple[bool, str]:
    problems: list[str] = []
    sources = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    lines_checked = numbers_checked = 0
    for src_path in sources:
        src = json.loads(src_path.read_text(encoding="utf-8"))
        name = src_path.name
        markdown = "\n".join(cell_text(c) for c in src["cells"] if c["cell_type"] == "markdown")
        # Measured-looking numbers in the learner's markdown.
        for i, c in enumerate(src["cells"]):
            if c["cell_type"] != "markdown":
                continue
            text = INLINE_CODE_RE.sub("", TIME_HINT_RE.sub("", cell_text(c)))
            for m in MEASURE_RE.finditer(text):
                numbers_checked += 1
                stated = f"{m.group(1)} {m.group(2)}"
                if stated not in STATED:
                    problems.append(
                        f"  notebooks/{name} cell {i}: states \"{m.group(0)}\": print it from the run, "
                        f"or, if it holds on every machine, add it to STATED in scripts/check-docs.py with why")
        # The executed copy.
        ex_path = EXECUTED / name
        if not ex_path.exists():
            problems.append(f"  docs/executed/{name} is missing: run scripts/test.sh (or run-notebooks.py, then publish-executed.py)")
            continue
        raw = ex_path.read_text(encoding="utf-8")
        for private in {str(ROOT), os.path.expanduser("~")} - {"/"}:
            if private in raw:
                problems.append(f"  docs/executed/{name} contains the machine path {private}: publish it with scripts/publish-executed.py")
        ex = json.loads(raw)
        # The reference solutions' runs (metadata lab_injected, added by run-notebooks.py after
        # each exercise) are extra cells of the executed copy, not code of the notebook.
        code = lambda nb: [cell_text(c) for c in nb["cells"]  # noqa: E731
                           if c["cell_type"] == "code" and not c.get("metadata", {}).get("lab_injected")]
        if code(ex) != code(src):
            problems.append(f"  docs/executed/{name}: its code differs from notebooks/{name}; regenerate it (scripts/test.sh)")
            continue
        silent = [i for i, c in enumerate(ex["cells"]) if c["cell_type"] == "code" and c.get("execution_count") is None
                  and not c.get("metadata", {}).get("lab_injected")]
        if silent:
            problems.append(f"  docs/executed/{name}: code cells {silent} never ran")
        drawn: set[str] = set()
        for i, c in enumerate(ex["cells"]):
            for svg in svg_outputs(c):
                for m in REF_LINES_RE.finditer(svg):
                    for label in m.group(1).splitlines():
                        label = label.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
                        drawn.add(label)
                        lines_checked += 1
                        # The label's name: "spec PR-002" of "spec PR-002: 100 ms".
                        stem = re.split(r"[:=]", label)[0].strip()
                        if stem not in markdown:
                            problems.append(
                                f"  docs/executed/{name} cell {i}: the chart draws \"{label}\", but no markdown "
                                f"cell of notebooks/{name} names \"{stem}\"; explain the line in the text")
        for m in BOLD_REF_RE.finditer(markdown):
            ref = m.group(1).strip()
            if not any(label.startswith(ref) or ref.startswith(label.split(":")[0]) for label in drawn):
                problems.append(
                    f"  notebooks/{name}: the text names the line **{ref}**, but no chart of the executed copy "
                    f"draws it (drawn: {sorted(drawn) or 'none'})")
    if problems:
        print("\n".join(problems))
        return False, f"{len(problems)} problem(s) in the notebooks' text or published copies"
    return True, (f"{len(sources)} executed copies match their notebooks; {lines_checked} chart reference "
                  f"lines named in the text; {numbers_checked} stated numbers are limits or settings")


# ----- 6–8. glossary, predictions, takeaways (scripts/notebook_text_checks.py) ----------------

def report(problems: list[str], failed: str, passed: str) -> tuple[bool, str]:
    if problems:
        print("\n".join(problems))
        return False, failed.format(n=len(problems))
    return True, passed


def check_glossary() -> tuple[bool, str]:
    paths = source_notebooks()
    return report(glossary_problems(paths), "{n} problem(s): unlinked first uses or a glossary out of step with TERMS",
                  f"every term of docs/glossary.md is linked at its first use in {len(paths)} notebooks")


def check_predictions() -> tuple[bool, str]:
    paths = source_notebooks()
    problems = [p for nb in paths for p in prediction_problems(nb, EXECUTED / nb.name)]
    return report(problems, "{n} prediction(s) without an \"Answer:\" line in the executed copies",
                  f"every ✍️ prediction of {len(paths)} notebooks is answered by an output in its section")


def check_takeaways() -> tuple[bool, str]:
    paths = source_notebooks()
    problems = [p for nb in paths for p in takeaway_problems(nb)]
    return report(problems, "{n} static takeaway bullet(s) name an outcome no assert backs",
                  f"no static takeaway bullet of {len(paths)} notebooks names an unasserted outcome")


# ----- main ----------------------------------------------------------------------------------

CHECKS = ("links", "diagram", "runnable", "rustdoc", "notebooks", "glossary", "predictions", "takeaways")


def interrupted(*_):
    # SIGTERM (a CI timeout, `kill`) must still reach the `finally` that cleans the lab up.
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(CHECKS),
                    help=f"comma-separated subset of: {', '.join(CHECKS)}")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="also print the output of the blocks that pass")
    args = ap.parse_args()
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    if unknown := [c for c in only if c not in CHECKS]:
        ap.error(f"unknown check(s): {', '.join(unknown)}")
    env = lab_env()
    signal.signal(signal.SIGTERM, interrupted)
    results = []
    runners = {"links": check_links, "diagram": check_diagram,
               "runnable": lambda: check_runnable(env, args.verbose), "rustdoc": lambda: check_rustdoc(env), "notebooks": check_notebooks,
               "glossary": check_glossary, "predictions": check_predictions, "takeaways": check_takeaways}
    for name in CHECKS:
        if name not in only:
            continue
        print(f"==> {name}", flush=True)
        started = time.monotonic()
        try:
            ok, summary = runners[name]()
        except KeyboardInterrupt:
            results.append((name, False, "interrupted"))
            break
        except Exception as e:  # report, and still run the other checks
            ok, summary = False, f"{type(e).__name__}: {e}"
        results.append((name, ok, f"{summary} [{time.monotonic() - started:.0f} s]"))
    print()
    for name, ok, summary in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name:<11} {summary}")
    return 0 if results and all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
