"""`scripts/execute_notebook.py` stamps outputs with the commit that made them and refuses a dirty tree."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(root):
    spec = importlib.util.spec_from_file_location("execute_notebook", ROOT / "scripts" / "execute_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.ROOT = root
    return module


def test_a_dirty_tree_is_refused_and_a_clean_one_is_not(tmp_path, monkeypatch, capsys):
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "lalora_lite").mkdir()
    (tmp_path / "lalora_lite" / "m.py").write_text("x = 1\n")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "n.ipynb").write_text("{}")
    subprocess.run(git + ["-C", str(tmp_path), "add", "."], check=True)
    subprocess.run(git + ["-C", str(tmp_path), "commit", "-qm", "c"], check=True)
    script = _script(tmp_path)
    assert script.uncommitted() == []
    (tmp_path / "lalora_lite" / "m.py").write_text("x = 2\n")
    assert script.uncommitted() == ["lalora_lite/m.py"]
    monkeypatch.setattr(sys, "argv", ["execute_notebook.py", str(tmp_path / "notebooks" / "n.ipynb")])
    with pytest.raises(SystemExit):
        script.main()
    assert "uncommitted changes in lalora_lite/m.py" in capsys.readouterr().err
    assert "(a draft)" in script.commit(True) and "draft" not in script.commit(False)
