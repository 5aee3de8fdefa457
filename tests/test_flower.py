"""The Flower adapter (optional extra): the same numbers as the simulator, ledgers that survive restarts.

The simulation test runs the real Flower code path (ClientApp, ServerApp, Ray backend); the
deployment test starts a SuperLink and SuperNodes as processes and kills one mid-run.
"""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

try:
    from flwr.app import Context, RecordDict
except ImportError as err:  # the suite installs it (scripts/test.sh); say how, rather than skip
    raise ImportError("the Flower tests need the extra: LALORA_EXTRAS=flower bash scripts/setup.sh") from err

from lalora_lite.checkpoint import Checkpoint  # noqa: E402
from lalora_lite.federated import ClientResult, FederatedConfig, round_clients, run_federated  # noqa: E402
from lalora_lite.flower import (  # noqa: E402
    ServerSetup,
    config_from_run_config,
    make_client_app,
    make_server_app,
    task_from_run_config,
)
from lalora_lite.flower.client import _client_state, _ledger_file  # noqa: E402
from lalora_lite.sampling import sample_clients  # noqa: E402
from lalora_lite.tasks import digits_swin  # noqa: E402
from lalora_lite.training import LocalConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP_CONFIG = tomllib.loads((ROOT / "examples/flower_app/pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]


def test_core_never_imports_flwr():
    code = (
        "import sys, lalora_lite, lalora_lite.cli, lalora_lite.study.comparison, lalora_lite.federated, "
        "lalora_lite.diagnostics.audit; print(sorted(m for m in sys.modules if m.split('.')[0] == 'flwr'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def tiny_task(ctx=None):
    return digits_swin(num_clients=4, seed=0, pretrain_steps=30)


@pytest.mark.serial  # starts Ray: scripts/test.sh runs it after the parallel pass
def test_flower_simulation_is_bit_identical_to_run_federated(tmp_path):
    """4 clients, 4 rounds, 2 per round; budgets for the expected share of steps (2 rounds each). The
    uniform draw would pick client 3 in rounds 1, 2 and 4; its budget is spent after round 2, so both
    runtimes' servers must pick someone else in round 4."""
    from flwr.simulation import run_simulation

    cfg = FederatedConfig(
        "lalora",
        rounds=4,
        clients_per_round=2,
        epsilon=3.0,
        count_steps="expected",
        local=LocalConfig(local_steps=3, batch_size=16, lr=0.1),
    )
    flower_ckpt, local_ckpt = tmp_path / "flower.pt", tmp_path / "local.pt"
    run_simulation(
        make_server_app(ServerSetup(tiny_task, cfg, flower_ckpt)),
        make_client_app(tiny_task, num_threads=torch.get_num_threads()),
        num_supernodes=4,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    task = tiny_task()
    run_federated(task.backbone, task.clients, task.test, cfg, checkpoint=local_ckpt, progress=False)
    flower, local = Checkpoint.load(flower_ckpt), Checkpoint.load(local_ckpt)
    assert flower.round == local.round == 4
    assert set(flower.global_state) == set(local.global_state)
    for name, value in local.global_state.items():
        assert torch.equal(flower.global_state[name], value), name
    assert flower.ledgers == local.ledgers
    assert [r["accuracy"] for r in flower.history] == [r["accuracy"] for r in local.history]
    assert [r["epsilon_spent"] for r in flower.history] == [r["epsilon_spent"] for r in local.history]
    assert 3 in sample_clients(cfg.seed, 3, 4, 2) and 3 not in round_clients(cfg, 3, 4)  # the budget binds...
    assert [r["clients"] for r in flower.history] == [r["clients"] for r in local.history] == [2, 2, 2, 2]
    assert [ledger["steps"] for ledger in local.ledgers] == [6] * 4  # ...and every client spent its budget


@pytest.mark.serial  # starts Ray: scripts/test.sh runs it after the parallel pass
def test_flower_simulation_of_the_non_private_method_matches_too(tmp_path):
    """fedlora: no ledger, no noise; the same uploads, order and averaging."""
    from flwr.simulation import run_simulation

    cfg = FederatedConfig(
        "fedlora", rounds=2, clients_per_round=2, epsilon=None, local=LocalConfig(local_steps=3, batch_size=16, lr=0.1)
    )
    run_simulation(
        make_server_app(ServerSetup(tiny_task, cfg, tmp_path / "flower.pt")),
        make_client_app(tiny_task, num_threads=torch.get_num_threads()),
        num_supernodes=4,
        backend_config={"client_resources": {"num_cpus": 2, "num_gpus": 0.0}},
    )
    task = tiny_task()
    run_federated(task.backbone, task.clients, task.test, cfg, checkpoint=tmp_path / "local.pt", progress=False)
    flower, local = Checkpoint.load(tmp_path / "flower.pt"), Checkpoint.load(tmp_path / "local.pt")
    assert flower.ledgers == local.ledgers == []
    assert all(torch.equal(flower.global_state[n], v) for n, v in local.global_state.items())
    assert [r["accuracy"] for r in flower.history] == [r["accuracy"] for r in local.history]


def test_client_state_takes_the_most_spent_copy(tmp_path):
    cfg = FederatedConfig(
        "lalora", rounds=4, clients_per_round=2, epsilon=3.0, local=LocalConfig(local_steps=3, batch_size=16)
    )
    context = Context(
        run_id=1,
        node_id=7,
        node_config={"partition-id": 2, "state-dir": str(tmp_path)},
        state=RecordDict(),
        run_config={},
    )
    fresh = _client_state(context, cfg, size=100, num_clients=4, partition=2, server_steps=0)
    assert fresh.ledger.steps == 0 and fresh.last_round == -1
    assert _client_state(context, cfg, 100, 4, 2, server_steps=6).ledger.steps == 6  # server's copy (resume)
    # a restarted node has an empty Context.state but its disk copy, with its last reply
    fresh.ledger.steps, fresh.last_round = 9, 2
    fresh.last_reply = ClientResult({"head.weight": torch.ones(2, 3)}, 0.5, 3)
    fresh.save(_ledger_file(context, cfg, 2))
    restored = _client_state(context, cfg, 100, 4, 2, server_steps=6)
    assert restored.ledger.steps == 9 and restored.last_round == 2
    assert torch.equal(restored.last_reply.upload["head.weight"], torch.ones(2, 3))
    other = FederatedConfig(
        "lalora", rounds=8, clients_per_round=2, epsilon=3.0, local=LocalConfig(local_steps=3, batch_size=16)
    )
    assert _client_state(context, other, 100, 4, 2, 0).ledger.steps == 0  # another run: another ledger
    with pytest.raises(ValueError, match="does not match this run's calibration"):
        _client_state(context, cfg, 50, 4, 2, 0)  # a ledger calibrated for another data size


def test_run_config_of_the_example_app_is_valid_and_bad_values_are_named():
    cfg = config_from_run_config(APP_CONFIG)
    assert cfg.method == "lalora" and cfg.epsilon == 3.0 and cfg.local.local_steps == 4
    assert config_from_run_config({**APP_CONFIG, "method": "fedlora", "epsilon": "none"}).epsilon is None
    context = Context(
        run_id=1,
        node_id=1,
        node_config={},
        state=RecordDict(),
        run_config={"task-loader": "lalora_lite.tasks.digits_swin"},
    )
    with pytest.raises(ValueError, match="task-loader must look like 'package.module:function'"):
        task_from_run_config(context)


def test_loopback_deployment_survives_a_supernode_restart(tmp_path):
    """SuperLink + 4 SuperNodes as processes; one is SIGKILLed after round 2 and restarted."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/flower_loopback.py"), "--workdir", str(tmp_path), "--timeout", "540"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads((tmp_path / "report.json").read_text()) if (tmp_path / "report.json").exists() else {}
    server_log = tmp_path / "serverapp.log"
    server_tail = server_log.read_text()[-3000:] if server_log.exists() else "(no ServerApp log)"
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:] + "\nServerApp log:\n" + server_tail
    assert report["ledger_steps_before_kill"] > 0
    assert report["ledger_steps_after_run"] > report["ledger_steps_before_kill"]  # continued, not reset
    assert report["tensors_identical"] and report["ledgers_identical"] and report["accuracy_identical"]
