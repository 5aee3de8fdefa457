"""The federated simulation: client sampling, local updates, FedAvg, accounting, checkpoints.

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
from .data import Dataset, dataset_size
from .lora import factor_of, load_lora_state, lora_layers, lora_state, trainable_parameters
from .methods import get_method
from .models import Backbone
from .privacy import SecureRandom
from .smoothing import MIN_FEATURES
from .training import OPTIMIZERS, DPNoise, LocalConfig, evaluate, local_update

STEP_COUNTS = ("every-round", "expected")


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
    eval_batch_size: int = 256
    seed: int = 0
    secure_noise: bool = False  # DP noise and sampling from OS entropy (deployments; not reproducible)

    def to_dict(self) -> dict:
        return asdict(self)


def validate(cfg: FederatedConfig, num_clients: int) -> None:
    """Raise ``ValueError`` naming the first bad setting, before any work is done."""
    method = get_method(cfg.method)
    local = cfg.local
    checks = [
        (cfg.rounds >= 1, f"rounds must be >= 1, got {cfg.rounds}"),
        (1 <= cfg.clients_per_round <= num_clients,
         f"clients_per_round must be in [1, {num_clients}] (the number of clients), got {cfg.clients_per_round}"),
        (local.local_steps >= 1, f"local_steps must be >= 1, got {local.local_steps}"),
        (local.batch_size >= 1, f"batch_size must be >= 1, got {local.batch_size}"),
        (local.lr > 0, f"lr must be > 0, got {local.lr}"),
        (local.lr_b_multiplier > 0, f"lr_b_multiplier must be > 0, got {local.lr_b_multiplier}"),
        (local.clip_norm > 0, f"clip_norm must be > 0, got {local.clip_norm}"),
        (local.optimizer in OPTIMIZERS, f"unknown optimizer {local.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}"),
        (local.sampling in ("poisson", "shuffle"), f"unknown sampling {local.sampling!r}; allowed: poisson, shuffle"),
        (cfg.accountant in ACCOUNTANTS, f"unknown accountant {cfg.accountant!r}; allowed: {', '.join(ACCOUNTANTS)}"),
        (cfg.count_steps in STEP_COUNTS, f"unknown count_steps {cfg.count_steps!r}; allowed: {', '.join(STEP_COUNTS)}"),
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


def steps_per_client(cfg: FederatedConfig, num_clients: int) -> int:
    """Noisy steps the accountant budgets for one client.

    ``every-round``: ``rounds * K`` (conservative: as if picked every round).
    ``expected``: ``ceil(rounds * m / N) * K``; clients picked more often than that stop
    training when their budget is spent.
    """
    rounds = cfg.rounds if cfg.count_steps == "every-round" else math.ceil(cfg.rounds * cfg.clients_per_round / num_clients)
    return rounds * cfg.local.local_steps


def make_ledgers(cfg: FederatedConfig, client_sizes: Sequence[int]) -> list[PrivacyLedger]:
    """Calibrate one noise multiplier per client (its sample rate ``q_i = min(1, b / n_i)``)."""
    steps = steps_per_client(cfg, len(client_sizes))
    ledgers = []
    for n in client_sizes:  # calibrate_noise_multiplier is cached: equal sample rates are computed once
        q = min(1.0, cfg.local.batch_size / n)
        sigma = calibrate_noise_multiplier(cfg.epsilon, cfg.delta, q, steps, cfg.accountant)
        ledgers.append(PrivacyLedger(sigma, q, cfg.epsilon, cfg.delta, cfg.accountant))
    return ledgers


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


@dataclass
class Checkpoint:
    """What a run needs to continue after round ``round``."""

    config: dict
    round: int
    global_state: dict[str, torch.Tensor]
    ledgers: list[dict]
    history: list[dict]

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save(dataclasses.asdict(self), tmp)
        tmp.replace(path)  # atomic: an interruption never leaves a half-written checkpoint

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        """Read a checkpoint of tensors and plain types only (``weights_only=True``: nothing is unpickled
        that could run code); a foreign or tampered file is a ``ValueError`` naming the file."""
        try:
            state = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as err:  # noqa: BLE001 - every unreadable file gets the same clear message
            raise ValueError(f"{path} is not a readable lalora_lite checkpoint ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:200]}); delete it to start the run afresh") from None
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(state, dict) or set(state) != fields:
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"{path} is not a lalora_lite checkpoint: expected the fields {sorted(fields)}, "
                             f"found {found}")
        return cls(**state)


def _check_smoothable(backbone: Backbone) -> None:
    for name, layer in lora_layers(backbone.model).items():
        if min(layer.in_features, layer.out_features) < MIN_FEATURES:
            raise ValueError(f"the filter needs >= {MIN_FEATURES} features; layer {name} has fewer")


def run_federated(
    backbone: Backbone,
    clients: Sequence[Dataset],
    test: Dataset,
    cfg: FederatedConfig,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    on_round_end: Callable[[dict], None] | None = None,
) -> pd.DataFrame:
    """Simulate federated LoRA fine-tuning; returns the per-round history (one row per round).

    ``backbone.model`` must already carry LoRA adapters (:func:`~lalora_lite.lora.inject_lora`).
    With ``checkpoint`` (a file path) the state is saved after every round, and a run
    whose checkpoint exists resumes from it (it must have been made with the same config).
    """
    method = get_method(cfg.method)
    validate(cfg, len(clients))
    model, head = backbone.model, backbone.head
    if not lora_layers(model):
        raise ValueError("the model has no LoRA layers; call inject_lora first")
    if method.smooth:
        _check_smoothable(backbone)
    sizes = [dataset_size(c) for c in clients]
    params = trainable_parameters(model, head)
    ledgers = make_ledgers(cfg, sizes) if method.private else None

    path = Path(checkpoint) if checkpoint is not None else None
    start, history, global_state = 0, [], lora_state(model, head)
    if path is not None and path.exists():
        ckpt = Checkpoint.load(path)
        if ckpt.config != cfg.to_dict():
            changed = sorted(k for k in cfg.to_dict() if ckpt.config.get(k) != cfg.to_dict()[k])
            raise ValueError(f"checkpoint {path} was made with a different config (differs in: {changed})")
        start, history, global_state = ckpt.round, ckpt.history, ckpt.global_state
        if ledgers is not None:
            ledgers = [PrivacyLedger.from_state_dict(s) for s in ckpt.ledgers]

    bar = tqdm(range(start, cfg.rounds), initial=start, total=cfg.rounds, desc=cfg.method, disable=not progress)
    for t in bar:
        t0 = time.perf_counter()
        chosen = np.random.default_rng([cfg.seed, t]).choice(len(clients), cfg.clients_per_round, replace=False)
        uploads, weights, losses, steps_taken = [], [], [], 0
        shared = method.uploads(t, cfg.local.local_steps)
        for c in sorted(int(i) for i in chosen):
            steps = cfg.local.local_steps
            dp = None
            if ledgers is not None:
                steps = ledgers[c].affordable_steps(steps)
                q = ledgers[c].sample_rate
                dp = DPNoise(ledgers[c].noise_multiplier, q, cfg.local.clip_norm, q * sizes[c])
            if steps == 0:
                continue  # budget spent: the client sits this round out
            load_lora_state(model, global_state)
            dropout_seed, noise_seed = np.random.SeedSequence([cfg.seed, t, c]).generate_state(2)
            torch.manual_seed(int(dropout_seed))  # LoRA and backbone dropout
            # batch sampling and DP noise: seeded (reproducible research runs) or from OS entropy
            generator = SecureRandom() if cfg.secure_noise else torch.Generator().manual_seed(int(noise_seed))
            losses.append(local_update(model, params, clients[c], method, t, steps, cfg.local, dp, generator))
            if ledgers is not None:
                ledgers[c].spend(steps)
            steps_taken += steps
            state = lora_state(model, head)
            uploads.append({n: v for n, v in state.items() if factor_of(n) in shared or factor_of(n) is None})
            weights.append(sizes[c] if cfg.weighted else 1.0)
        if uploads:
            global_state = {**global_state, **fedavg(uploads, weights)}
        load_lora_state(model, global_state)
        accuracy, loss = evaluate(model, test, cfg.eval_batch_size)
        row = {
            "round": t + 1,
            "method": cfg.method,
            "epsilon_target": cfg.epsilon if cfg.epsilon is not None else math.inf,
            "seed": cfg.seed,
            "accuracy": accuracy,
            "loss": loss,
            "train_loss": float(np.nanmean(losses)) if losses else math.nan,
            "epsilon_spent": max(l.epsilon for l in ledgers) if ledgers is not None else math.inf,
            "clients": len(uploads),
            "local_steps": steps_taken,
            "upload_bytes": sum(upload_bytes(u) for u in uploads),
            "wall_s": time.perf_counter() - t0,
        }
        history.append(row)
        bar.set_postfix(acc=f"{accuracy:.3f}", eps=f"{row['epsilon_spent']:.2f}")
        if path is not None:
            Checkpoint(
                cfg.to_dict(), t + 1, global_state,
                [l.state_dict() for l in ledgers] if ledgers is not None else [], history,
            ).save(path)
        if on_round_end is not None:
            on_round_end(row)
    load_lora_state(model, global_state)
    return pd.DataFrame(history)
