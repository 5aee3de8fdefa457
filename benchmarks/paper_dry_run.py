"""A dry run of the ``paper`` profile: its architectures with random weights, on synthetic data in
the exact formats of the hub datasets, through the code path of ``lalora compare`` (task builder,
``federated_config``, ``run_federated``), for a few rounds per method; then the cost of a full
paper run, extrapolated in GPU-hours.

What is synthetic (and why the timing still holds): the pixels, the sentences and the weights.
Time per round depends on the architectures, the batch size, the local steps and the evaluation
set sizes, which are the paper profile's; it does not depend on the weights' values or on the
number of private training examples (a client's expected batch is the same), so the private pool
is smaller than the paper's to keep the dry run short.

* ``cifar100-swin-b``: a ``save_to_disk`` DatasetDict with ``img`` (32 px PIL), ``fine_label``
  (100 classes), ``coarse_label``, as ``uoft-cs/cifar100``; test split of 10,000 images (the real
  size); timm ``swin_base_patch4_window7_224`` with random weights (``pretrained=False``).
* ``sst2-roberta``: ``sentence``/``label``/``idx`` with train/validation/test as
  ``nyu-mll/glue`` sst2 (872 validation sentences, the real size); a RoBERTa-base-sized
  ``RobertaForSequenceClassification`` with random weights and a word-level tokenizer that uses
  RoBERTa's special-token ids, saved with ``save_pretrained`` and read back by the task builder.

Usage:
  python benchmarks/paper_dry_run.py --device cuda                 (the paper's sizes; a GPU)
  python benchmarks/paper_dry_run.py --scale tiny --rounds 1       (tiny configs; what CI runs)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lalora_lite.federated import evaluation_count, run_federated  # noqa: E402
from lalora_lite.methods import get_method  # noqa: E402
from lalora_lite.study.comparison import planned_runs  # noqa: E402
from lalora_lite.study.runs import RunSpec, federated_config, resolve_device  # noqa: E402
from lalora_lite.tasks import TASKS, get_profile  # noqa: E402
from lalora_lite.tasks.profiles import PAPER_TEXT, PAPER_VISION
from lalora_lite.training import evaluate  # noqa: E402

TASK_NAMES = ("cifar100-swin-b", "sst2-roberta")
SPECIAL = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}  # RoBERTa's ids
WORDS = 2_000
# sizes: (private pool = val + train, test) per task and scale; the paper's test sets are real-sized
SIZES = {
    "paper": {"cifar100-swin-b": (6_000, 10_000), "sst2-roberta": (20_000, 872)},
    "tiny": {"cifar100-swin-b": (600, 40), "sst2-roberta": (600, 40)},
}


def cifar100_like(folder: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """A DatasetDict with the columns and features of ``uoft-cs/cifar100``."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(seed)
    features = datasets.Features(
        {
            "img": datasets.Image(),
            "fine_label": datasets.ClassLabel(num_classes=100),
            "coarse_label": datasets.ClassLabel(num_classes=20),
        }
    )

    def split(n: int) -> datasets.Dataset:
        fine = rng.integers(0, 100, n)
        images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]
        return datasets.Dataset.from_dict(
            {"img": images, "fine_label": fine, "coarse_label": fine // 5}, features=features
        )

    datasets.DatasetDict({"train": split(n_train), "test": split(n_test)}).save_to_disk(folder)
    return folder


def sst2_like(folder: Path, n_train: int, n_val: int, seed: int = 0) -> Path:
    """A DatasetDict with the columns and features of ``nyu-mll/glue`` sst2 (test labels are -1)."""
    import datasets

    rng = np.random.default_rng(seed)
    features = datasets.Features(
        {
            "sentence": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["negative", "positive"]),
            "idx": datasets.Value("int32"),
        }
    )

    def split(n: int, labelled: bool = True) -> datasets.Dataset:
        sentences = [" ".join(f"w{w}" for w in rng.integers(0, WORDS, rng.integers(4, 50))) for _ in range(n)]
        labels = rng.integers(0, 2, n) if labelled else np.full(n, -1)
        return datasets.Dataset.from_dict(
            {"sentence": sentences, "label": labels, "idx": np.arange(n)}, features=features
        )

    datasets.DatasetDict(
        {"train": split(n_train), "validation": split(n_val), "test": split(n_val, labelled=False)}
    ).save_to_disk(folder)
    return folder


def roberta_folder(folder: Path, scale: str) -> Path:
    """A randomly initialised RoBERTa classifier (roberta-base's sizes at scale ``paper``) and a
    word-level tokenizer with RoBERTa's special tokens, saved as ``from_pretrained`` expects."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaForSequenceClassification

    vocab = {**SPECIAL, **{f"w{i}": len(SPECIAL) + i for i in range(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"],
    )
    torch.manual_seed(0)
    if scale == "paper":
        config = RobertaConfig(num_labels=2)  # roberta-base: 12 layers, hidden 768, vocab 50,265
    else:
        config = RobertaConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=160,
            num_labels=2,
        )
    RobertaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def task_and_profile(name: str, scale: str, workdir: Path, args: argparse.Namespace):
    """The paper task spec pointed at the synthetic data (and model), and its profile with a smaller pool."""
    pool, test = SIZES[scale][name]
    spec = TASKS[name]
    if name == "cifar100-swin-b":
        source = {"dataset": str(cifar100_like(workdir / "cifar100", pool, test)), "pretrained": False}
        if scale == "tiny":  # the same timm class at 224 px with window 7, far fewer channels and blocks
            source["model_kwargs"] = {"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 2, 2)}
        profile = PAPER_VISION
    else:
        source = {
            "dataset": str(sst2_like(workdir / "sst2", pool, test)),
            "model": str(roberta_folder(workdir / "roberta", scale)),
        }
        profile = PAPER_TEXT
    spec = dataclasses.replace(spec, source={**spec.source, **source})
    val = pool // 6
    profile = dataclasses.replace(
        profile, train_size=pool - val, val_size=val, local_steps=args.local_steps or profile.local_steps
    )
    if scale == "tiny":  # small clients: a small batch keeps the sample rate (and calibration time) low
        profile = dataclasses.replace(profile, min_client_size=5, batch_size=4)
    return spec, profile


def dry_run(
    name: str,
    scale: str,
    methods: list[str],
    rounds: int,
    epsilon: float,
    device: torch.device,
    workdir: Path,
    args: argparse.Namespace,
) -> dict:
    spec, profile = task_and_profile(name, scale, workdir, args)
    out = {"task": name, "scale": scale, "profile": dataclasses.asdict(profile), "methods": {}}
    for method in methods:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        task = spec.builder(spec, profile, 0)
        task.backbone.model.to(device)
        build_s = time.perf_counter() - t0
        eps = epsilon if get_method(method).private else None
        run = RunSpec(name, "paper", method, eps, 0, profile.lr_grid[0], profile.clip_grid[0], rounds, "test")
        cfg = federated_config(run, profile)
        history = run_federated(task.backbone, task.clients, task.test, cfg, progress=True)
        t0 = time.perf_counter()
        evaluate(task.backbone.model, task.test, cfg.eval_batch_size)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        eval_s = time.perf_counter() - t0
        n_test = len(task.test["labels"])
        out["methods"][method] = {
            "build_s": build_s,
            "round_wall_s": history["wall_s"].tolist(),
            "eval_s": eval_s,
            "eval_examples": n_test,
            "train_s_per_round": max(history["wall_s"].iloc[-1] - eval_s, 0.0),
            "local_steps_per_round": history["local_steps"].tolist(),
            "accuracy": history["accuracy"].tolist(),
            "epsilon_spent": history["epsilon_spent"].tolist(),
            "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        }
        print(json.dumps({name: {method: out["methods"][method]}}, default=str), file=sys.stderr)
        del task
    return out


def paper_cost(result: dict) -> dict:
    """GPU-hours of a full ``paper``-profile ``lalora compare`` on this task, from the measured rounds.

    Training time per round: the slowest measured method (the others train fewer or the same factors).
    Evaluation time: measured per example, scaled to the paper profile's validation set (the dry run
    shrinks the private pool, not the profile) and to the measured test set, at every evaluated round.
    """
    profile = get_profile(result["task"], "paper")
    measured = result["methods"].values()
    train = max(m["train_s_per_round"] for m in measured)
    per_eval_example = max(m["eval_s"] / m["eval_examples"] for m in measured)
    test_examples = max(m["eval_examples"] for m in measured)
    # every private method searches its grid at every budget (no widening counted); fedlora its lrs once
    search_runs, final_runs = (sum(n) for n in zip(*(planned_runs(profile, m) for m in profile.methods)))
    one_search = (
        profile.search_rounds * train
        + evaluation_count(profile.search_rounds, profile.eval_every) * per_eval_example * profile.val_size
    )
    one_final = (
        profile.rounds * train + evaluation_count(profile.rounds, profile.eval_every) * per_eval_example * test_examples
    )
    return {
        "train_s_per_round": train,
        "eval_s_per_1000_examples": 1000 * per_eval_example,
        "search_runs": search_runs,
        "final_runs": final_runs,
        "rounds_per_final_run": profile.rounds,
        "search_gpu_hours": search_runs * one_search / 3600,
        "final_gpu_hours": final_runs * one_final / 3600,
        "total_gpu_hours": (search_runs * one_search + final_runs * one_final) / 3600,
        "one_final_run_hours": one_final / 3600,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scale", choices=("paper", "tiny"), default="paper")
    parser.add_argument("--tasks", nargs="+", choices=TASK_NAMES, default=list(TASK_NAMES))
    parser.add_argument("--methods", nargs="+", default=["lalora", "dp-lora"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--local-steps", type=int, default=None, help="default: the paper profile's (20)")
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    for m in args.methods:
        get_method(m)
    if args.rounds < 1:
        raise SystemExit(f"--rounds must be >= 1, got {args.rounds}")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    env = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.tasks:
            result = dry_run(name, args.scale, args.methods, args.rounds, args.epsilon, device, Path(tmp) / name, args)
            result["cost"] = paper_cost(result)
            results.append(result)
            print(json.dumps({name: result["cost"]}), file=sys.stderr)
    out = Path(args.out or Path(__file__).parent / "results" / f"paper_dry_run-{args.scale}-{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"env": env, "results": results}, indent=2, default=str))
    for r in results:
        c = r["cost"]
        print(
            f"{r['task']}: train {c['train_s_per_round']:.1f} s/round, eval {c['eval_s_per_1000_examples']:.2f} "
            f"s/1000 examples; one final run {c['one_final_run_hours']:.2f} h; full paper compare "
            f"{c['total_gpu_hours']:.1f} GPU-h ({c['search_runs']} search + {c['final_runs']} final runs)"
        )
        for m, v in r["methods"].items():
            peak = f", peak {v['peak_gpu_mb']:.0f} MB" if v["peak_gpu_mb"] else ""
            print(f"  {m}: rounds {[f'{s:.1f}' for s in v['round_wall_s']]} s{peak}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
