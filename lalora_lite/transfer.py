"""How good is the stand-in backbone? Non-private, centralised transfer from the public pretraining.

Three numbers on the validation split: the fresh head alone (chance level), training only the
head (a linear probe of the pretrained features), and LoRA + head. Both trainings take as many
steps as one federated run of the profile, on the union of the clients' data.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .lora import trainable_parameters
from .methods import Method, get_method
from .tasks import build_task, get_profile
from .training import LocalConfig, evaluate, local_update

HEAD_ONLY = Method("head-only", lambda t, k: frozenset(), private=False, description="linear probe")


def transfer_report(task: str, profile_name: str, results_dir: Path) -> dict[str, float | int | str]:
    profile = get_profile(task, profile_name)
    steps = profile.rounds * profile.local_steps * profile.clients_per_round
    report: dict[str, float | int | str] = {"task": task, "profile": profile_name, "steps": steps}
    for method in (HEAD_ONLY, get_method("fedlora")):
        built = build_task(task, profile_name, seed=0)
        model = built.backbone.model
        if method is HEAD_ONLY:
            report["fresh_head_val_accuracy"] = evaluate(model, built.val)[0]
        pooled = {k: torch.cat([c[k] for c in built.clients]) for k in built.clients[0]}
        params = trainable_parameters(model, built.backbone.head)
        cfg = LocalConfig(local_steps=steps, batch_size=profile.batch_size, lr=max(profile.lr_grid),
                          optimizer=profile.optimizer)
        local_update(model, params, pooled, method, 0, steps, cfg, None, torch.Generator().manual_seed(0))
        name = "head_only" if method is HEAD_ONLY else "lora_and_head"
        report[f"{name}_val_accuracy"] = evaluate(model, built.val)[0]
    out = results_dir / task / profile_name
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer.json").write_text(json.dumps(report, indent=2))
    return report
