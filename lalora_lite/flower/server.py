"""The server side on Flower: :class:`SeededFedAvg` picks, averages and checkpoints exactly as
:func:`~lalora_lite.federated.run_federated` does, and :func:`make_server_app` runs it."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from ..data import dataset_size
from ..federated import (
    ClientResult,
    FederatedConfig,
    ServerState,
    aggregate,
    evaluate_global,
    round_clients,
    round_row,
    validate,
)
from ..lora import load_lora_state, lora_state
from ..tasks import Task
from .client import TaskLoader

log = logging.getLogger("flwr")  # Flower's logger: shows in `flwr log` and the simulation output


class SeededFedAvg(FedAvg):
    """FedAvg that picks, averages and checkpoints exactly as :func:`run_federated` does.

    Each round it asks every node for its ``partition-id`` (so restarted nodes are found under their
    new node id), sends the round's message to the clients :func:`round_clients` picks, resends to
    any client whose reply did not come (a resent request is answered from the client's stored
    reply), averages the uploads in increasing client order with the simulator's FedAvg, evaluates
    centrally and saves a :class:`~lalora_lite.checkpoint.Checkpoint`.
    """

    def __init__(
        self,
        task: Task,
        cfg: FederatedConfig,
        checkpoint: Path | None = None,
        reply_timeout: float = 600.0,
        retries: int = 3,
    ) -> None:
        num_clients = len(task.clients)
        super().__init__(
            fraction_train=cfg.clients_per_round / num_clients, fraction_evaluate=0.0, min_available_nodes=num_clients
        )
        validate(cfg, num_clients)
        self.task, self.cfg, self.path = task, cfg, checkpoint
        self.num_clients, self.reply_timeout, self.retries = num_clients, reply_timeout, retries
        self.sizes = [dataset_size(c) for c in task.clients]
        self.state = ServerState.start(cfg, lora_state(task.backbone.model, task.backbone.head), self.sizes, checkpoint)
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
            pending |= set(
                grid.push_messages(
                    [Message(RecordDict(), dst_node_id=n, message_type=MessageType.QUERY) for n in sorted(new)]
                )
            )
            asked |= new
            for reply in grid.pull_messages(pending):
                pending.discard(reply.metadata.reply_to_message_id)
                if not reply.has_error():
                    found[int(reply.content["metrics"]["partition-id"])] = reply.metadata.src_node_id
            if set(found) >= set(range(self.num_clients)):
                self._nodes = found
                return found
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"partitions {sorted(set(range(self.num_clients)) - set(found))} did not "
                    f"answer within {self.reply_timeout:g} s ({len(nodes)} nodes online)"
                )
            time.sleep(1.0)
            nodes = set(grid.get_node_ids())

    def _train_messages(self, grid: Grid, clients: list[int], ask: bool = False) -> list[Message]:
        nodes = self._partitions(grid, ask)
        state = self.state
        arrays = ArrayRecord(state.global_state)
        return [
            Message(
                RecordDict(
                    {
                        "arrays": arrays,
                        "config": ConfigRecord(
                            {
                                "fed-config": json.dumps(self.cfg.to_dict()),
                                "round-index": state.round,
                                "partition-id": c,
                                "num-clients": self.num_clients,
                                "ledger-steps": state.ledgers[c].steps if state.ledgers else 0,
                            }
                        ),
                    }
                ),
                dst_node_id=nodes[c],
                message_type=MessageType.TRAIN,
            )
            for c in clients
        ]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        self._grid, self._started = grid, time.perf_counter()
        return self._train_messages(grid, round_clients(self.cfg, self.state.round, self.num_clients))

    def aggregate_train(self, server_round: int, replies) -> tuple[ArrayRecord, MetricRecord]:
        chosen = round_clients(self.cfg, self.state.round, self.num_clients)
        by_client: dict[int, Message] = {}
        for attempt in range(self.retries + 1):
            for reply in replies:
                if reply.has_error():
                    log.warning(
                        "round %d: error from node %d: %s",
                        self.state.round + 1,
                        reply.metadata.src_node_id,
                        reply.error.reason,
                    )
                else:
                    by_client[int(reply.content["metrics"]["partition-id"])] = reply
            missing = [c for c in chosen if c not in by_client]
            if not missing or attempt == self.retries:
                break
            log.warning("round %d: no reply from clients %s; asking again", self.state.round + 1, missing)
            replies = self._grid.send_and_receive(
                self._train_messages(self._grid, missing, ask=True), timeout=self.reply_timeout
            )
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
        row = round_row(
            self.cfg,
            state.round,
            evaluate_global(model, self.task.test, self.cfg, state.round),
            self._results,
            state.epsilon_spent,
            time.perf_counter() - self._started,
        )
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
            strategy.start(
                grid,
                ArrayRecord(strategy.state.global_state),
                num_rounds=remaining,
                timeout=s.reply_timeout,
                evaluate_fn=strategy.evaluate_round,
            )

    return app
