"""The README's generated tables: the finding, from the committed results, and the notebook map, from
the committed notebooks.

* The finding: LA-LoRA minus each of the paper's baselines at epsilon = 3 on each stand-in, from
  ``results/<task>/cpu/paired.csv`` (what ``lalora figures`` writes), next to the paper's own
  difference (``results/paper/reported.csv``, Swin-T / CIFAR-100).
* The notebooks: one row per notebook: its title, a Colab badge, what you learn (its first learning
  goal), the minutes its committed ``cpu`` outputs took (the provenance stamp) and its verdicts,
  counted from the claims table it computed (the last table output with a ``claim`` and a
  ``verdict`` column).
* The course (in ``docs/instructors.md``): the order, what each notebook teaches and needs, its
  prerequisites (:data:`COURSE`), its committed ``cpu`` minutes and whether it fits a 90-minute lab.

Each table sits in its page between its two markers; ``tests/test_readme.py`` fails when one is out
of date.

Usage: .venv/bin/python scripts/readme_tables.py [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKERS = {
    name: (f"<!-- {name}-table:start (scripts/readme_tables.py) -->", f"<!-- {name}-table:end -->")
    for name in ("finding", "notebook", "course")
}
LAB_MINUTES = 90
# notebook number: (what it teaches, what it needs, the notebooks to have done first)
COURSE = {
    0: ("DP-SGD by hand, LoRA, FedAvg, what sigma buys", "CPU", "none"),
    1: ("the cross term `s dB dA` and what alternation does to it", "CPU", "00"),
    2: ("how DP noise on A and B reaches `W` (linear and product terms), with the lr schedule", "CPU", "00"),
    3: ("Hessian eigenvalues and loss landscapes, and when a ratio is evidence", "CPU", "00, 01"),
    4: ("methods as schedules, the LA-LoRA loop by hand, the filter, the ablation", "CPU", "00, 01, 02"),
    5: ("the main comparison read as the paper's question needs it", "CPU (stored results); GPU for `colab`", "00, 04"),
    6: ("the text stand-in and GLUE at paper scale", "CPU (stored); GPU for `colab`", "05"),
    7: ("the paper's numbers as data, ours next to them, signs not levels", "CPU", "05"),
    8: ("per-client ledgers, an empirical audit that catches a broken mechanism", "CPU, long", "00"),
    9: ("the same clients on Flower, bit-identical, ledgers that survive a crash", "CPU (Ray)", "00, 04"),
    10: ("what explains the paper's margin: five hypotheses, measured", "CPU (stored study)", "05, 07"),
}
FINDING_TASKS = {"fmnist-swin": "vision stand-in (fmnist-swin)", "wordnet-minilm": "text stand-in (wordnet-minilm)"}
FINDING_EPSILON, FINDING_BASELINES = 3.0, ("dp-lora", "ffa-lora", "rolora")
PAPER_CELL = ("Swin-T", "CIFAR-100")
BADGE = "[![Colab](https://colab.research.google.com/assets/colab-badge.svg)]({})"


class _Tables(HTMLParser):
    """The rows of every ``<table>`` in an HTML fragment, as lists of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join(self._cell.split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell += data


def claims(nb: dict) -> list[dict[str, str]]:
    """The rows of the notebook's claims table (the last output table with ``claim`` and ``verdict`` columns)."""
    found: list[dict[str, str]] = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            parser = _Tables()
            parser.feed("".join(out.get("data", {}).get("text/html", [])))
            for rows in parser.tables:
                header = rows[0] if rows else []
                if "claim" in header and "verdict" in header:
                    found = [dict(zip(header, r)) for r in rows[1:] if len(r) == len(header)]
    return found


def verdicts(rows: list[dict[str, str]]) -> str:
    """``3 unresolved, 1 holds here`` (most frequent first)."""
    counts = Counter(r["verdict"] for r in rows)
    return ", ".join(f"{n} {v}" for v, n in counts.most_common()) or "no claims table"


def cpu_minutes(text: list[str]) -> float | None:
    """The minutes of the committed ``cpu`` run, from the provenance stamp (the first markdown cell)."""
    stamp = re.search(r"executed \S+ on .*? in (\d+) s", text[0])
    return int(stamp[1]) / 60 if stamp else None


def markdown(nb: dict) -> list[str]:
    """The sources of a notebook's markdown cells, in order."""
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]


def shown_minutes(text: list[str]) -> str:
    minutes = cpu_minutes(text)
    return f"{minutes:.1f}" if minutes is not None else "?"


def row(path: Path, repository: str) -> str:
    nb = json.loads(path.read_text())
    text = markdown(nb)
    title = next(line[2:] for t in text for line in t.splitlines() if line.startswith("# "))
    minutes = shown_minutes(text)
    goals = next((t.split("**Learning goals.**", 1)[1] for t in text if "**Learning goals.**" in t), "")
    first = re.search(r"1\.\s+(.+?)(?:\n\d\.|\n\n|$)", goals, re.S)
    learn = " ".join(first[1].split()) if first else ""
    learn = learn.split(": ", 1)[0] if len(learn) > 140 else learn
    number, _, name = title.partition(" · ")
    url = f"https://colab.research.google.com/github/{repository.removeprefix('https://github.com/')}/blob/main/notebooks/{path.name}"
    return (
        f"| [{number}](notebooks/{path.name}) {name} | {BADGE.format(url)} | {learn.replace('|', '/')} | {minutes} | "
        f"{verdicts(claims(nb))} |"
    )


def finding_table(root: Path = ROOT) -> str:
    """LA-LoRA minus each baseline at epsilon = 3: the paper's difference, then each stand-in's paired interval."""
    import pandas as pd

    paper = pd.read_csv(root / "results" / "paper" / "reported.csv")
    cell = paper[
        (paper["model"] == PAPER_CELL[0]) & (paper["dataset"] == PAPER_CELL[1]) & (paper["metric"] == "accuracy")
    ]
    cell = cell[cell["epsilon"] == FINDING_EPSILON].drop_duplicates("method").set_index("method")["value"]
    header = "| LA-LoRA minus, at eps = 3 | " + " | ".join(FINDING_BASELINES) + " | resolved after Holm, all eps |"
    lines = [header, "|---" * (len(FINDING_BASELINES) + 2) + "|"]
    lines.append(
        f"| the paper ({PAPER_CELL[0]} / {PAPER_CELL[1]}) | "
        + " | ".join(f"{cell['lalora'] - cell[b]:+.1f}" for b in FINDING_BASELINES)
        + " | |"
    )
    for task, label in FINDING_TASKS.items():
        every = pd.read_csv(root / "results" / task / "cpu" / "paired.csv")
        resolved = every[every["resolved"]]
        named = "; ".join(
            f"{r.baseline} at eps = {r.epsilon:g}, Holm p = {r.p_holm:.3f}" for r in resolved.itertuples()
        )
        holm = f"{len(resolved)} of {len(every)}" + (f" ({named})" if named else "")
        paired = every[every["epsilon"] == FINDING_EPSILON].set_index("baseline")
        cells = [
            f"{100 * paired.loc[b, 'difference']:+.1f} [{100 * paired.loc[b, 'ci_low']:+.1f}, "
            f"{100 * paired.loc[b, 'ci_high']:+.1f}]"
            for b in FINDING_BASELINES
        ]
        lines.append(f"| {label}, {int(paired['seeds'].min())} seeds | " + " | ".join(cells) + f" | {holm} |")
    return "\n".join(lines)


def notebook_table(root: Path = ROOT) -> str:
    import tomllib

    repository = tomllib.loads((root / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    lines = ["| notebook | Colab | what you learn | cpu min | verdicts of its claims table |", "|---|---|---|---|---|"]
    lines += [row(p, repository) for p in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    return "\n".join(lines)


def course_table(root: Path = ROOT) -> str:
    """The course: one row per notebook, in order (``docs/instructors.md``)."""
    lines = [
        f"| notebook | teaches | needs | do first | cpu min | fits a {LAB_MINUTES}-minute lab |",
        "|---|---|---|---|---|---|",
    ]
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        teaches, needs, first = COURSE[int(path.stem[:2])]
        text = markdown(json.loads(path.read_text()))
        minutes, shown = cpu_minutes(text), shown_minutes(text)
        # a lab runs the notebook once and leaves two thirds of its time for reading and the exercises
        runs_in_lab = minutes is not None and minutes <= LAB_MINUTES / 3
        fits = "yes" if runs_in_lab else "from its committed outputs, or in `smoke`"
        link = f"[{path.stem[:2]}](../notebooks/{path.name})"
        lines.append(f"| {link} | {teaches} | {needs} | {first} | {shown} | {fits} |")
    return "\n".join(lines)


def with_table(readme: str, name: str, generated: str) -> str:
    """``readme`` with the text between the markers of table ``name`` replaced by ``generated``."""
    start, end = MARKERS[name]
    if start not in readme or end not in readme:
        raise ValueError(f"the page has no {name} table markers ({start} ... {end})")
    head, rest = readme.split(start, 1)
    return f"{head}{start}\n{generated}\n{end}{rest.split(end, 1)[1]}"


def generated_readme(root: Path = ROOT) -> str:
    """README.md as it should read: both tables generated afresh."""
    readme = (root / "README.md").read_text()
    readme = with_table(readme, "finding", finding_table(root))
    return with_table(readme, "notebook", notebook_table(root))


def generated_course(root: Path = ROOT) -> str:
    """docs/instructors.md as it should read: its course table generated afresh."""
    return with_table((root / "docs" / "instructors.md").read_text(), "course", course_table(root))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if README.md's table is stale")
    args = parser.parse_args()
    pages = {ROOT / "README.md": generated_readme(), ROOT / "docs" / "instructors.md": generated_course()}
    stale = [path.name for path, wanted in pages.items() if wanted != path.read_text()]
    if args.check:
        if stale:
            print(f"generated tables out of date in {', '.join(stale)}: run scripts/readme_tables.py", file=sys.stderr)
        return 1 if stale else 0
    for path, wanted in pages.items():
        path.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
