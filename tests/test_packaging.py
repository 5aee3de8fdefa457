"""The install files agree with each other and the command line works."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
