"""What a run will cost, before it starts: time from FLOPs and measured throughputs, memory from the graph.

**FLOPs.** The task's real architecture (timm Swin, Hugging Face RoBERTa) is built on the ``meta``
device (no weights, no download), LoRA is injected as in a run, and one forward pass runs under
``torch.utils.flop_counter.FlopCounterMode``: ``F`` forward FLOPs per example.

**Time.** A device's *effective rate* is ``F_ref * examples / seconds`` of a measured reference
(:data:`MEASURED`): the same FLOP counter on the reference architecture, divided into a measured
DP training round or evaluation. A run's training time is ``F * examples_trained / rate_train``, its
evaluation time ``F * examples_evaluated / rate_eval``. Rates are per model family (vision, text)
because attention over windows and over tokens use a device differently. The T4 has no measurement
yet: its rates are the H100's scaled by the ratio of dense peaks (65 fp16 tensor TFLOP/s on a T4,
494.7 TF32 TFLOP/s on an H100 SXM), labelled as an assumption. At batch 16 the H100 ran far below
its peak, so the T4 figure is likely pessimistic.

**Memory.** Weights (float32) + the tensors autograd saves for the backward pass of one DP step
(counted with ``saved_tensors_hooks`` on the meta graph, float32: an upper bound under fp16) +
three float32 copies of the per-example gradients (raw, clipped, summed with noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from ..federated import evaluation_count
from ..lora import BERT_TARGETS, SWIN_TARGETS, inject_lora, trainable_parameters
from ..tasks import TaskSpec, get_profile, get_task
from ..tasks.profiles import Profile
from .comparison import planned_runs


@dataclass(frozen=True)
class Measurement:
    """One measured reference: its architecture, what it processed and how long it took."""

    family: str  # "vision" or "text"
    model: str  # timm name or "roberta-base"
    size: int  # image side or tokens
    examples_per_round: int
    train_s_per_round: float
    eval_s_per_1000: float
    source: str


MEASURED = {
    "h100": (
        Measurement(
            "vision",
            "swin_base_patch4_window7_224",
            224,
            1280,
            6.1407,
            0.5461,
            "benchmarks/results/paper_dry_run-paper-cuda.json (cifar100-swin-b, dp-lora)",
        ),
        Measurement(
            "text",
            "roberta-base",
            128,
            1280,
            3.5866,
            0.1662,
            "benchmarks/results/paper_dry_run-paper-cuda.json (sst2-roberta, dp-lora)",
        ),
    ),
}
T4_OVER_H100 = 65.0 / 494.7  # dense peaks: T4 fp16 tensor cores / H100 SXM TF32 (an assumption, not a measurement)
DEVICES = ("t4", "h100")


def _meta_model(
    family: str, model: str, num_classes: int, **model_kwargs: object
) -> tuple[torch.nn.Module, tuple, tuple]:
    """The architecture with LoRA-ready targets, on the meta device: (model, head names, LoRA targets)."""
    with torch.device("meta"):
        if family == "vision":
            import timm

            net = timm.create_model(model, pretrained=False, num_classes=num_classes, **model_kwargs)
            return net, ("head",), SWIN_TARGETS
        from transformers import AutoConfig, AutoModelForSequenceClassification

        config = AutoConfig.for_model("roberta", num_labels=num_classes)  # roberta-base's sizes are the defaults
        return AutoModelForSequenceClassification.from_config(config), ("classifier",), BERT_TARGETS


def _example_input(family: str, size: int, batch: int) -> dict[str, torch.Tensor]:
    if family == "vision":
        return {"x": torch.empty(batch, 3, size, size, device="meta")}
    return {"input_ids": torch.zeros(batch, size, dtype=torch.long, device="meta")}


@dataclass(frozen=True)
class Graph:
    """Forward FLOPs per example and the memory of one DP step at ``batch`` examples."""

    forward_flops: float
    weights_bytes: int
    saved_bytes: int
    per_example_bytes: int

    @property
    def step_memory_bytes(self) -> int:
        return self.weights_bytes + self.saved_bytes + self.per_example_bytes


@lru_cache(maxsize=16)
def measure_graph(
    family: str, model: str, size: int, batch: int, rank: int = 8, num_classes: int = 100, **model_kwargs: object
) -> Graph:
    """FLOPs and step memory of ``model`` with LoRA (rank ``rank``, A and B trainable) on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    net, head, targets = _meta_model(family, model, num_classes, **model_kwargs)
    inject_lora(net, targets, rank=rank, alpha=float(rank), head=head)
    trainable = trainable_parameters(net, head)
    for p in trainable.values():
        p.requires_grad_(True)
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    counter = FlopCounterMode(display=False)
    with counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        inputs = _example_input(family, size, batch)
        net(*inputs.values()) if family == "vision" else net(**inputs)
    weights = sum(p.numel() * 4 for p in net.parameters())
    per_example = 3 * batch * sum(p.numel() * 4 for p in trainable.values())
    return Graph(counter.get_total_flops() / batch, weights, saved, per_example)


@lru_cache(maxsize=4)
def rates(device: str) -> dict[str, tuple[float, float]]:
    """family -> (training, evaluation) effective forward-FLOP rates per second on ``device``."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r} for an estimate; allowed: {', '.join(DEVICES)}")
    out = {}
    for m in MEASURED["h100"]:
        flops = measure_graph(m.family, m.model, m.size, batch=1).forward_flops
        train, evaluate = flops * m.examples_per_round / m.train_s_per_round, flops * 1000 / m.eval_s_per_1000
        factor = T4_OVER_H100 if device == "t4" else 1.0
        out[m.family] = (train * factor, evaluate * factor)
    return out


def _task_graph(spec: TaskSpec, profile: Profile) -> tuple[str, Graph]:
    src = spec.source
    if "image_key" in src:
        name = src["model"].split(".")[0]
        return "vision", measure_graph("vision", name, src.get("image_size", 224), profile.batch_size, profile.rank)
    return "text", measure_graph("text", "roberta-base", profile.max_length, profile.batch_size, profile.rank, 2)


def estimate(task: str, profile_name: str, device: str, eval_size: int | None = None) -> dict[str, float]:
    """Estimated seconds per round, per run and for the whole comparison, and GB per DP step, of
    ``task`` at ``profile_name`` on ``device``. ``eval_size``: examples per final-run evaluation
    (default: the profile's test size, else the whole test split's)."""
    spec, profile = get_task(task), get_profile(task, profile_name)
    if not spec.source:
        raise ValueError(f"{task!r} is an offline stand-in; its cost is measured by benchmarks/compare_profile.py")
    family, graph = _task_graph(spec, profile)
    train_rate, eval_rate = rates(device)[family]
    per_round = profile.clients_per_round * profile.local_steps * profile.batch_size
    n_eval = eval_size or profile.test_size or spec.source["test_examples"]
    train_round_s = graph.forward_flops * per_round / train_rate
    eval_s = graph.forward_flops * n_eval / eval_rate
    val_eval_s = graph.forward_flops * profile.val_size / eval_rate

    def run_s(rounds: int, one_eval_s: float) -> float:
        return rounds * train_round_s + evaluation_count(rounds, profile.eval_every) * one_eval_s

    search, final = (sum(n) for n in zip(*(planned_runs(profile, m) for m in profile.methods)))
    pairs = sum(1 if m == "fedlora" else len(profile.epsilons) for m in profile.methods)
    total_s = search * run_s(profile.search_rounds, val_eval_s) + final * run_s(profile.rounds, eval_s)
    return {
        "forward_gflop_per_example": graph.forward_flops / 1e9,
        "train_s_per_round": train_round_s,
        "eval_s": eval_s,
        "run_min": run_s(profile.rounds, eval_s) / 60,
        "runs": search + final,
        "method_budget_pairs": pairs,
        "hours_per_method_and_budget": total_s / pairs / 3600,
        "compare_hours": total_s / 3600,
        "step_memory_gb": graph.step_memory_bytes / 1e9,
    }


def device_kinds(device: str) -> tuple[str, ...]:
    """The estimate(s) to print for a run on ``device`` (a torch device name): the card's own when it
    is one of :data:`DEVICES`, else all of them."""
    if device.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device)).lower()
        mine = tuple(d for d in DEVICES if d in name)
        if mine:
            return mine
    return DEVICES


def estimate_line(task: str, profile_name: str, device: str) -> str:
    """One line for ``lalora compare`` to print before a long run."""
    e = estimate(task, profile_name, device)
    note = " (T4: H100 measurement scaled by peak ratio, an assumption)" if device == "t4" else ""
    return (
        f"estimate on {device}{note}: {e['train_s_per_round']:.1f} s per round, {e['run_min']:.1f} min per run, "
        f"{e['hours_per_method_and_budget']:.1f} h per method and budget, {e['compare_hours']:.1f} h for all "
        f"{e['runs']} runs; about {e['step_memory_gb']:.1f} GB per DP step (lalora_lite.study.estimate)"
    )
