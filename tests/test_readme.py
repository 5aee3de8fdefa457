"""The README is a front door: short, its tables generated from the committed results and notebooks, its
numbers from those tables, its links alive."""

import re

from conftest import ROOT, load_script

tables = load_script("scripts", "readme_tables")
README = (ROOT / "README.md").read_text()


def test_the_readme_is_at_most_200_lines():
    assert len(README.splitlines()) <= 200


def test_the_generated_tables_are_up_to_date():
    """`scripts/readme_tables.py` rewrites nothing: the finding and the notebook map are the committed ones."""
    assert tables.generated_readme(ROOT) == README, "run .venv/bin/python scripts/readme_tables.py"


def test_a_stale_table_is_noticed():
    stale = README.replace("| the paper (Swin-T / CIFAR-100) | +14.7", "| the paper (Swin-T / CIFAR-100) | +14.8")
    assert stale != README and tables.with_table(stale, "finding", tables.finding_table(ROOT)) == README


def test_the_findings_numbers_come_from_its_table():
    start, end = tables.MARKERS["finding"]
    prose = README.split("## The finding", 1)[1].split(start, 1)[0]
    table = README.split(start, 1)[1].split(end, 1)[0]
    numbers = re.findall(r"[+-]\d+\.\d", prose)
    assert numbers and all(n in table for n in numbers), numbers


def test_the_why_paragraphs_numbers_come_from_the_explanation_studys_summaries():
    """Every number after "**Why**" in the finding (up to the next section) is printed, as a whole number
    token (signs aside), in a stored study's summary.md or in the finding's generated table (the paper's
    gaps), so the paragraph cannot drift from the study."""
    why = README.split("**Why**", 1)[1].split("\n## ", 1)[0]
    start, end = tables.MARKERS["finding"]
    sources = "\n".join(p.read_text() for p in sorted(ROOT.glob("results/explain/*/cpu/summary.md")))
    sources += README.split(start, 1)[1].split(end, 1)[0]
    token = r"(?<![\w.]){}(?![\w.]*\d)"
    numbers = re.findall(r"(?<![\w.])\d+\.\d+", why)
    assert numbers and not [n for n in numbers if not re.search(token.format(re.escape(n)), sources)]


def test_the_first_command_is_the_quick_main_job_and_the_tests_follow():
    commands = re.findall(r"^(?:bash|\.venv/bin/)\S*.*$", README, flags=re.M)
    assert commands[0] == "bash scripts/setup.sh && .venv/bin/lalora compare --task fmnist-swin --quick"
    assert "bash scripts/test.sh" in commands


def test_every_local_link_and_named_page_exists():
    links = re.findall(r"\]\(((?!https?://)[^)#]+)\)", README)
    named = re.findall(r"`((?:docs|benchmarks)/[\w./-]+\.md|CONTRIBUTING\.md)`", README)
    missing = [p for p in links + named if not (ROOT / p).exists()]
    assert links and not missing, missing


def test_user_docs_hold_no_commit_hashes():
    """Measurement history lives in commit messages; the docs name run digests (8 hex digits) at most."""
    pages = [
        ROOT / "README.md",
        ROOT / "CONTRIBUTING.md",
        ROOT / "benchmarks" / "README.md",
        *(ROOT / "docs").glob("*.md"),
    ]
    found = {
        p.name: re.findall(r"\bcommit `?[0-9a-f]{7,40}\b|git (?:show|checkout) [0-9a-f]{7}", p.read_text())
        for p in pages
    }
    assert not any(found.values()), found


def test_the_course_table_is_up_to_date():
    """docs/instructors.md's course table (order, needs, prerequisites, cpu minutes) is the generated one."""
    page = (ROOT / "docs" / "instructors.md").read_text()
    assert tables.generated_course(ROOT) == page, "run .venv/bin/python scripts/readme_tables.py"
    assert all(f"../notebooks/{p.name}" in page for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
