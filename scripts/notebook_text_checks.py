"""Checks of the notebooks' prose that need no lab: glossary links, answered predictions, takeaways.

scripts/check-docs.py runs them as its `glossary`, `predictions` and `takeaways` checks, and
scripts/link-glossary.py adds the glossary links with the same matcher, so what the linker writes
is exactly what the check asks for. Each check's core takes notebook paths and returns problem
lines, so scripts/test_check_docs.py can run it on small notebooks of its own.
The markdown helpers the `links` check also uses (fences, code spans, GitHub's heading ids) live
here too: one definition of a heading's anchor for both.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "docs" / "executed"
GLOSSARY = ROOT / "docs" / "glossary.md"
# A notebook links the glossary relative to notebooks/ (publish-executed.py rewrites it for docs/executed/).
GLOSSARY_HREF = "../docs/glossary.md"

FENCE_RE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^\s`]*)")
INLINE_CODE_RE = re.compile(r"(`+)(?:(?!\1).)+?\1")
HEADING_RE = re.compile(r"^\s{0,3}#{1,6}\s")
H2_RE = re.compile(r"^\s{0,3}##\s", re.M)


# ----- shared helpers ------------------------------------------------------------------------

def heading_ids(text: str) -> set[str]:
    """The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces → -."""
    ids: set[str] = set()
    fence = None
    for line in text.splitlines():
        m = FENCE_RE.match(line)
        if fence:
            if m and m.group(2)[0] == fence[0] and not m.group(3):
                fence = None
            continue
        if m:
            fence = m.group(2)
            continue
        h = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not h:
            continue
        title = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", h.group(1))   # links → their text
        slug = re.sub(r"[^\w\- ]", "", title.replace("`", "").replace("*", "").lower()).replace(" ", "-")
        base, n = slug, 1
        while slug in ids:  # repeated headings get -1, -2, …
            slug, n = f"{base}-{n}", n + 1
        ids.add(slug)
    return ids


def cell_text(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def read_notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def notebook_json(nb: dict) -> str:
    """The repository's notebook format (nbformat's, keys kept in their order): a rewrite that
    changes no cell leaves the file byte for byte as it was."""
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def set_cell_text(cell, text: str) -> None:
    # nbformat stores source as a list of lines, each keeping its newline.
    cell["source"] = text.splitlines(keepends=True) if isinstance(cell.get("source"), list) else text


def source_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


# ----- the glossary's terms ------------------------------------------------------------------

@dataclass(frozen=True)
class Term:
    """A heading of docs/glossary.md and the words that name it in the notebooks' prose.

    A form in lower case matches in any case ("Region" too); one with a capital matches exactly
    (TSO, PD). `avoid` lists phrases where a form means something else (a node's "own store" is
    not a TiKV store): a match inside one of them is no use of the term.
    """
    anchor: str
    forms: tuple[str, ...]
    avoid: tuple[str, ...] = ()


# The one map from glossary entry to its surface forms. Longer forms first where one contains
# another, so the longest name is linked ("p50/p95/p99" rather than its "p50").
TERMS: tuple[Term, ...] = (
    Term("pd-placement-driver", ("placement driver", "PD")),
    Term("tso-timestamp-oracle", ("timestamp oracle", "TSO")),
    Term("region", ("regions", "region")),
    Term("store", ("stores", "store"),
         avoid=("own store", "local store", "in-memory store", "shared store", "separate stores",
                "transactional store", "stores a link", "that store the keys")),
    Term("learner-and-tombstone", ("learner", "tombstone")),
    Term("raft-and-leader", ("Raft", "leaders", "leader")),
    Term("percolator", ("Percolator",)),
    Term("two-phase-commit-2pc", ("two-phase commit", "2PC", "prewrite/commit")),
    Term("one-phase-commit-1pc", ("one-phase commit", "one-phase-commit", "1PC")),
    Term("async-commit", ("async commit", "async-commit")),
    Term("snapshot-isolation", ("snapshot isolation",)),
    Term("write-skew", ("write skew",)),
    Term("transaction-conflict-retryable", ("transaction conflicts", "transaction conflict",
                                            "conflicts", "conflict")),
    Term("versionstamp", ("versionstamps", "versionstamp")),
    Term("archived-node-membership", ("ARCHIVED",)),
    Term("fault-proxy", ("fault proxies", "fault proxy")),
    Term("jepsen-bank-test", ("Jepsen",)),
    Term("p50-p95-p99-percentiles", ("p50/p95/p99", "p50", "p95", "p99", "percentiles", "percentile")),
    Term("hdr-histogram", ("HDR histograms", "HDR histogram")),
    Term("closed-loop-and-open-loop", ("closed loop", "closed-loop", "open loop", "open-loop")),
    Term("think-time", ("think time",)),
    Term("littles-law", ("Little's law", "Little’s law")),
    Term("rss-and-private-memory-rssanon", ("private memory", "RssAnon", "RSS")),
)


def _form_re(form: str) -> str:
    words = [re.escape(w) for w in form.split()]
    return r"\s+".join(words)


def term_re(term: Term) -> re.Pattern:
    """One pattern for all of a term's forms: a whole word (no letter, digit or hyphen either side)."""
    exact = [_form_re(f) for f in term.forms if f != f.lower()]
    anycase = [_form_re(f) for f in term.forms if f == f.lower()]
    alts = exact + [f"(?i:{a})" for a in anycase]
    return re.compile(r"(?<![\w-])(?:" + "|".join(alts) + r")(?![\w-])")


# Markdown links and images (the whole construct), to find the text a link already covers.
LINK_RE = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
HTML_RE = re.compile(r"<!--.*?-->|<[A-Za-z/][^>\n]*>", re.S)
URL_RE = re.compile(r"\bhttps?://\S+")
GLOSSARY_LINK_RE = re.compile(r"(?:^|/)glossary\.md#([\w-]+)$")


def protected_spans(text: str) -> tuple[list[tuple[int, int]], list[tuple[int, int, str]]]:
    """Where no term may be linked: fenced code, code spans, headings, HTML, URLs and existing
    links. Also returns the text span and anchor of every link into the glossary."""
    spans: list[tuple[int, int]] = []
    glossary_links: list[tuple[int, int, str]] = []
    pos, fence = 0, None
    for line in text.splitlines(keepends=True):
        m = FENCE_RE.match(line)
        end = pos + len(line)
        if fence:
            spans.append((pos, end))
            if m and m.group(2)[0] == fence[0] and not m.group(3):
                fence = None
        elif m:
            fence = m.group(2)
            spans.append((pos, end))
        elif HEADING_RE.match(line) or re.match(r"^\s{0,3}<", line) or re.match(r"^\s{0,3}\[[^\]]+\]:", line):
            spans.append((pos, end))  # a heading, an HTML block's line, a reference definition
        pos = end
    for regex in (INLINE_CODE_RE, HTML_RE, URL_RE):
        spans += [m.span() for m in regex.finditer(text)]
    for m in LINK_RE.finditer(text):
        spans.append(m.span())
        g = GLOSSARY_LINK_RE.search(m.group(2))
        if g and not m.group(0).startswith("!"):
            glossary_links.append((m.start(1), m.end(1), g.group(1)))
    return spans, glossary_links


@dataclass
class Use:
    cell: int       # index of the markdown cell in the notebook
    start: int      # offsets into the cell's text
    end: int
    linked: bool    # already inside a link to the term's glossary entry


def first_use(cells: list[dict], term: Term) -> Use | None:
    """The first place a notebook's markdown names the term, outside code, headings, HTML and
    other links; a link to this term's entry counts as a (linked) use."""
    pattern = term_re(term)
    avoid = [re.compile(_form_re(a), re.I) for a in term.avoid]
    for i, cell in enumerate(cells):
        if cell.get("cell_type") != "markdown":
            continue
        text = cell_text(cell)
        spans, glossary_links = protected_spans(text)
        avoided = [m.span() for a in avoid for m in a.finditer(text)]
        for m in pattern.finditer(text):
            s, e = m.span()
            if any(a <= s and e <= b for a, b, anchor in glossary_links if anchor == term.anchor):
                return Use(i, s, e, True)
            if any(s < b and a < e for a, b in spans) or any(a <= s and e <= b for a, b in avoided):
                continue
            return Use(i, s, e, False)
    return None


def link_first_uses(nb: dict) -> list[tuple[int, str]]:
    """Links each term's first use in the notebook to its glossary entry, in place.
    Returns (cell, linked text) of every link added; a second run adds none."""
    added = []
    cells = nb.get("cells", [])
    for term in TERMS:
        use = first_use(cells, term)
        if use is None or use.linked:
            continue
        text = cell_text(cells[use.cell])
        words = text[use.start:use.end]
        set_cell_text(cells[use.cell],
                      f"{text[:use.start]}[{words}]({GLOSSARY_HREF}#{term.anchor}){text[use.end:]}")
        added.append((use.cell, words))
    return added


def glossary_problems(paths: list[Path], glossary: Path = GLOSSARY) -> list[str]:
    """The `glossary` check: the map and docs/glossary.md agree, and each notebook links every
    term's first use."""
    problems = []
    text = glossary.read_text(encoding="utf-8") if glossary.exists() else ""
    ids = heading_ids(text)
    mapped = {t.anchor for t in TERMS}
    for t in TERMS:
        if t.anchor not in ids:
            problems.append(f"  scripts/notebook_text_checks.py: TERMS names #{t.anchor}, which is no heading of {glossary.name}")
    level2 = heading_ids("\n".join(l for l in text.splitlines() if re.match(r"^##\s", l)))
    for anchor in sorted(level2 - mapped):
        problems.append(f"  {glossary.name}: the entry #{anchor} has no forms in TERMS (scripts/notebook_text_checks.py)")
    for path in paths:
        cells = read_notebook(path).get("cells", [])
        for term in TERMS:
            use = first_use(cells, term)
            if use and not use.linked:
                words = " ".join(cell_text(cells[use.cell])[use.start:use.end].split())
                problems.append(f"  {path.name}:cell {use.cell}: first use of \"{words}\" is not linked to "
                                f"the glossary (#{term.anchor}); run scripts/link-glossary.py")
    return problems


# ----- predictions ---------------------------------------------------------------------------

PREDICT_MARK = "✍️"
# An answer line: optional leading whitespace and symbols (emoji, ✔, →, *, -), then "Answer:"
# and some text. Read from a code cell's stream output, or its text/plain or text/markdown result.
ANSWER_RE = re.compile(r"^[\W_]*Answer:\s*\S", re.M)


def output_text(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        if "text" in o:
            parts.append(cell_text({"source": o["text"]}))
        for kind in ("text/plain", "text/markdown"):
            if kind in o.get("data", {}):
                parts.append(cell_text({"source": o["data"][kind]}))
    return "\n".join(parts)


def is_prediction(cell) -> bool:
    text = cell_text(cell)
    return cell.get("cell_type") == "markdown" and PREDICT_MARK in text and "Predict" in text


def first_words(text: str, n: int = 8) -> str:
    """The prompt's opening words, without markdown markup, for a readable problem line."""
    plain = re.sub(r"[*_`>]", "", text[text.find(PREDICT_MARK) + len(PREDICT_MARK):])
    words = plain.split()
    return " ".join(words[:n]) + ("…" if len(words) > n else "")


def prediction_problems(source: Path, executed: Path) -> list[str]:
    """The `predictions` check for one notebook: every markdown cell with "✍️" and "Predict" is
    followed, within its section (up to the next markdown cell with a `## ` heading, or the end;
    a `## ` heading after the prompt in its own cell ends it there), by a code cell whose output
    in the executed copy has an ANSWER_RE line."""
    name = source.name
    if not executed.exists():
        return [f"  docs/executed/{name} is missing: the predictions' answers are read from it"]
    src, ex = read_notebook(source)["cells"], read_notebook(executed)["cells"]
    # The reference solutions' runs that run-notebooks.py adds (metadata lab_injected) are not
    # cells of the notebook.
    ex_code = [c for c in ex if c.get("cell_type") == "code" and not c.get("metadata", {}).get("lab_injected")]
    if [cell_text(c) for c in src if c.get("cell_type") == "code"] != [cell_text(c) for c in ex_code]:
        return [f"  docs/executed/{name}: its code differs from notebooks/{name}; regenerate it (scripts/test.sh)"]
    code_no = {}  # source cell index → its ordinal among code cells (its cell in the executed copy)
    for i, c in enumerate(src):
        if c.get("cell_type") == "code":
            code_no[i] = len(code_no)
    problems = []
    for i, cell in enumerate(src):
        if not is_prediction(cell):
            continue
        text = cell_text(cell)
        answered = False
        if not H2_RE.search(text, text.find(PREDICT_MARK)):
            for j in range(i + 1, len(src)):
                c = src[j]
                if c.get("cell_type") == "markdown" and H2_RE.search(cell_text(c)):
                    break
                if c.get("cell_type") == "code" and ANSWER_RE.search(output_text(ex_code[code_no[j]])):
                    answered = True
                    break
        if not answered:
            problems.append(f"  {name}:cell {i}: prediction \"{first_words(text)}\" has no \"Answer:\" output in its section")
    return problems


# ----- takeaways -----------------------------------------------------------------------------

TAKEAWAY_RE = re.compile(r"^\s{0,3}##\s+Takeaway\b")
BULLET_RE = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
ASSERTED_RE = re.compile(r"<!--\s*asserted:\s*(.*?)\s*-->\s*$", re.S)
# Words that name an outcome of a run: what a machine, a load or a fault can change.
OUTCOME_RES = (
    re.compile(r"\b(?:errors?|fail(?:s|ed|ing|ures?)?|lost|loss|lose|loses|losing|conflicts?|timeouts?"
               r"|faster|slower|stale|outages?)\b", re.I),
    re.compile(r"\b(?:under|over|within|above|below)\b[^.;\n]{0,40}?\b(?:limit|bar|bound|line)s?\b", re.I),
    re.compile(r"\bstay(?:s|ed)?\s+within\b", re.I),
    re.compile(r"\bno\b[^.;]{0,60}?\bwere\b", re.I),
)
ASSERT_START_RE = re.compile(r"\bassert(?:_eq|_ne)?!\s*\(")
RUST_TOKEN_RE = re.compile(r'r(#*)".*?"\1|"(?:\\.|[^"\\])*"|\'(?:\\.|[^\\\'])\'|//[^\n]*|[()]', re.S)


def assert_texts(code: str) -> list[str]:
    """The full text of every assert!/assert_eq!/assert_ne! in Rust code, parentheses balanced
    (strings, chars and comments skipped when counting)."""
    out = []
    for m in ASSERT_START_RE.finditer(code):
        depth = 1
        for tok in RUST_TOKEN_RE.finditer(code, m.end()):
            if tok.group(0) == "(":
                depth += 1
            elif tok.group(0) == ")":
                depth -= 1
                if depth == 0:
                    out.append(code[m.start():tok.end()])
                    break
    return out


def takeaway_bullets(cells: list[dict]) -> list[tuple[int, str]]:
    """(cell, text) of each bullet in the `## Takeaway` section: from that heading to the next
    heading of level 1 or 2, across markdown cells (code cells in it print their own bullets)."""
    bullets: list[tuple[int, str]] = []
    inside = False
    for i, cell in enumerate(cells):
        if cell.get("cell_type") != "markdown":
            continue
        current: list[str] | None = None
        for line in cell_text(cell).splitlines() + [""]:
            if TAKEAWAY_RE.match(line):
                inside = True
                continue
            if inside and re.match(r"^\s{0,3}#{1,2}\s", line):
                inside = False
            if current is not None and (not line.strip() or BULLET_RE.match(line) or HEADING_RE.match(line)):
                bullets.append((i, " ".join(current)))
                current = None
            if not inside:
                continue
            if BULLET_RE.match(line):
                current = [BULLET_RE.sub("", line, count=1).strip()]
            elif current is not None:
                current.append(line.strip())
    return bullets


def outcome_word(bullet: str) -> str | None:
    text = ASSERTED_RE.sub("", bullet)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's target is not prose
    text = text.replace("*", "")
    found = [m for r in OUTCOME_RES if (m := r.search(text))]
    if not found:
        return None
    return " ".join(min(found, key=lambda m: m.start()).group(0).split())


def takeaway_problems(source: Path) -> list[str]:
    """The `takeaways` check for one notebook: a static takeaway bullet that names an outcome ends
    with `<!-- asserted: TEXT -->`, TEXT verbatim inside an assert of the notebook's code."""
    cells = read_notebook(source)["cells"]
    asserts = [a for c in cells if c.get("cell_type") == "code" for a in assert_texts(cell_text(c))]
    problems = []
    for i, bullet in takeaway_bullets(cells):
        word = outcome_word(bullet)
        if not word:
            continue
        shown = " ".join(ASSERTED_RE.sub("", bullet).split())
        shown = shown if len(shown) <= 70 else shown[:69] + "…"
        marker = ASSERTED_RE.search(bullet)
        if not marker:
            problems.append(f"  {source.name}: takeaway bullet \"{shown}\" names an outcome ({word}) but no "
                            f"assert backs it — print it from the run or mark <!-- asserted: … -->")
        elif not any(marker.group(1) in a for a in asserts):
            problems.append(f"  {source.name}: takeaway bullet \"{shown}\" is marked asserted: "
                            f"\"{marker.group(1)}\", but no assert!/assert_eq!/assert_ne! of the notebook contains that text")
    return problems
