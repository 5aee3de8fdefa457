"""The client side on Flower: a ClientApp that trains a round with the simulator's own
:func:`~lalora_lite.federated.train_client` and keeps its privacy ledger across rounds (in memory, on
the server's copy and, in a deployment, on the client's own disk)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from ..accounting import PrivacyLedger
from ..checkpoint import save_atomically
from ..data import dataset_size
from ..federated import ClientResult, FederatedConfig, client_ledger, train_client
from ..lora import load_lora_state, trainable_parameters
from ..methods import get_method
from ..tasks import Task

log = logging.getLogger("flwr")  # Flower's logger: shows in `flwr log` and the simulation output

TaskLoader = Callable[[Context], Task]
"""Builds the task a node works on from its Flower context (the run config, the node config).

A client uses ``task.clients[partition-id]`` and the backbone; the server uses the backbone, the
number of clients and ``task.test``. In a real deployment a site's loader returns its own data."""


def _ledger_file(context: Context, cfg: FederatedConfig, partition: int) -> Path | None:
    """``state-dir/ledger-<run>-client<i>.pt`` when the node config names a ``state-dir``."""
    state_dir = context.node_config.get("state-dir")
    if not state_dir:
        return None
    run_key = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    return Path(str(state_dir)) / f"ledger-{run_key}-client{partition}.pt"


@dataclass
class _ClientState:
    """What a client keeps between rounds: its ledger and its last reply (for a resent request)."""

    ledger: PrivacyLedger | None
    last_round: int = -1
    last_reply: ClientResult | None = None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        reply = self.last_reply
        save_atomically(
            {
                "ledger": self.ledger.state_dict() if self.ledger else None,
                "last_round": self.last_round,
                "upload": reply.upload if reply else {},
                "loss": reply.loss if reply else math.nan,
                "steps": reply.steps if reply else 0,
            },
            path,
        )

    @classmethod
    def load(cls, path: Path) -> _ClientState:
        s = torch.load(path, weights_only=True)
        ledger = PrivacyLedger.from_state_dict(s["ledger"]) if s["ledger"] else None
        return cls(ledger, s["last_round"], ClientResult(s["upload"], s["loss"], s["steps"]))


def _client_state(
    context: Context, cfg: FederatedConfig, size: int, num_clients: int, partition: int, server_steps: int
) -> _ClientState:
    """The client's state: the most-spent of its in-memory copy, its disk copy and the server's copy."""
    fresh = client_ledger(cfg, size, num_clients) if get_method(cfg.method).private else None
    state = _ClientState(fresh)
    if "lalora" in context.state:
        record = context.state["lalora"]
        state = _ClientState(fresh, int(record["last-round"]))
        if fresh is not None:
            fresh.steps = int(record["ledger-steps"])
    path = _ledger_file(context, cfg, partition)
    if path is not None and path.exists():
        on_disk = _ClientState.load(path)
        if on_disk.last_round >= state.last_round:
            state = on_disk
    if state.ledger is not None:
        if (state.ledger.noise_multiplier, state.ledger.sample_rate) != (fresh.noise_multiplier, fresh.sample_rate):
            raise ValueError(
                f"client {partition}: stored ledger (sigma {state.ledger.noise_multiplier}, "
                f"q {state.ledger.sample_rate}) does not match this run's calibration"
            )
        state.ledger.steps = max(state.ledger.steps, server_steps)
    return state


def make_client_app(load_task: TaskLoader, num_threads: int | None = None) -> ClientApp:
    """A ClientApp running :func:`~lalora_lite.federated.train_client` on ``partition-id``'s data.

    The task is built once per process and run (:data:`TaskLoader`). ``num_threads`` sets torch's
    CPU threads: float sums on a CPU depend on it, so a client matches the simulator bit for bit
    only with the simulator's thread count (Ray gives each actor ``num_cpus`` threads); without it
    the run config's ``threads`` is used if set.
    """
    app = ClientApp()
    tasks: dict[int, Task] = {}

    def task_of(context: Context) -> Task:
        if threads := num_threads or int(context.run_config.get("threads", 0)):
            torch.set_num_threads(threads)
        if context.run_id not in tasks:
            tasks.clear()
            tasks[context.run_id] = load_task(context)
        return tasks[context.run_id]

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        partition = int(context.node_config["partition-id"])
        return Message(RecordDict({"metrics": MetricRecord({"partition-id": partition})}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        config = msg.content["config"]
        cfg = FederatedConfig.from_dict(json.loads(str(config["fed-config"])))
        partition, t = int(context.node_config["partition-id"]), int(config["round-index"])
        if int(config["partition-id"]) != partition:
            raise ValueError(f"message for partition {config['partition-id']} reached partition {partition}")
        task = task_of(context)
        data = task.clients[partition]
        state = _client_state(
            context, cfg, dataset_size(data), int(config["num-clients"]), partition, int(config["ledger-steps"])
        )
        if state.last_round == t and state.last_reply is not None:
            result = state.last_reply  # a resent request: answer again, spend nothing
        else:
            model, head = task.backbone.model, task.backbone.head
            load_lora_state(model, msg.content["arrays"].to_torch_state_dict())
            result = train_client(model, trainable_parameters(model, head), head, data, cfg, t, partition, state.ledger)
            state.last_round, state.last_reply = t, result
            if (path := _ledger_file(context, cfg, partition)) is not None:
                state.save(path)  # before replying: a reply that got out is always on disk
        ledger = state.ledger
        context.state["lalora"] = ConfigRecord(
            {"last-round": state.last_round, "ledger-steps": ledger.steps if ledger else 0}
        )
        metrics = MetricRecord(
            {
                "partition-id": partition,
                "steps": result.steps,
                "train-loss": result.loss,
                "num-examples": dataset_size(data),
                "epsilon": ledger.epsilon if ledger else math.inf,
                "ledger-steps": ledger.steps if ledger else 0,
            }
        )
        return Message(RecordDict({"arrays": ArrayRecord(result.upload), "metrics": metrics}), reply_to=msg)

    return app
