#!/usr/bin/env python3
"""Tests of check-docs.py's notebook-prose checks (glossary, predictions, takeaways) on small
notebooks written to a temporary folder: each check must pass a notebook that follows its rule
and fail, with its message, one that breaks it, so a check that passes today's notebooks is
known to be able to fail. Needs no lab, no build and no .venv:

    python3 scripts/test_check_docs.py        (or: python3 -m unittest discover -s scripts -p 'test_check_docs.py')
"""
import json
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import notebook_text_checks as ntc  # noqa: E402


def md(text: str) -> dict:
    return {"cell_type": "markdown", "id": "m", "metadata": {}, "source": text.splitlines(keepends=True)}


def code(text: str, output: str | None = None) -> dict:
    outputs = [] if output is None else [{"name": "stdout", "output_type": "stream",
                                          "text": output.splitlines(keepends=True)}]
    return {"cell_type": "code", "execution_count": None if output is None else 1, "id": "c",
            "metadata": {}, "outputs": outputs, "source": text.splitlines(keepends=True)}


def notebook(cells: list[dict]) -> dict:
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


class Fixtures(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="check-docs-test-")
        self.tmp = Path(self._tmp.name)
        (self.tmp / "executed").mkdir()

    def tearDown(self):
        self._tmp.cleanup()

    def write(self, name: str, cells: list[dict], executed: list[dict] | None = None) -> Path:
        """The source notebook (outputs stripped) and, when given, its executed copy."""
        src = [dict(c, outputs=[], execution_count=None) if c["cell_type"] == "code" else c for c in cells]
        path = self.tmp / name
        path.write_text(ntc.notebook_json(notebook(src)), encoding="utf-8")
        if executed is not None:
            (self.tmp / "executed" / name).write_text(ntc.notebook_json(notebook(executed)), encoding="utf-8")
        return path


class Predictions(Fixtures):
    PROMPT = "## 1 · Race\n\n> ✍️ **Predict:** how many of the two transactions commit?\n"

    def check(self, cells):
        path = self.write("01_x.ipynb", cells, executed=cells)
        return ntc.prediction_problems(path, self.tmp / "executed" / path.name)

    def test_an_answer_printed_in_the_section_passes(self):
        self.assertEqual(self.check([md(self.PROMPT), code("race()", "race done\n✔ Answer: one commits, one conflicts\n")]), [])

    def test_an_answer_indented_or_after_an_emoji_passes(self):
        self.assertEqual(self.check([md(self.PROMPT), code("x", "  ➜ Answer: one\n")]), [])

    def test_a_prediction_without_an_answer_fails_with_its_cell_and_words(self):
        problems = self.check([md(self.PROMPT), code("race()", "1 committed, 1 conflict\n")])
        self.assertEqual(problems, ['  01_x.ipynb:cell 0: prediction "Predict: how many of the two transactions commit?" '
                                    'has no "Answer:" output in its section'])

    def test_an_answer_after_the_next_level_2_heading_does_not_count(self):
        cells = [md(self.PROMPT), code("race()", "done\n"), md("## 2 · Next\n"), code("y", "Answer: one\n")]
        self.assertEqual(len(self.check(cells)), 1)

    def test_a_level_3_heading_stays_in_the_section(self):
        cells = [md(self.PROMPT), md("### 1b · More\n"), code("y", "Answer: one\n")]
        self.assertEqual(self.check(cells), [])

    def test_answer_in_the_middle_of_a_line_or_empty_does_not_count(self):
        self.assertEqual(len(self.check([md(self.PROMPT), code("x", "the Answer: one\nAnswer:   \n")])), 1)

    def test_a_stale_executed_copy_is_reported(self):
        path = self.write("01_x.ipynb", [md(self.PROMPT), code("race()")],
                          executed=[md(self.PROMPT), code("old()", "Answer: one\n")])
        problems = ntc.prediction_problems(path, self.tmp / "executed" / path.name)
        self.assertIn("its code differs", problems[0])


class Takeaways(Fixtures):
    CODE = 'assert_eq!(errors, 0, "no errors at 100 clients: {errors}");'

    def check(self, bullets: str):
        return ntc.takeaway_problems(self.write("04_x.ipynb", [code(self.CODE), md("## Takeaway\n\n" + bullets + "\n## Cleanup\n")]))

    def test_a_bullet_without_an_outcome_passes(self):
        self.assertEqual(self.check("- Query nodes hold no data of their own.\n"), [])

    def test_an_outcome_marked_with_an_asserted_text_passes(self):
        self.assertEqual(self.check("- 100 clients ran with no errors. <!-- asserted: no errors at 100 clients -->\n"), [])

    def test_an_unasserted_outcome_fails_with_its_word(self):
        problems = self.check("- 100 clients ran with no errors;\n  only rare conflicts.\n")
        self.assertEqual(problems, ['  04_x.ipynb: takeaway bullet "100 clients ran with no errors; only rare conflicts." '
                                    'names an outcome (errors) but no assert backs it — print it from the run or mark '
                                    '<!-- asserted: … -->'])

    def test_a_marker_whose_text_no_assert_contains_fails(self):
        problems = self.check("- Nothing was lost. <!-- asserted: nothing lost -->\n")
        self.assertEqual(len(problems), 1)
        self.assertIn('no assert!/assert_eq!/assert_ne! of the notebook contains that text', problems[0])

    def test_limits_and_no_were_phrases_name_outcomes(self):
        self.assertEqual(ntc.outcome_word("Every node stayed under the **200 MB** memory bar."), "under the 200 MB memory bar")
        self.assertEqual(ntc.outcome_word("No acknowledged writes were missing."), "No acknowledged writes were")
        self.assertEqual(ntc.outcome_word("See [the failures](x.md#failures) of it."), "failures")
        self.assertIsNone(ntc.outcome_word("Record links are followed with a dot."))

    def test_bullets_after_the_section_are_not_takeaways(self):
        self.assertEqual(self.check("- Nodes are stateless.\n\n## Try it yourself\n\n- errors here are fine\n"), [])

    def test_assert_texts_balances_parentheses_in_strings(self):
        found = ntc.assert_texts('assert!(f(x) > 0, "a ) in a message: {}", g(")"));\nlet y = 1;')
        self.assertEqual(found, ['assert!(f(x) > 0, "a ) in a message: {}", g(")"))'])


class Glossary(Fixtures):
    TEXT = ("# TSO and PD\n\n"
            "The `TSO` in code, <!-- TSO in a comment -->, [a TSO link](https://example.org/TSO),\n"
            "then the TSO in prose; the TSO again. Each node's own store is not a store here.\n")

    def test_the_first_use_in_prose_is_linked_once_and_a_second_run_changes_nothing(self):
        path = self.write("02_x.ipynb", [md(self.TEXT), code("let tso = 1;"), md("The TSO and three stores.\n")])
        nb = ntc.read_notebook(path)
        added = ntc.link_first_uses(nb)
        self.assertIn((0, "TSO"), added)
        first = ntc.cell_text(nb["cells"][0])
        self.assertIn("then the [TSO](../docs/glossary.md#tso-timestamp-oracle) in prose; the TSO again.", first)
        self.assertIn("# TSO and PD\n", first)                    # headings untouched
        self.assertIn("`TSO`", first)                             # code untouched
        self.assertIn("<!-- TSO in a comment -->", first)         # HTML untouched
        self.assertIn("[a TSO link](https://example.org/TSO)", first)
        self.assertIn("not a [store](../docs/glossary.md#store) here", first)   # "own store" is avoided
        self.assertEqual(ntc.cell_text(nb["cells"][2]), "The TSO and three stores.\n")
        again = json.loads(ntc.notebook_json(nb))
        self.assertEqual(ntc.link_first_uses(again), [])
        self.assertEqual(ntc.notebook_json(again), ntc.notebook_json(nb))

    def test_the_check_fails_an_unlinked_first_use_and_passes_once_linked(self):
        path = self.write("02_x.ipynb", [md(self.TEXT)])
        problems = ntc.glossary_problems([path])
        self.assertTrue(any('02_x.ipynb:cell 0: first use of "TSO" is not linked' in p for p in problems), problems)
        nb = ntc.read_notebook(path)
        ntc.link_first_uses(nb)
        path.write_text(ntc.notebook_json(nb), encoding="utf-8")
        self.assertEqual(ntc.glossary_problems([path]), [])

    def test_every_term_is_an_entry_of_the_glossary_and_every_entry_a_term(self):
        glossary = self.tmp / "glossary.md"
        glossary.write_text("# Glossary\n\n## Store\n\n## Something new\n", encoding="utf-8")
        problems = ntc.glossary_problems([], glossary)
        self.assertTrue(any("#something-new has no forms in TERMS" in p for p in problems), problems)
        self.assertTrue(any("TERMS names #tso-timestamp-oracle" in p for p in problems), problems)
        self.assertEqual(ntc.glossary_problems([]), [])

    def test_the_repository_notebooks_round_trip_byte_for_byte(self):
        for path in ntc.source_notebooks():
            raw = path.read_text(encoding="utf-8")
            self.assertEqual(ntc.notebook_json(json.loads(raw)), raw, path.name)


if __name__ == "__main__":
    unittest.main(verbosity=2)
