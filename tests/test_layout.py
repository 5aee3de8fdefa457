"""The house: the library flat at the top, the machinery in subpackages, no circles, nothing pointing up."""

import subprocess
import sys
import warnings

import pytest
from conftest import ROOT, load_script

graph_tool = load_script("scripts", "import_graph")
LIBRARY = ("lora", "methods", "per_example", "privacy", "smoothing", "training", "accounting", "federated")
SUBPACKAGES = ("tasks", "study", "diagnostics")


def test_the_import_graph_has_no_circles_and_no_upward_imports():
    summary = graph_tool.summary(graph_tool.graph())
    assert summary["circles"] == []
    assert summary["upward"] == []
    assert summary["unresolved"] == []  # nothing of the package imports a moved module by its old path


def test_the_graph_tool_sees_a_circle_and_an_upward_import():
    """The checks above can fail: a made-up graph with both knots is caught."""
    edges = {
        "lalora_lite.federated": {"lalora_lite.checkpoint", "lalora_lite.study.paths"},
        "lalora_lite.checkpoint": {"lalora_lite.federated"},
        "lalora_lite.study.paths": set(),
        "lalora_lite.cli": {"lalora_lite.plotting"},
    }
    summary = graph_tool.summary(edges)
    assert summary["circles"] == [["lalora_lite.checkpoint", "lalora_lite.federated"]]
    assert summary["upward"] == [("lalora_lite.federated", "lalora_lite.study.paths")]
    assert summary["unresolved"] == [("lalora_lite.cli", "lalora_lite.plotting")]
    assert summary["layers"] == 2


def test_the_library_sits_flat_at_the_top_and_imports_no_machinery():
    for name in LIBRARY:
        assert (ROOT / "lalora_lite" / f"{name}.py").is_file(), name
    prefixes = tuple(f"lalora_lite.{s}" for s in SUBPACKAGES)
    code = f"import sys, lalora_lite; print(sorted(m for m in sys.modules if m.startswith({prefixes})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # importing the library loads none of tasks/, study/, diagnostics/


def test_the_reading_path_is_the_package_docstring():
    import lalora_lite

    positions = [lalora_lite.__doc__.index(f"``{name}``") for name in LIBRARY]
    assert positions == sorted(positions)  # named in reading order
    readme = (ROOT / "README.md").read_text()
    readme = readme[readme.index("## Read the code") :]
    positions = [readme.index(f"`{name}.py`") for name in LIBRARY]
    assert positions == sorted(positions)


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ("lalora_lite.plotting", "lalora_lite.study.paths", "save_figure"),
        ("lalora_lite.plotting", "lalora_lite.study.tables", "summary_markdown"),
        ("lalora_lite.plotting", "lalora_lite.study.plotting", "redraw"),
        ("lalora_lite.experiments", "lalora_lite.study.stored", "chosen_setting"),
        ("lalora_lite.experiments", "lalora_lite.study.comparison", "compare"),
        ("lalora_lite.experiments", "lalora_lite.study.runs", "run_digest"),
        ("lalora_lite.profiles", "lalora_lite.tasks.profiles", "current_profile"),
        ("lalora_lite.audit_run", "lalora_lite.diagnostics.audit_run", "run_audit"),
    ],
)
def test_old_import_paths_still_work_with_a_warning(old, new, name):
    import importlib

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to"):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_the_registry_names_under_the_old_tasks_path_warn():
    from lalora_lite import tasks
    from lalora_lite.tasks import common, registry

    with pytest.warns(DeprecationWarning, match="moved to lalora_lite.tasks.common.cache_dir"):
        assert tasks.cache_dir is common.cache_dir
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tasks.build_task is registry.build_task  # a public name: no warning
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        tasks.nonsense  # noqa: B018


def test_every_module_keeps_to_one_concern_in_about_400_lines():
    sizes = {
        p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in (ROOT / "lalora_lite").rglob("*.py")
    }
    assert max(sizes.values()) <= 420, {k: v for k, v in sizes.items() if v > 420}
