"""Checks that a notebook holds line by line; run on a draft before executing it in ``cpu``.

* **Prose numbers.** Every number in a markdown cell (a decimal, a percentage, or an integer of two
  or more digits) must appear in one of the notebook's outputs or code cells, or in its declared
  constants (``metadata.lalora.constants``: the paper's numbers, sizes of public models; a list of
  number strings). Years (1900-2099), two-digit notebook labels (``05``) and URLs are not numbers of
  the run, nor are arXiv identifiers. Readings, claims and worked solutions render their numbers with
  :func:`lalora_lite.study.notebook.say`, so their text is an output.
* **Exercises.** The ``## Exercises`` cell numbers its exercises; one code cell per exercise, tagged
  ``solution``, its source folded (``jupyter.source_hidden``), starts ``# Solution to exercise k``.
* **Scaffolding.** Title ``# NN · …`` with a Colab badge to the notebook's own file, learning goals,
  ``## References``, takeaways, and, in the last cell, links to the neighbouring notebooks; a
  ``## Reading`` in 05-07.
* **Hygiene.** No ANSI colour codes, machine paths, progress widgets or library warnings in outputs.

Usage: .venv/bin/python scripts/notebook_checks.py notebooks/03_sharpness.ipynb [...] [--smoke]
(``--smoke`` first executes a copy in the smoke profile, leaving the notebook and results/ untouched,
and checks the copy: a draft's prose numbers must then be rendered from variables to pass.)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat

from lalora_lite.study.notebook import STAMP

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"(?<![\w.,/-])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(\s?%)?(?![\w])")
URL = re.compile(r"\(?https?://[^\s)]+\)?|\]\([^)]*\)|arXiv:\s?\S+")
HTML_TAG = re.compile(r"<[^>]+>")
MACHINE = re.compile(r"(/work/|/home/|/tmp/|/content/|site-packages)")
WARNING = re.compile(r"DeprecationWarning|FutureWarning|deprecated")


def prose_numbers(text: str) -> list[str]:
    """The numbers of a markdown text that must come from the run (see the module docstring)."""
    text = HTML_TAG.sub(" ", URL.sub(" ", text))
    found = []
    for match in NUMBER.finditer(text):
        number, percent = match.group(1), match.group(2)
        plain = number.replace(",", "")
        if "." not in plain and not percent and len(plain) < 2:
            continue  # single digits: list items, epsilon = 3 named in words
        if "." not in plain and len(plain) == 4 and 1900 <= int(plain) <= 2099:
            continue  # a year
        if len(number) == 2 and number.startswith("0"):
            continue  # a notebook label
        found.append(plain)
    return found


def haystack(nb: nbformat.NotebookNode) -> str:
    """Everything a prose number may come from: outputs, code, and declared constants."""
    parts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts.append(cell.source)
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            for kind in ("text/plain", "text/markdown", "text/html"):
                parts.append(out.get("data", {}).get(kind, ""))
    parts += [str(c) for c in nb.metadata.get("lalora", {}).get("constants", [])]
    return "\n".join(p if isinstance(p, str) else "".join(p) for p in parts).replace(",", "")


def missing_numbers(nb: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """(cell index, number) for every prose number found nowhere in the notebook's run."""
    text = haystack(nb)
    missing = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown" or cell.source.startswith(STAMP):
            continue
        for number in prose_numbers(cell.source):
            if not re.search(rf"(?<![\d.]){re.escape(number)}(?!\d)", text):
                missing.append((i, number))
    return missing


def exercise_problems(nb: nbformat.NotebookNode) -> list[str]:
    """What is wrong with the notebook's exercises and their solution cells."""
    cells = [c for c in nb.cells if c.cell_type == "markdown" and c.source.lstrip().startswith("## Exercises")]
    if len(cells) != 1:
        return [f"{len(cells)} '## Exercises' cells, expected 1"]
    count = len(re.findall(r"^\d+\.\s", cells[0].source.split("<details>")[0], flags=re.M))
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    problems = [] if count >= 1 and len(solutions) == count else [f"{count} exercises, {len(solutions)} solution cells"]
    for k, cell in enumerate(solutions, start=1):
        if cell.cell_type != "code" or not cell.source.startswith(f"# Solution to exercise {k}"):
            problems.append(f"solution cell {k} is not a code cell starting '# Solution to exercise {k}'")
        if cell.metadata.get("jupyter", {}).get("source_hidden") is not True:
            problems.append(f"solution cell {k} is not folded (metadata.jupyter.source_hidden)")
        if cell.get("execution_count") is None:
            problems.append(f"solution cell {k} was not executed")
    return problems


def scaffolding_problems(nb: nbformat.NotebookNode, name: str, names: list[str]) -> list[str]:
    """What of the course's scaffolding the notebook lacks (``names``: every notebook's file name)."""
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    number = int(name[:2])
    title = next((s for s in markdown if s.startswith("# ")), "")
    checks = {
        f"a title '# {number:02d} · …'": title.startswith(f"# {number:02d} ·"),
        "a Colab badge to its own file": f"blob/main/notebooks/{name})" in title,
        "learning goals": any("Learning goals" in s for s in markdown),
        "a '## References' cell": any(s.lstrip().startswith("## References") for s in markdown),
        "a takeaways box": any("Takeaways" in s for s in markdown),
        "a '## Reading' cell": not 5 <= number <= 7 or any(s.lstrip().startswith("## Reading") for s in markdown),
    }
    for other in names:
        if abs(int(other[:2]) - number) == 1:
            checks[f"a link to {other} in the last cell"] = bool(markdown) and f"]({other})" in markdown[-1]
    return [f"no {what}" for what, ok in checks.items() if not ok]


def hygiene_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Outputs with progress widgets, ANSI codes, machine paths or library warnings."""
    problems = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            text = out.get("text", "") + "".join(str(v) for k, v in data.items() if k.startswith("text/"))
            for what, bad in (
                ("a progress widget", "application/vnd.jupyter.widget-view+json" in data),
                ("ANSI colour codes", "\x1b[" in text),
                ("a machine path", bool(MACHINE.search(text))),
                ("a library warning", bool(WARNING.search(text))),
            ):
                if bad:
                    problems.append(f"cell {i}: {what}")
    return problems


def problems(nb: nbformat.NotebookNode, name: str, names: list[str]) -> list[str]:
    """Every check of this module on one executed notebook."""
    return (
        [f"cell {i}: prose number {n} in no output, code or constant" for i, n in missing_numbers(nb)]
        + exercise_problems(nb)
        + scaffolding_problems(nb, name, names)
        + hygiene_problems(nb)
    )


def execute_smoke(path: Path) -> nbformat.NotebookNode:
    """A copy of the notebook executed in the smoke profile, figures to a scratch folder."""
    import nbclient

    nb = nbformat.read(path, as_version=4)
    os.environ.update(LALORA_PROFILE="smoke", LALORA_FIGURES=tempfile.mkdtemp(prefix="lalora-figures-"))
    os.environ.pop("LALORA_UPDATE_RESULTS", None)
    nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    return nb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--smoke", action="store_true", help="check a smoke-executed copy instead of the file")
    args = parser.parse_args()
    names = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    failed = 0
    for path in args.notebooks:
        nb = execute_smoke(path) if args.smoke else nbformat.read(path, as_version=4)
        found = problems(nb, path.name, names)
        failed += bool(found)
        print(f"{path.name}: {'ok' if not found else f'{len(found)} problem(s)'}")
        for line in found:
            print("  -", line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
