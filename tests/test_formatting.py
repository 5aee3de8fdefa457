"""The sources are laid out by the formatter and keep its lint rules (``pyproject.toml``'s ``[tool.ruff]``)."""

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def ruff(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert exe, "ruff is not installed: bash scripts/setup.sh installs the pinned one"
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True)


def test_every_source_is_formatted():
    out = ruff("format", "--check", ".")
    assert out.returncode == 0, f"run `ruff format .`:\n{out.stdout}{out.stderr}"


def test_every_source_keeps_the_lint_rules():
    out = ruff("check", ".")
    assert out.returncode == 0, f"run `ruff check --fix .`:\n{out.stdout}{out.stderr}"


def test_the_checks_can_fail(tmp_path):
    """A badly laid out file with an unused import fails both checks under the project's configuration."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "bad.py").write_text("import os\nx = {  'a':1 }\n")
    assert ruff("format", "--check", ".", cwd=tmp_path).returncode == 1
    assert "F401" in ruff("check", ".", cwd=tmp_path).stdout
