"""The install files agree with each other and the command line works."""

import os
import re
import subprocess
import sys
from functools import partial
from pathlib import Path

from conftest import ROOT, load_script


def pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip().lstrip("- ").strip()
        if m := re.fullmatch(r"([A-Za-z0-9_.\-]+)==([\w.]+)", line):
            out[m[1].lower()] = m[2]
    return out


def test_environment_yml_mirrors_requirements():
    requirements = pins((ROOT / "requirements.txt").read_text().splitlines())
    environment = pins((ROOT / "environment.yml").read_text().splitlines())
    assert requirements and requirements == environment
    assert requirements["torch"] == "2.14.1" and requirements["torchvision"] == "0.29.1"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/test.sh" in readme
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "lalora_lite.cli", *args], capture_output=True, text=True)


def test_cli_accountant_prints_both_sigmas():
    out = run_cli("accountant", "--epsilon", "1", "--delta", "1e-5", "--sample-rate", "0.01", "--steps", "1000")
    assert out.returncode == 0, out.stderr
    rdp = float(re.search(r"RDP: noise multiplier sigma = ([\d.]+)", out.stdout)[1])
    prv = float(re.search(r"PRV: noise multiplier sigma = ([\d.]+)", out.stdout)[1])
    assert abs(rdp - 1.5234) / 1.5234 < 0.01 and abs(prv - 1.4258) / 1.4258 < 0.01


def test_cli_errors_are_clear():
    out = run_cli("accountant", "--epsilon", "0", "--sample-rate", "0.01", "--steps", "10")
    assert out.returncode == 2 and "epsilon must be a finite number > 0, got 0.0" in out.stderr
    out = run_cli("compare", "--task", "fmnist-swin", "--methods", "la-lora")
    assert out.returncode == 2 and "unknown method 'la-lora'" in out.stderr
    out = run_cli("run", "--task", "fmnist-swin", "--method", "fedlora", "--epsilon", "1", "--profile", "smoke")
    assert out.returncode == 2 and "is not private; set epsilon=None, got 1.0" in out.stderr
    out = run_cli("run", "--task", "mnist", "--method", "lalora", "--epsilon", "1")
    assert out.returncode == 2 and "unknown task 'mnist'" in out.stderr
    out = run_cli("figures", "--results", "/nonexistent")
    assert out.returncode == 2 and "no results found" in out.stderr
    assert run_cli("--help").returncode == 0


_script = partial(load_script, "scripts")


def test_test_workers_follow_the_cgroup_quota_and_memory(tmp_path):
    tool = _script("test_workers")
    v2, v1 = tmp_path / "v2", tmp_path / "v1"
    v2.mkdir(), (v1 / "cpu").mkdir(parents=True)
    assert tool.cgroup_cpus(tmp_path / "none") is None
    (v2 / "cpu.max").write_text("max 100000\n")
    assert tool.cgroup_cpus(v2) is None
    (v2 / "cpu.max").write_text("250000 100000\n")
    assert tool.cgroup_cpus(v2) == 2  # 2.5 CPUs: 2 whole ones
    (v1 / "cpu/cpu.cfs_quota_us").write_text("50000\n"), (v1 / "cpu/cpu.cfs_period_us").write_text("100000\n")
    assert tool.cgroup_cpus(v1) == 1  # half a CPU still runs one worker
    assert tool.workers_and_threads(cores=2, memory_gib=24) == (2, 1)
    assert tool.workers_and_threads(cores=16, memory_gib=128) == (4, 4)  # at most 4 workers
    assert tool.workers_and_threads(cores=16, memory_gib=9) == (2, 8)  # 4 GiB per worker
    assert tool.workers_and_threads(cores=1, memory_gib=2) == (1, 1)


def test_every_badge_and_colab_cell_uses_the_one_repository_address():
    tool = _script("set_repository")
    url = tool.repository()
    assert url.startswith("https://github.com/") and "OWNER" not in url
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "set_repository.py"), "--check"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    stale = (
        "[![Colab](b.svg)](https://colab.research.google.com/github/OWNER/lalora-lite/blob/main/notebooks/00_x.ipynb)"
    )
    assert tool.rewrite_badges(stale, url) == f"[![Colab](b.svg)]({tool.badge_url(url, '00_x.ipynb')})"
    assert tool.rewrite_badges("git clone https://github.com/OWNER/lalora-lite.git", url) == f"git clone {url}.git"
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        text = notebook.read_text()
        assert "OWNER" not in text and tool.badge_url(url, notebook.name) in text
        assert "pip install -q -e" not in text  # an editable install is not importable in a running kernel


def test_colab_cell_installs_an_importable_package_into_a_running_kernel(tmp_path):
    """The notebooks' Colab cell, run the way Colab runs it: a fresh interpreter that already has torch and
    the other libraries (here: this venv's site-packages on its path) but not lalora_lite. After the cell,
    the *same* process imports the installed package, sits in notebooks/ and finds the shipped backbone."""
    import nbformat

    tool = _script("set_repository")
    cell = next(
        c.source
        for c in nbformat.read(ROOT / "notebooks" / "00_primer.ipynb", 4).cells
        if tool.COLAB_MARKER in c.source
    )
    venv = tmp_path / "kernel"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    kernel = venv / "bin" / "python"
    site = subprocess.run(
        [str(kernel), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # like Colab's preinstalled stack: this venv's packages (pip, torch, ...) on the path, but a path
    # entry's own .pth files are not run, so this checkout's editable lalora_lite is not importable
    Path(site, "colab_stack.pth").write_text(next(p for p in sys.path if p.endswith("site-packages")) + "\n")
    content = tmp_path / "content"
    content.mkdir()
    cell = cell.replace("/content", str(content)).replace(tool.repository(), str(ROOT))
    program = f"""
import os, sys, types
sys.path = [p for p in sys.path if os.path.abspath(p or '.') != {str(ROOT)!r}]
try:
    import lalora_lite
    raise SystemExit("lalora_lite importable before the cell ran")
except ImportError:
    pass
sys.modules["google.colab"] = types.ModuleType("google.colab")
exec(compile({cell!r}, "colab-cell", "exec"))
import lalora_lite
from lalora_lite.tasks.common import cache_dir
from lalora_lite.tasks.fmnist import SHIPPED_WEIGHTS, pretrained_fmnist_swin
print("FILE", lalora_lite.__file__)
print("CWD", os.getcwd())
pretrained_fmnist_swin(1500)
print("CACHE", sorted(os.listdir(cache_dir())))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["LALORA_CACHE"] = str(tmp_path / "cache")
    out = subprocess.run(
        [str(kernel), "-c", program], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    installed = Path(re.search(r"FILE (.+)", out.stdout)[1])
    assert installed.is_relative_to(venv) and not installed.is_relative_to(ROOT)  # a real install, not the checkout
    assert re.search(r"CWD (.+)", out.stdout)[1] == str(content / "lalora-lite" / "notebooks")
    assert "CACHE []" in out.stdout  # the shipped weights were used: nothing pretrained, nothing cached
