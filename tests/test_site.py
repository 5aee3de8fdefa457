"""The course site builds offline from the committed notebooks and docs, never executing a notebook, and
every notebook page carries its inline figures and its claims table."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytest.importorskip("myst_nb", reason="the site needs the docs extra: LALORA_EXTRAS=docs bash scripts/setup.sh")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-b", "html", "-c", str(ROOT / "docs"), str(ROOT), str(out)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(out), "HF_HUB_OFFLINE": "1"},
    )
    assert build.returncode == 0, build.stderr[-3000:]
    return out


@pytest.mark.parametrize("notebook", sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
def test_every_notebook_page_has_its_figures_and_claims_table(site, notebook):
    nb = json.loads((ROOT / "notebooks" / notebook).read_text())
    page = (site / "notebooks" / notebook.replace(".ipynb", ".html")).read_text()
    images = re.findall(r"<img [^>]*src=\"[^\"]*_images/[^\"]+\.png\"", page)
    assert len(images) >= nb["metadata"]["lalora"]["inline_figures"], notebook
    tables = re.findall(r"<table.*?</table>", page, flags=re.S)
    assert any(">claim<" in t and ">verdict<" in t for t in tables), f"{notebook}: no claims table on its page"


def test_the_docs_and_the_readme_are_pages_of_the_site(site):
    for page in ("docs/index", "README", "CONTRIBUTING", "benchmarks/README", "docs/instructors", "docs/privacy"):
        assert (site / f"{page}.html").exists(), page
    index = (site / "docs" / "index.html").read_text()
    assert all(f"{p.stem}.html" in index for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_the_site_never_executes_a_notebook():
    conf = (ROOT / "docs" / "conf.py").read_text()
    assert re.search(r'^nb_execution_mode = "off"', conf, flags=re.M)
