"""Write the repository's address, kept once in pyproject.toml ([project.urls] Repository), into
every notebook's Colab badge and Colab setup cell, and into the badges and links of the README, the
docs (``docs/*.md``) and the Sphinx configuration.

Usage:
  .venv/bin/python scripts/set_repository.py                 # rewrite from pyproject.toml
  .venv/bin/python scripts/set_repository.py --url URL       # change the address, then rewrite
  .venv/bin/python scripts/set_repository.py --check         # exit 1 if any file disagrees (the tests)

The Colab cell installs the package *non-editably*: an editable install is only picked up by a
Python started afterwards, not by Colab's running kernel. It keeps Colab's preinstalled torch
(pyproject.toml has ranges, not pins) and fetches WordNet; Fashion-MNIST comes from the hub.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
COLAB_MARKER = '"google.colab" in sys.modules'
COLAB_CELL = """# On Colab: fetch the project and install it where the running kernel imports it (a regular,
# not an editable, install), with the offline WordNet the text stand-in reads. Elsewhere: nothing.
import os
import subprocess
import sys

REPOSITORY = "{url}"
if "google.colab" in sys.modules:
    if not os.path.isdir("/content/lalora-lite"):
        subprocess.run(["git", "clone", "-q", REPOSITORY, "/content/lalora-lite"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "/content/lalora-lite{extras}"], check=True)
    if not os.path.exists("/usr/share/wordnet/data.noun"):
        subprocess.run("apt-get install -y -qq wordnet-base > /dev/null", shell=True, check=False)
    os.chdir("/content/lalora-lite/notebooks")"""
BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^)\s]+?/blob/main/notebooks/([\w.-]+\.ipynb)")


def repository() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


def badge_url(url: str, notebook: str) -> str:
    return f"https://colab.research.google.com/github/{url.removeprefix('https://github.com/')}/blob/main/notebooks/{notebook}"


GITHUB = re.compile(r"https://github\.com/[\w.-]+/lalora-lite\b")


def rewrite_badges(text: str, url: str) -> str:
    """Colab badges and plain repository links (e.g. a ``git clone`` line) get ``url``."""
    return GITHUB.sub(url, BADGE.sub(lambda m: badge_url(url, m.group(1)), text))


def rewritten_notebook(path: Path, url: str) -> str:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if COLAB_MARKER in c.source and c.cell_type == "code"]
    if len(cells) != 1:
        raise ValueError(f"{path.name}: expected one Colab setup cell, found {len(cells)}")
    extras = nb.metadata.get("lalora", {}).get("colab_extras", "")  # e.g. "flower" for notebook 09
    cells[0].source = COLAB_CELL.format(url=url, extras=f"[{extras}]" if extras else "")
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = rewrite_badges(cell.source, url)
    if not any(BADGE.search(c.source) for c in nb.cells if c.cell_type == "markdown"):
        raise ValueError(f"{path.name}: no Colab badge")
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"  # as nbformat.write does


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="new address, https://github.com/<owner>/<name>")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file disagrees")
    args = parser.parse_args()
    if args.url is not None:
        if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", args.url):
            parser.error(f"--url must look like https://github.com/<owner>/<name>, got {args.url!r}")
        pyproject = ROOT / "pyproject.toml"
        pyproject.write_text(re.sub(r'(?m)^Repository = ".*"$', f'Repository = "{args.url}"', pyproject.read_text()))
    url = repository()
    wanted = {path: rewritten_notebook(path, url) for path in sorted((ROOT / "notebooks").glob("*.ipynb"))}
    for page in [ROOT / "README.md", ROOT / "docs" / "conf.py", *sorted((ROOT / "docs").glob("*.md"))]:
        wanted[page] = rewrite_badges(page.read_text(), url)
    stale = [path for path, text in wanted.items() if path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} does not use {url}; run scripts/set_repository.py", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path])
        print("rewrote", path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
