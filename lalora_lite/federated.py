"""The federated simulation: local updates, FedAvg, accounting, resume (which clients train is
:mod:`lalora_lite.sampling`, the saved state :mod:`lalora_lite.checkpoint`).

Each round ``t`` the server samples ``m`` of ``N`` clients; each sampled client starts
from the global LoRA factors and head, runs :func:`~lalora_lite.training.local_update`
and uploads what its method shares; the server averages each uploaded tensor

    theta_global = sum_i w_i theta_i,   w_i = 1/m (default, as in the paper) or n_i / sum n

and keeps the global value of tensors nobody uploaded. All randomness of round ``t``
is derived from ``(seed, t)`` and ``(seed, t, client)``, so a run resumed from the
checkpoint of round ``t`` continues exactly as if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .accounting import ACCOUNTANTS, PrivacyLedger, calibrate_noise_multiplier, check_budget_inputs
from .checkpoint import Checkpoint
from .data import Dataset, dataset_size
from .lora import factor_of, load_lora_state, lora_layers, lora_state, trainable_parameters
from .methods import get_method
from .models import Backbone
from .precision import PRECISIONS
from .privacy import Release, SecureRandom, noisy_gradient
from .sampling import client_schedule
from .smoothing import min_features
from .training import OPTIMIZERS, DPNoise, LocalConfig, evaluate, local_update

STEP_COUNTS = ("every-round", "expected")
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class FederatedConfig:
    """Everything that defines a run (and must match when a run resumes)."""

    method: str
    rounds: int = 10
    clients_per_round: int = 4
    local: LocalConfig = field(default_factory=LocalConfig)
    epsilon: float | None = 1.0  # None for the non-private method
    delta: float = 1e-5
    accountant: str = "rdp"
    count_steps: str = "every-round"  # steps a client may take: rounds*K, or the expected share
    weighted: bool = False  # FedAvg weights: uniform (paper) or by client size
    lr_schedule: str = "constant"  # over rounds: constant, or cosine lr_t = lr (1 + cos(pi t / R)) / 2
    eval_every: int = 1  # evaluate the global model every n rounds (and always after the last)
    eval_batch_size: int = 256
    seed: int = 0
    secure_noise: bool = False  # DP noise and sampling from OS entropy (deployments; not reproducible)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FederatedConfig:
        """Inverse of :meth:`to_dict` (how a Flower client learns the run's config from the server)."""
        return cls(**{**values, "local": LocalConfig(**values["local"])})


def validate(cfg: FederatedConfig, num_clients: int) -> None:
    """Raise ``ValueError`` naming the first bad setting, before any work is done."""
    method = get_method(cfg.method)
    local = cfg.local
    checks = [
        (cfg.rounds >= 1, f"rounds must be >= 1, got {cfg.rounds}"),
        (
            1 <= cfg.clients_per_round <= num_clients,
            f"clients_per_round must be in [1, {num_clients}] (the number of clients), got {cfg.clients_per_round}",
        ),
        (local.local_steps >= 1, f"local_steps must be >= 1, got {local.local_steps}"),
        (local.batch_size >= 1, f"batch_size must be >= 1, got {local.batch_size}"),
        (local.lr > 0, f"lr must be > 0, got {local.lr}"),
        (
            local.filter_taps >= 3 and local.filter_taps % 2 == 1,
            f"filter_taps must be odd and >= 3, got {local.filter_taps}",
        ),
        (local.clip_norm > 0, f"clip_norm must be > 0, got {local.clip_norm}"),
        (local.optimizer in OPTIMIZERS, f"unknown optimizer {local.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}"),
        (local.sampling in ("poisson", "shuffle"), f"unknown sampling {local.sampling!r}; allowed: poisson, shuffle"),
        (local.precision in PRECISIONS, f"unknown precision {local.precision!r}; allowed: {', '.join(PRECISIONS)}"),
        (cfg.accountant in ACCOUNTANTS, f"unknown accountant {cfg.accountant!r}; allowed: {', '.join(ACCOUNTANTS)}"),
        (cfg.count_steps in STEP_COUNTS, f"unknown count_steps {cfg.count_steps!r}; allowed: {', '.join(STEP_COUNTS)}"),
        (
            cfg.lr_schedule in LR_SCHEDULES,
            f"unknown lr_schedule {cfg.lr_schedule!r}; allowed: {', '.join(LR_SCHEDULES)}",
        ),
        (cfg.eval_every >= 1, f"eval_every must be >= 1, got {cfg.eval_every}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    if method.private:
        if cfg.epsilon is None:
            raise ValueError(f"method {cfg.method!r} is private: give a finite epsilon > 0")
        check_budget_inputs(cfg.epsilon, cfg.delta, 1.0, 1)
        if local.sampling == "shuffle":
            warnings.warn(
                "fixed-size batches only approximate the Poisson sampling that the accountant assumes; "
                "the reported epsilon is not a formal guarantee",
                stacklevel=3,
            )
    elif cfg.epsilon is not None:
        raise ValueError(f"method {cfg.method!r} is not private; set epsilon=None, got {cfg.epsilon}")


def budgeted_rounds(cfg: FederatedConfig, num_clients: int) -> int:
    """Rounds of ``K`` noisy steps the accountant budgets for one client.

    ``every-round``: ``rounds`` (conservative: as if picked every round).
    ``expected``: ``ceil(rounds * m / N)``; the server stops picking a client whose budget is
    spent (:func:`client_schedule`), so every round stays full while budget remains.
    """
    if cfg.count_steps == "every-round":
        return cfg.rounds
    return math.ceil(cfg.rounds * cfg.clients_per_round / num_clients)


def steps_per_client(cfg: FederatedConfig, num_clients: int) -> int:
    """Noisy steps the accountant budgets for one client: :func:`budgeted_rounds` times ``K``."""
    return budgeted_rounds(cfg, num_clients) * cfg.local.local_steps


def scheduled_lr(lr: float, round_index: int, rounds: int, schedule: str) -> float:
    """The learning rate of round ``t = round_index`` (0-based) of ``R = rounds``: ``lr`` (``constant``), or
    ``lr * (1 + cos(pi t / R)) / 2`` (``cosine``: from ``lr`` in the first round down towards 0 in the last)."""
    if schedule == "constant":
        return lr
    return lr * 0.5 * (1.0 + math.cos(math.pi * round_index / rounds))


def round_lr(cfg: FederatedConfig, round_index: int) -> float:
    """The clients' learning rate in round ``round_index`` (0-based) of ``cfg``: :func:`scheduled_lr`."""
    return scheduled_lr(cfg.local.lr, round_index, cfg.rounds, cfg.lr_schedule)


def evaluated(cfg: FederatedConfig, round_index: int) -> bool:
    """Whether the global model is evaluated after round ``round_index`` (0-based): every
    ``eval_every`` rounds and after the last one."""
    return (round_index + 1) % cfg.eval_every == 0 or round_index + 1 == cfg.rounds


def evaluation_count(rounds: int, eval_every: int) -> int:
    """How many of ``rounds`` rounds :func:`evaluated` picks: ``ceil(rounds / eval_every)``."""
    return -(-rounds // eval_every)


def evaluate_global(
    model: torch.nn.Module, test: Dataset, cfg: FederatedConfig, round_index: int
) -> tuple[float, float]:
    """``(accuracy, loss)`` of the global model after round ``round_index``, or NaNs in a round that
    :func:`evaluated` skips."""
    if not evaluated(cfg, round_index):
        return math.nan, math.nan
    return evaluate(model, test, cfg.eval_batch_size, cfg.local.precision)


def client_ledger(cfg: FederatedConfig, size: int, num_clients: int) -> PrivacyLedger:
    """A fresh ledger for a client holding ``size`` examples: its sample rate ``q = min(1, b / n)``
    and the noise multiplier that spends exactly ``cfg.epsilon`` over :func:`steps_per_client` steps."""
    q = min(1.0, cfg.local.batch_size / size)
    steps = steps_per_client(cfg, num_clients)
    sigma = calibrate_noise_multiplier(cfg.epsilon, cfg.delta, q, steps, cfg.accountant)
    return PrivacyLedger(sigma, q, cfg.epsilon, cfg.delta, cfg.accountant)


def make_ledgers(cfg: FederatedConfig, client_sizes: Sequence[int]) -> list[PrivacyLedger]:
    """One ledger per client (calibration is cached: equal sample rates are computed once)."""
    return [client_ledger(cfg, n, len(client_sizes)) for n in client_sizes]


def round_clients(cfg: FederatedConfig, round_index: int, num_clients: int) -> list[int]:
    """The clients the server asks to train in round ``round_index``: :func:`client_schedule` with
    the rounds each client's budget covers (:func:`budgeted_rounds`; all of them without DP)."""
    budget = budgeted_rounds(cfg, num_clients) if cfg.epsilon is not None else cfg.rounds
    return list(client_schedule(cfg.seed, cfg.rounds, num_clients, cfg.clients_per_round, budget)[round_index])


@dataclass
class ClientResult:
    """What one client sends back after a round: its upload, mean loss and the steps it took."""

    upload: dict[str, torch.Tensor]
    loss: float
    steps: int


def train_client(
    model: torch.nn.Module,
    params: dict[str, torch.nn.Parameter],
    head: Sequence[str],
    data: Dataset,
    cfg: FederatedConfig,
    round_index: int,
    client: int,
    ledger: PrivacyLedger | None,
    release: Release = noisy_gradient,
) -> ClientResult:
    """One client's round, identical in the simulator and in a Flower ClientApp.

    ``model`` must already hold the global state. The client trains the steps its ledger can
    afford (none once its budget is spent: it then uploads nothing), with dropout, batch
    sampling and noise seeded from ``(seed, round, client)`` (or OS entropy with
    ``secure_noise``), records them in the ledger and uploads the factors its method shares
    plus the head. ``release``: the DP release (:func:`~lalora_lite.training.step_gradient`).
    """
    method = get_method(cfg.method)
    steps, dp = cfg.local.local_steps, None
    if ledger is not None:
        steps = ledger.affordable_steps(steps)
        q = ledger.sample_rate
        dp = DPNoise(ledger.noise_multiplier, q, cfg.local.clip_norm, q * dataset_size(data))
    if steps == 0:
        return ClientResult({}, math.nan, 0)  # budget spent: the client sits this round out
    dropout_seed, noise_seed = np.random.SeedSequence([cfg.seed, round_index, client]).generate_state(2)
    torch.manual_seed(int(dropout_seed))  # LoRA and backbone dropout
    # batch sampling and DP noise: seeded (reproducible research runs) or from OS entropy
    generator = SecureRandom() if cfg.secure_noise else torch.Generator().manual_seed(int(noise_seed))
    local = dataclasses.replace(cfg.local, lr=round_lr(cfg, round_index))
    loss = local_update(model, params, data, method, round_index, steps, local, dp, generator, release=release)
    if ledger is not None:
        ledger.spend(steps)
    shared = method.uploads(round_index, cfg.local.local_steps)
    state = lora_state(model, head)
    return ClientResult({n: v for n, v in state.items() if factor_of(n) in shared or factor_of(n) is None}, loss, steps)


def fedavg(states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """Weighted average of each tensor over the states that contain it (weights renormalised per tensor)."""
    names = {n for s in states for n in s}
    out = {}
    for n in names:
        pairs = [(s[n], w) for s, w in zip(states, weights) if n in s]
        total = sum(w for _, w in pairs)
        out[n] = sum(t * (w / total) for t, w in pairs)
    return out


def upload_bytes(state: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


def aggregate(
    global_state: dict[str, torch.Tensor], results: Sequence[ClientResult], weights: Sequence[float]
) -> dict[str, torch.Tensor]:
    """The next global state: FedAvg of the uploads (in the given client order), the rest kept."""
    uploads = [r.upload for r in results if r.steps > 0]
    if not uploads:
        return global_state
    return {**global_state, **fedavg(uploads, [w for r, w in zip(results, weights) if r.steps > 0])}


def round_row(
    cfg: FederatedConfig,
    round_index: int,
    evaluation: tuple[float, float],
    results: Sequence[ClientResult],
    epsilon_spent: float,
    wall_s: float,
) -> dict:
    """One history row (the simulator and the Flower server write the same columns)."""
    trained = [r for r in results if r.steps > 0]
    return {
        "round": round_index + 1,
        "method": cfg.method,
        "epsilon_target": cfg.epsilon if cfg.epsilon is not None else math.inf,
        "seed": cfg.seed,
        "accuracy": evaluation[0],
        "loss": evaluation[1],
        "train_loss": float(np.nanmean([r.loss for r in trained])) if trained else math.nan,
        "epsilon_spent": epsilon_spent,
        "clients": len(trained),
        "local_steps": sum(r.steps for r in trained),
        "upload_bytes": sum(upload_bytes(r.upload) for r in trained),
        "wall_s": wall_s,
    }


def resume(path: Path | None, cfg: FederatedConfig) -> Checkpoint | None:
    """The checkpoint at ``path`` if there is one (it must have been made with ``cfg``), else ``None``.

    A setting added to the config after the checkpoint was written counts at its default (a run
    interrupted before an upgrade that added, e.g., ``LocalConfig.precision`` resumes)."""
    if path is None or not path.exists():
        return None
    ckpt = Checkpoint.load(path)
    try:
        stored = type(cfg).from_dict(ckpt.config).to_dict()
    except TypeError as err:
        raise ValueError(f"checkpoint {path} holds a config this version does not know ({err})") from None
    wanted = cfg.to_dict()
    if stored != wanted:
        changed = sorted(k for k in wanted if stored.get(k) != wanted[k])
        raise ValueError(f"checkpoint {path} was made with a different config (differs in: {changed})")
    return ckpt


@dataclass
class ServerState:
    """What the server holds between rounds: the next round's index, the global LoRA state, every
    client's ledger (``None`` for a non-private method) and the history so far. The simulator and the
    Flower server both keep one and save it as a :class:`Checkpoint` after every round."""

    cfg: FederatedConfig
    round: int
    global_state: dict[str, torch.Tensor]
    ledgers: list[PrivacyLedger] | None
    history: list[dict]

    @classmethod
    def start(
        cls,
        cfg: FederatedConfig,
        global_state: dict[str, torch.Tensor],
        client_sizes: Sequence[int],
        checkpoint: Path | None,
    ) -> ServerState:
        """Fresh ledgers and ``global_state`` at round 0, or the state saved in ``checkpoint``."""
        ledgers = make_ledgers(cfg, client_sizes) if get_method(cfg.method).private else None
        state = cls(cfg, 0, global_state, ledgers, [])
        if (ckpt := resume(checkpoint, cfg)) is not None:
            state.round, state.history, state.global_state = ckpt.round, ckpt.history, ckpt.global_state
            if ledgers is not None:
                state.ledgers = [PrivacyLedger.from_state_dict(s) for s in ckpt.ledgers]
        return state

    @property
    def epsilon_spent(self) -> float:
        """The largest epsilon any client has spent (``inf`` without DP)."""
        return max(l.epsilon for l in self.ledgers) if self.ledgers is not None else math.inf

    def save(self, path: Path) -> None:
        ledgers = [l.state_dict() for l in self.ledgers] if self.ledgers is not None else []
        Checkpoint(self.cfg.to_dict(), self.round, self.global_state, ledgers, self.history).save(path)


def _check_smoothable(backbone: Backbone, taps: int) -> None:
    for name, layer in lora_layers(backbone.model).items():
        if min(layer.in_features, layer.out_features) < min_features(taps):
            raise ValueError(f"a {taps}-tap filter needs >= {min_features(taps)} features; layer {name} has fewer")


def run_federated(
    backbone: Backbone,
    clients: Sequence[Dataset],
    test: Dataset,
    cfg: FederatedConfig,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    on_round_end: Callable[[dict], None] | None = None,
    on_client_end: Callable[[int, int, dict[str, torch.Tensor], ClientResult], None] | None = None,
    release: Release = noisy_gradient,
) -> pd.DataFrame:
    """Simulate federated LoRA fine-tuning; returns the per-round history (one row per round).

    ``backbone.model`` must already carry LoRA adapters (:func:`~lalora_lite.lora.inject_lora`).
    With ``checkpoint`` (a file path) the state is saved after every round, and a run
    whose checkpoint exists resumes from it (it must have been made with the same config).
    ``release`` replaces the DP release (the explanation study's arms only: ``lalora_lite.study.arms``).
    """
    method = get_method(cfg.method)
    validate(cfg, len(clients))
    model, head = backbone.model, backbone.head
    if not lora_layers(model):
        raise ValueError("the model has no LoRA layers; call inject_lora first")
    if method.smooth:
        _check_smoothable(backbone, cfg.local.filter_taps)
    sizes = [dataset_size(c) for c in clients]
    params = trainable_parameters(model, head)
    path = Path(checkpoint) if checkpoint is not None else None
    setup_start = time.perf_counter()
    server = ServerState.start(cfg, lora_state(model, head), sizes, path)  # calibrates every client's noise
    setup_s = time.perf_counter() - setup_start

    bar = tqdm(
        range(server.round, cfg.rounds), initial=server.round, total=cfg.rounds, desc=cfg.method, disable=not progress
    )
    last_accuracy = math.nan  # shown between evaluations instead of nan
    for t in bar:
        t0 = time.perf_counter()
        results, weights = [], []
        for c in round_clients(cfg, t, len(clients)):
            load_lora_state(model, server.global_state)
            ledger = server.ledgers[c] if server.ledgers is not None else None
            results.append(train_client(model, params, head, clients[c], cfg, t, c, ledger, release))
            if on_client_end is not None:  # (round, client, global state the client started from, its result)
                on_client_end(t, c, server.global_state, results[-1])
            weights.append(sizes[c] if cfg.weighted else 1.0)
        server.global_state = aggregate(server.global_state, results, weights)
        load_lora_state(model, server.global_state)
        t1 = time.perf_counter()
        evaluation = evaluate_global(model, test, cfg, t)
        row = round_row(cfg, t, evaluation, results, server.epsilon_spent, time.perf_counter() - t0)
        # where the time went (this session's setup; the round's training and evaluation)
        row |= {"setup_s": setup_s, "train_s": t1 - t0, "eval_s": time.perf_counter() - t1}
        server.history.append(row)
        server.round = t + 1
        last_accuracy = row["accuracy"] if not math.isnan(row["accuracy"]) else last_accuracy
        bar.set_postfix(acc=f"{last_accuracy:.3f}", eps=f"{row['epsilon_spent']:.2f}")  # the last evaluated
        if path is not None:
            server.save(path)
        if on_round_end is not None:
            on_round_end(row)
    load_lora_state(model, server.global_state)
    return pd.DataFrame(server.history)
