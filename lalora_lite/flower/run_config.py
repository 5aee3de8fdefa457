"""``flwr run``: the task, the run's :class:`~lalora_lite.federated.FederatedConfig` and the server's setup
from the flat keys of a Flower run config (``examples/flower_app/pyproject.toml``)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path

from flwr.app import Context

from ..federated import FederatedConfig
from ..tasks import Task
from ..training import LocalConfig
from .server import ServerSetup


def _import(target: str) -> Callable:
    """``"package.module:function"`` -> the function."""
    module, _, name = target.partition(":")
    if not module or not name:
        raise ValueError(f"task-loader must look like 'package.module:function', got {target!r}")
    return getattr(importlib.import_module(module), name)


def task_from_run_config(context: Context) -> Task:
    """Build the task named by the run config: ``task-loader`` (``module:function``) called with the
    JSON object ``task-kwargs`` (e.g. ``lalora_lite.tasks:build_task`` with name, profile and seed)."""
    run = context.run_config
    return _import(str(run["task-loader"]))(**json.loads(str(run.get("task-kwargs", "{}"))))


def config_from_run_config(run: dict) -> FederatedConfig:
    """The run's :class:`FederatedConfig` from flat run-config keys (``epsilon = "none"`` for no DP)."""
    local = LocalConfig(
        local_steps=int(run["local-steps"]),
        batch_size=int(run["batch-size"]),
        lr=float(run["lr"]),
        optimizer=str(run["optimizer"]),
        clip_norm=float(run["clip-norm"]),
    )
    epsilon = None if str(run["epsilon"]).lower() == "none" else float(run["epsilon"])
    return FederatedConfig(
        str(run["method"]),
        rounds=int(run["rounds"]),
        local=local,
        epsilon=epsilon,
        clients_per_round=int(run["clients-per-round"]),
        count_steps=str(run["count-steps"]),
        seed=int(run["seed"]),
        secure_noise=bool(run["secure-noise"]),
    )


def server_setup_from_run_config(context: Context) -> ServerSetup:
    run = dict(context.run_config)
    checkpoint = Path(str(run["checkpoint"])) if run.get("checkpoint") else None
    return ServerSetup(
        task_from_run_config,
        config_from_run_config(run),
        checkpoint,
        float(run.get("reply-timeout", 600.0)),
        int(run.get("threads", 0)) or None,
    )
