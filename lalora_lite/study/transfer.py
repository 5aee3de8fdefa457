"""How good is the stand-in backbone? Non-private, centralised transfer from the public pretraining.

The centralised reference the federated runs are held against, on the union of the clients' data of seed
0's split: the fresh head alone (chance level), training only the head (a linear probe of the pretrained
features), and LoRA + head. A training takes as many steps as one federated run puts together, ``rounds
x clients_per_round x local_steps``, in ``rounds`` chunks at the federated runs' learning rate of each
round (:func:`~lalora_lite.federated.scheduled_lr`: the profile's schedule), and its learning rate is
searched like the comparison's (:class:`~lalora_lite.study.search.GridSearch` over the profile's lr
grid, widened off its edges). The report gives the chosen rate, its validation and test accuracy, and
every rate's validation accuracy.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import torch

from ..data import Dataset
from ..federated import scheduled_lr
from ..lora import trainable_parameters
from ..methods import Method, get_method
from ..models import Backbone
from ..tasks import build_task, get_profile
from ..tasks.profiles import Profile
from ..training import LocalConfig, evaluate, local_update
from .search import GridSearch

HEAD_ONLY = Method("head-only", lambda t, k: frozenset(), private=False, description="linear probe")
NO_CLIP = 1.0  # the searches' clip axis has one value: nothing is clipped without DP


def train_centralised(backbone: Backbone, data: Dataset, method: Method, profile: Profile, lr: float) -> None:
    """Train ``backbone`` in place, without noise: ``profile.rounds`` chunks of ``clients_per_round x
    local_steps`` steps on ``data``, chunk ``t`` at :func:`~lalora_lite.federated.scheduled_lr` of round ``t``
    (batches and dropout seeded with 0)."""
    local = LocalConfig(
        local_steps=profile.local_steps, batch_size=profile.batch_size, lr=lr, optimizer=profile.optimizer
    )
    params = trainable_parameters(backbone.model, backbone.head)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    steps = profile.clients_per_round * profile.local_steps
    for t in range(profile.rounds):
        local_update(
            backbone.model,
            params,
            data,
            method,
            t,
            steps,
            replace(local, lr=scheduled_lr(lr, t, profile.rounds, profile.lr_schedule)),
            None,
            generator,
        )


def transfer_report(task: str, profile_name: str, results_dir: Path) -> dict[str, object]:
    """The three references of ``task`` at ``profile_name``, written to ``results/<task>/<profile>/transfer.json``."""
    profile = get_profile(task, profile_name)
    built = build_task(task, profile_name, seed=0)
    pooled = {k: torch.cat([c[k] for c in built.clients]) for k in built.clients[0]}
    report: dict[str, object] = {
        "task": task,
        "profile": profile_name,
        "split_seed": 0,
        "steps": profile.rounds * profile.clients_per_round * profile.local_steps,
        "lr_schedule": profile.lr_schedule,
        "fresh_head_val_accuracy": evaluate(built.backbone.model, built.val)[0],
    }
    for name, method in (("head_only", HEAD_ONLY), ("lora_and_head", get_method("fedlora"))):
        search = GridSearch(method.name, None, profile.lr_grid, (NO_CLIP,), profile.max_widen, profile.val_size)
        tests: dict[float, float] = {}
        while True:
            for lr, clip in search.pending():
                backbone = copy.deepcopy(built.backbone)
                train_centralised(backbone, pooled, method, profile, lr)
                search.scores[(lr, clip)] = evaluate(backbone.model, built.val)[0]
                tests[lr] = evaluate(backbone.model, built.test)[0]
            if not search.widen():
                break
        lr, _ = search.best()
        report |= {
            f"{name}_lr": lr,
            f"{name}_val_accuracy": search.scores[(lr, NO_CLIP)],
            f"{name}_test_accuracy": tests[lr],
            f"{name}_on_edge": " ".join(search.edges()),
            f"{name}_val_accuracy_by_lr": {f"{p:g}": search.scores[(p, NO_CLIP)] for p, _ in search.points()},
        }
    out = results_dir / task / profile_name
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer.json").write_text(json.dumps(report, indent=2))
    return report
