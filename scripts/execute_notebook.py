"""Execute notebooks top to bottom and save them with their outputs, stamped with how they were made.

Usage: .venv/bin/python scripts/execute_notebook.py notebooks/01_coupling.ipynb [...] [--profile cpu]

The first cell of a saved notebook says which profile, commit, machine and wall time produced the
outputs below it (the committed notebooks carry `cpu` outputs; CI executes `smoke` from scratch).
Outputs to commit come from a clean checkout: the script refuses to start while the package, the
scripts, the results or the notebooks have uncommitted changes (``--allow-dirty`` for a draft; its
stamp then says so).
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

import nbclient
import nbformat

from lalora_lite.study.notebook import STAMP

ROOT = Path(__file__).resolve().parent.parent


PROVENANCE = ("lalora_lite", "notebooks", "scripts", "results")  # what a notebook's outputs depend on


def uncommitted() -> list[str]:
    """Paths under :data:`PROVENANCE` with uncommitted changes (``git status --porcelain``)."""
    out = subprocess.run(["git", "status", "--porcelain", *PROVENANCE], cwd=ROOT, capture_output=True, text=True)
    return [line[3:] for line in out.stdout.splitlines()]


def commit(dirty: bool) -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return f"`{head}`" + (" plus uncommitted changes (a draft)" if dirty else "")


def execute(path: Path, profile: str, timeout: int, dirty: bool = False) -> float:
    nb = nbformat.read(path, as_version=4)
    if nb.cells and nb.cells[0].source.startswith(STAMP):
        nb.cells.pop(0)
    os.environ["LALORA_PROFILE"] = profile  # the kernel inherits it
    start = time.perf_counter()
    nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    seconds = time.perf_counter() - start
    stamp = (
        f"{STAMP} `{profile}` profile, executed {datetime.date.today()} on a {os.cpu_count()}-core CPU machine "
        f"in {seconds:.0f} s (`scripts/execute_notebook.py`), code of commit {commit(dirty)}. CI executes the "
        "`smoke` profile from scratch (`tests/test_notebooks.py`)."
    )
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(stamp))
    nbformat.write(nb, path)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--profile", default="cpu", choices=("smoke", "cpu"))
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--allow-dirty", action="store_true", help="execute a draft on uncommitted changes")
    args = parser.parse_args()
    for path in args.notebooks:
        if path.suffix != ".ipynb" or not path.exists():
            parser.error(f"not a notebook file: {path}")
    dirty = uncommitted()
    if dirty and not args.allow_dirty:
        parser.error(
            f"uncommitted changes in {', '.join(dirty[:5])}{' ...' if len(dirty) > 5 else ''}: commit first, so that "
            "the stamp names the code that made the outputs (or pass --allow-dirty for a draft)"
        )
    for path in args.notebooks:
        print(f"{path}: {execute(path.resolve(), args.profile, args.timeout, bool(dirty)):.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
