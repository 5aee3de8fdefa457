"""The committed notebooks hold line by line (``scripts/notebook_checks.py`` says what is checked):
numbers in prose come from the run, every exercise has a folded worked solution that was executed,
every notebook carries the course's scaffolding, and the outputs are clean."""

from __future__ import annotations

import nbformat
import pytest
from conftest import ROOT, load_script

checks = load_script("scripts", "notebook_checks")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NAMES = [p.name for p in NOTEBOOKS]


def test_prose_numbers_are_caught():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            "LA-LoRA gains 14.7 points (Liu et al. 2026), 85 % of 1,046 lines, 3 seeds; see 05."
        ),
        nbformat.v4.new_code_cell("x = 1046", outputs=[nbformat.v4.new_output("stream", text="gain 14.70\n")]),
    ]
    assert checks.missing_numbers(nb) == [(0, "14.7"), (0, "85")]
    nb.metadata["lalora"] = {"constants": ["14.7", "85"]}
    assert checks.missing_numbers(nb) == []


def test_a_bare_notebook_fails_every_check():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 01 · x"),
        nbformat.v4.new_markdown_cell("## Exercises\n1. a\n2. b"),
        nbformat.v4.new_code_cell("# Solution to exercise 1", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell(
            "x", outputs=[nbformat.v4.new_output("stream", name="stderr", text="/work/x.py: DeprecationWarning\n")]
        ),
    ]
    found = checks.problems(nb, "01_x.ipynb", ["00_a.ipynb", "01_x.ipynb", "02_b.ipynb"])
    for expected in (
        "1 solution cells",
        "a Colab badge",
        "learning goals",
        "References",
        "takeaways",
        "00_a.ipynb",
        "02_b.ipynb",
        "machine path",
        "library warning",
    ):
        assert any(expected in line for line in found), expected


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_holds_line_by_line(path):
    found = checks.problems(nbformat.read(path, as_version=4), path.name, NAMES)
    assert not found, f"{path.name}:\n" + "\n".join(found)


def test_the_primer_names_the_paper_and_its_ancestors():
    nb = nbformat.read(ROOT / "notebooks" / "00_primer.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "Rethinking LoRA for Privacy-Preserving Federated Learning in Large Models" in text
    assert "arxiv.org/abs/2602.19926" in text
    for cited in ("Abadi", "McMahan", "Hu et al", "Mironov", "FFA-LoRA", "RoLoRA"):
        assert cited in text, cited
