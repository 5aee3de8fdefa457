"""Scale-out on Flower (``pip install lalora-lite[flower]``): the simulator's client and server as
Flower apps, giving the same numbers as :func:`~lalora_lite.federated.run_federated`.

The core never imports this module (nor ``flwr``). What is shared with the simulator, so that the
two runtimes agree bit for bit on a CPU:

* :func:`~lalora_lite.federated.train_client`: a client's whole round (ledger, seeding by
  ``(seed, round, client)``, :func:`~lalora_lite.training.local_update`, what it uploads);
* :func:`~lalora_lite.federated.round_clients`: the server's seeded choice of clients (budget-aware);
* :func:`~lalora_lite.federated.aggregate` (FedAvg in increasing client order), the history row
  and the :class:`~lalora_lite.checkpoint.Checkpoint` format (a Flower run's checkpoint can be
  read, and resumed, by the simulator and vice versa).

Flower's own DP is update-level (clipping whole client updates) and its Opacus example restarts
the accountant every round; here each client keeps a sample-level :class:`PrivacyLedger` across
rounds: in ``Context.state`` (one run, in memory), reported to the server with every reply (the
server checkpoint holds all ledgers) and, in a deployment, in ``state-dir`` on the client's own
disk with its last reply, so that neither a SuperNode restart nor a lost reply resets or
double-spends its budget. A client whose budget is spent trains no more steps.

Messages (all keys are strings):

* QUERY: the client answers ``partition-id`` (the server maps partitions to Flower node ids);
* TRAIN: ``arrays`` = the global LoRA factors and head, ``config`` = ``fed-config`` (the run's
  :class:`FederatedConfig` as JSON), ``round-index``, ``partition-id``, ``num-clients``,
  ``ledger-steps`` (the server's copy); the reply holds ``arrays`` (the upload, possibly empty) and
  ``metrics`` (``partition-id``, ``steps``, ``train-loss``, ``num-examples``, ``epsilon``,
  ``ledger-steps``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from .accounting import PrivacyLedger
from .checkpoint import save_atomically
from .data import dataset_size
from .federated import (
    ClientResult,
    FederatedConfig,
    ServerState,
    aggregate,
    client_ledger,
    evaluate_global,
    round_row,
    round_clients,
    train_client,
    validate,
)
from .lora import load_lora_state, lora_state, trainable_parameters
from .methods import get_method
from .tasks import Task
from .training import LocalConfig

log = logging.getLogger("flwr")  # Flower's logger: shows in `flwr log` and the simulation output

TaskLoader = Callable[[Context], Task]
"""Builds the task a node works on from its Flower context (the run config, the node config).

A client uses ``task.clients[partition-id]`` and the backbone; the server uses the backbone, the
number of clients and ``task.test``. In a real deployment a site's loader returns its own data."""


# --- the client ------------------------------------------------------------------------------


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
        save_atomically({"ledger": self.ledger.state_dict() if self.ledger else None, "last_round": self.last_round,
                         "upload": reply.upload if reply else {}, "loss": reply.loss if reply else math.nan,
                         "steps": reply.steps if reply else 0}, path)

    @classmethod
    def load(cls, path: Path) -> _ClientState:
        s = torch.load(path, weights_only=True)
        ledger = PrivacyLedger.from_state_dict(s["ledger"]) if s["ledger"] else None
        return cls(ledger, s["last_round"], ClientResult(s["upload"], s["loss"], s["steps"]))


def _client_state(context: Context, cfg: FederatedConfig, size: int, num_clients: int, partition: int,
                  server_steps: int) -> _ClientState:
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
            raise ValueError(f"client {partition}: stored ledger (sigma {state.ledger.noise_multiplier}, "
                             f"q {state.ledger.sample_rate}) does not match this run's calibration")
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
        state = _client_state(context, cfg, dataset_size(data), int(config["num-clients"]), partition,
                              int(config["ledger-steps"]))
        if state.last_round == t and state.last_reply is not None:
            result = state.last_reply  # a resent request: answer again, spend nothing
        else:
            model, head = task.backbone.model, task.backbone.head
            load_lora_state(model, msg.content["arrays"].to_torch_state_dict())
            result = train_client(model, trainable_parameters(model, head), head, data, cfg, t, partition,
                                  state.ledger)
            state.last_round, state.last_reply = t, result
            if (path := _ledger_file(context, cfg, partition)) is not None:
                state.save(path)  # before replying: a reply that got out is always on disk
        ledger = state.ledger
        context.state["lalora"] = ConfigRecord({"last-round": state.last_round,
                                                "ledger-steps": ledger.steps if ledger else 0})
        metrics = MetricRecord({
            "partition-id": partition, "steps": result.steps, "train-loss": result.loss,
            "num-examples": dataset_size(data), "epsilon": ledger.epsilon if ledger else math.inf,
            "ledger-steps": ledger.steps if ledger else 0,
        })
        return Message(RecordDict({"arrays": ArrayRecord(result.upload), "metrics": metrics}), reply_to=msg)

    return app


# --- the server ------------------------------------------------------------------------------


class SeededFedAvg(FedAvg):
    """FedAvg that picks, averages and checkpoints exactly as :func:`run_federated` does.

    Each round it asks every node for its ``partition-id`` (so restarted nodes are found under their
    new node id), sends the round's message to the clients :func:`round_clients` picks, resends to
    any client whose reply did not come (a resent request is answered from the client's stored
    reply), averages the uploads in increasing client order with the simulator's FedAvg, evaluates
    centrally and saves a :class:`~lalora_lite.checkpoint.Checkpoint`.
    """

    def __init__(self, task: Task, cfg: FederatedConfig, checkpoint: Path | None = None,
                 reply_timeout: float = 600.0, retries: int = 3) -> None:
        num_clients = len(task.clients)
        super().__init__(fraction_train=cfg.clients_per_round / num_clients, fraction_evaluate=0.0,
                         min_available_nodes=num_clients)
        validate(cfg, num_clients)
        self.task, self.cfg, self.path = task, cfg, checkpoint
        self.num_clients, self.reply_timeout, self.retries = num_clients, reply_timeout, retries
        self.sizes = [dataset_size(c) for c in task.clients]
        self.state = ServerState.start(cfg, lora_state(task.backbone.model, task.backbone.head), self.sizes,
                                       checkpoint)
        self._grid: Grid | None = None
        self._nodes: dict[int, int] = {}
        self._results: list[ClientResult] = []
        self._started = 0.0

    # which node holds which partition
    def _partitions(self, grid: Grid, ask: bool = False) -> dict[int, int]:
        """``{partition: node id}``; nodes are asked again when the set of online nodes changed (a node
        restarted under a new id) or ``ask`` is set (a reply was missing).

        Each online node gets one query (a node that comes online while we wait gets one too) and the
        replies are collected until every partition answered or ``reply_timeout`` passed. A query is
        never resent: each one starts a ClientApp process on its node, so resending to slow nodes
        would only add load (on a busy machine one answer can take tens of seconds)."""
        nodes = set(grid.get_node_ids())
        if not ask and nodes == set(self._nodes.values()):
            return self._nodes
        deadline = time.monotonic() + self.reply_timeout
        asked: set[int] = set()
        pending: set[str] = set()
        found: dict[int, int] = {}
        while True:
            new = nodes - asked
            pending |= set(grid.push_messages(
                [Message(RecordDict(), dst_node_id=n, message_type=MessageType.QUERY) for n in sorted(new)]))
            asked |= new
            for reply in grid.pull_messages(pending):
                pending.discard(reply.metadata.reply_to_message_id)
                if not reply.has_error():
                    found[int(reply.content["metrics"]["partition-id"])] = reply.metadata.src_node_id
            if set(found) >= set(range(self.num_clients)):
                self._nodes = found
                return found
            if time.monotonic() > deadline:
                raise RuntimeError(f"partitions {sorted(set(range(self.num_clients)) - set(found))} did not "
                                   f"answer within {self.reply_timeout:g} s ({len(nodes)} nodes online)")
            time.sleep(1.0)
            nodes = set(grid.get_node_ids())

    def _train_messages(self, grid: Grid, clients: list[int], ask: bool = False) -> list[Message]:
        nodes = self._partitions(grid, ask)
        state = self.state
        arrays = ArrayRecord(state.global_state)
        return [Message(RecordDict({"arrays": arrays, "config": ConfigRecord({
            "fed-config": json.dumps(self.cfg.to_dict()), "round-index": state.round, "partition-id": c,
            "num-clients": self.num_clients, "ledger-steps": state.ledgers[c].steps if state.ledgers else 0,
        })}), dst_node_id=nodes[c], message_type=MessageType.TRAIN) for c in clients]

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> list[Message]:
        self._grid, self._started = grid, time.perf_counter()
        return self._train_messages(grid, round_clients(self.cfg, self.state.round, self.num_clients))

    def aggregate_train(self, server_round: int, replies) -> tuple[ArrayRecord, MetricRecord]:
        chosen = round_clients(self.cfg, self.state.round, self.num_clients)
        by_client: dict[int, Message] = {}
        for attempt in range(self.retries + 1):
            for reply in replies:
                if reply.has_error():
                    log.warning("round %d: error from node %d: %s", self.state.round + 1,
                                reply.metadata.src_node_id, reply.error.reason)
                else:
                    by_client[int(reply.content["metrics"]["partition-id"])] = reply
            missing = [c for c in chosen if c not in by_client]
            if not missing or attempt == self.retries:
                break
            log.warning("round %d: no reply from clients %s; asking again", self.state.round + 1, missing)
            replies = self._grid.send_and_receive(self._train_messages(self._grid, missing, ask=True),
                                                  timeout=self.reply_timeout)
        results, weights = [], []
        for c in sorted(by_client):
            metrics = by_client[c].content["metrics"]
            if self.state.ledgers is not None:  # the client's own count is authoritative (never lower than ours)
                self.state.ledgers[c].steps = max(self.state.ledgers[c].steps, int(metrics["ledger-steps"]))
            upload = by_client[c].content["arrays"].to_torch_state_dict()
            results.append(ClientResult(dict(upload), float(metrics["train-loss"]), int(metrics["steps"])))
            weights.append(self.sizes[c] if self.cfg.weighted else 1.0)
        self._results = results
        self.state.global_state = aggregate(self.state.global_state, results, weights)
        return ArrayRecord(self.state.global_state), MetricRecord({"clients": len(results)})

    def evaluate_round(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """Central evaluation after a round (``evaluate_fn``); writes the history row and the checkpoint."""
        if server_round == 0:
            return None  # Flower also asks before round 1; the simulator does not evaluate then
        state, model = self.state, self.task.backbone.model
        load_lora_state(model, state.global_state)
        row = round_row(self.cfg, state.round, evaluate_global(model, self.task.test, self.cfg, state.round),
                        self._results, state.epsilon_spent, time.perf_counter() - self._started)
        state.history.append(row)
        state.round += 1
        if self.path is not None:
            state.save(self.path)
        return MetricRecord({"accuracy": row["accuracy"], "loss": row["loss"], "epsilon": row["epsilon_spent"]})


@dataclass(frozen=True)
class ServerSetup:
    """What the server app runs: the task, the run's config and where its checkpoint lives."""

    load_task: TaskLoader
    config: FederatedConfig
    checkpoint: Path | None = None
    reply_timeout: float = 600.0
    threads: int | None = None  # torch CPU threads (the server builds the task and evaluates)


def make_server_app(setup: ServerSetup | Callable[[Context], ServerSetup]) -> ServerApp:
    """A ServerApp running :class:`SeededFedAvg` for the rounds the checkpoint has not done yet.

    ``setup`` may be a function of the server's context (``flwr run`` passes settings in the
    run config)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        s = setup(context) if callable(setup) else setup
        if s.threads:
            torch.set_num_threads(s.threads)
        strategy = SeededFedAvg(s.load_task(context), s.config, s.checkpoint, s.reply_timeout)
        remaining = s.config.rounds - strategy.state.round
        if remaining > 0:
            strategy.start(grid, ArrayRecord(strategy.state.global_state), num_rounds=remaining,
                           timeout=s.reply_timeout, evaluate_fn=strategy.evaluate_round)

    return app


# --- `flwr run`: settings from the run config ------------------------------------------------


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
    local = LocalConfig(local_steps=int(run["local-steps"]), batch_size=int(run["batch-size"]), lr=float(run["lr"]),
                        optimizer=str(run["optimizer"]), clip_norm=float(run["clip-norm"]))
    epsilon = None if str(run["epsilon"]).lower() == "none" else float(run["epsilon"])
    return FederatedConfig(str(run["method"]), rounds=int(run["rounds"]), local=local, epsilon=epsilon,
                           clients_per_round=int(run["clients-per-round"]), count_steps=str(run["count-steps"]),
                           seed=int(run["seed"]), secure_noise=bool(run["secure-noise"]))


def server_setup_from_run_config(context: Context) -> ServerSetup:
    run = dict(context.run_config)
    checkpoint = Path(str(run["checkpoint"])) if run.get("checkpoint") else None
    return ServerSetup(task_from_run_config, config_from_run_config(run), checkpoint,
                       float(run.get("reply-timeout", 600.0)), int(run.get("threads", 0)) or None)
