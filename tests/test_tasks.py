"""Task builders: the offline stand-ins at the smoke profile, the paper tasks on local stand-ins."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from lalora_lite.federated import FederatedConfig, run_federated
from lalora_lite.lora import lora_layers
from lalora_lite.study.search import check_grid
from lalora_lite.tasks import TASKS, build_task, get_profile
from lalora_lite.tasks.profiles import PAPER_TEXT, PAPER_VISION
from lalora_lite.training import LocalConfig


def test_fmnist_swin_smoke():
    task = build_task("fmnist-swin", "smoke", seed=0)
    profile = get_profile("fmnist-swin", "smoke")
    assert len(task.clients) == 8 and sum(len(c["labels"]) for c in task.clients) == profile.train_size
    assert len(task.val["labels"]) == 200 and len(task.test["labels"]) == 300
    assert task.test["pixel_values"].dtype == torch.uint8 and task.test["pixel_values"].shape[1:] == (1, 28, 28)
    assert set(task.test["labels"].tolist()) <= set(range(5)) and task.class_names[0] == "Sandal"
    assert task.backbone.head == ("net.head",) and len(lora_layers(task.backbone.model)) == 8
    assert "stand-in" in task.description
    # non-IID: Dirichlet(0.1) gives most clients a dominant class
    shares = [np.bincount(c["labels"].numpy(), minlength=5).max() / len(c["labels"]) for c in task.clients]
    assert np.median(shares) > 0.5


def test_wordnet_minilm_smoke():
    task = build_task("wordnet-minilm", "smoke", seed=0)
    assert len(task.clients) == 20 and task.test["hidden_states"].shape == (100, 32, 384)  # layers 1-4 cached
    assert len(task.class_names) == 8 and {"artifact", "person", "plant", "animal"} <= set(task.class_names)
    assert sorted(set(task.test["labels"].tolist())) == list(range(8))
    names = list(lora_layers(task.backbone.model))
    assert len(names) == 6 and all(n.rsplit(".", 1)[1] in ("query", "key", "value") for n in names)  # layers 5-6


def test_a_backbone_loaded_from_a_folder_prints_no_weight_loading_bar(capfd):
    from transformers.utils import logging as hf_logging

    from lalora_lite.models import minilm

    minilm(4)
    assert "Loading weights" not in capfd.readouterr().err  # it would sit between a study's progress bars
    assert hf_logging.is_progress_bar_enabled()  # and a later download from the Hub keeps its bars


def test_unknown_task_and_profile():
    with pytest.raises(ValueError, match="unknown task 'mnist'.*fmnist-swin"):
        build_task("mnist", "cpu", 0)
    with pytest.raises(ValueError, match="no 'paper' profile; it has: smoke, cpu"):
        build_task("fmnist-swin", "paper", 0)
    with pytest.raises(ValueError, match="no 'cpu' profile; it has: paper"):
        build_task("cifar100-swin-b", "cpu", 0)


def one_private_step(task, profile):
    """One LA-LoRA step with the profile's optimizer and precision (colab: the forward pass in fp16)."""
    local = LocalConfig(local_steps=1, batch_size=2, optimizer=profile.optimizer, precision=profile.precision)
    cfg = FederatedConfig("lalora", rounds=1, clients_per_round=1, local=local, epsilon=3.0)
    return run_federated(task.backbone, task.clients, task.test, cfg, progress=False)


def test_colab_profiles_sit_between_cpu_and_paper():
    """Same federation shapes as the paper, subsets of its data, fp16 forward, the cpu protocol's grid."""
    for task, paper in (("cifar100-swin-t", PAPER_VISION), ("sst2-roberta", PAPER_TEXT)):
        colab = get_profile(task, "colab")
        assert (colab.num_clients, colab.clients_per_round, colab.dirichlet_alpha) == (
            paper.num_clients,
            paper.clients_per_round,
            paper.dirichlet_alpha,
        )
        assert colab.train_size < paper.train_size and colab.rounds < paper.rounds
        assert colab.precision == "fp16" and paper.precision == "fp32"
        assert len(colab.lr_grid) == len(colab.clip_grid) == 3 and colab.search_rounds == colab.rounds
    assert get_profile("qnli-roberta", "colab").max_length == 128  # sentence pairs need the room
    for spec in TASKS.values():  # every profile's grids are ones the search accepts
        for profile in spec.profiles.values():
            check_grid("lr_grid", profile.lr_grid)
            check_grid("clip_grid", profile.clip_grid)
    with pytest.raises(ValueError, match="no 'colab' profile; it has: paper"):
        get_profile("cifar100-swin-b", "colab")  # Swin-B is the paper profile's; colab runs Swin-T


@pytest.mark.parametrize("profile_name", ["colab", "paper"])
def test_paper_vision_task_on_a_local_stand_in(tmp_path, profile_name):
    """Same data format as uoft-cs/cifar100 (img, fine_label), a tiny config of the same timm Swin at 224 px
    with window 7; one private step per profile (per-example gradients one per image: window folding)."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = {
        "img": [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(24)],
        "fine_label": [i % 3 for i in range(24)],
    }
    split = datasets.Dataset.from_dict(rows)
    datasets.DatasetDict({"train": split, "test": split.select(range(6))}).save_to_disk(tmp_path / "cifar")
    spec = TASKS["cifar100-swin-t"]
    spec = dataclasses.replace(
        spec,
        source={
            **spec.source,
            "dataset": str(tmp_path / "cifar"),
            "pretrained": False,
            "model_kwargs": {"embed_dim": 24, "depths": (1, 1), "num_heads": (1, 2)},
        },
    )
    profile = dataclasses.replace(
        get_profile("cifar100-swin-t", profile_name),
        train_size=16,
        val_size=4,
        min_client_size=1,
        num_clients=2,
        clients_per_round=1,
    )
    task = spec.builder(spec, profile, 0)
    assert task.test["pixel_values"].shape == (6, 3, 32, 32)  # stored small, resized to 224 inside the model
    assert task.backbone.model.size == 224 and len(task.class_names) == 3
    assert task.backbone.model.net.layers[0].blocks[0].attn.window_size == (7, 7)
    history = one_private_step(task, profile)
    assert history["epsilon_spent"].iloc[0] > 0


@pytest.mark.parametrize("profile_name", ["colab", "paper"])
def test_paper_glue_task_on_a_local_stand_in(tmp_path, profile_name):
    """Same format as nyu-mll/glue qnli; a tiny RobertaForSequenceClassification saved like roberta-base."""
    import datasets
    from transformers import AutoTokenizer, RobertaConfig, RobertaForSequenceClassification

    from lalora_lite.models import minilm_path

    rows = {
        "question": [f"what is {i}?" for i in range(24)],
        "sentence": [f"it is {i}." for i in range(24)],
        "label": [i % 2 for i in range(24)],
    }
    split = datasets.Dataset.from_dict(rows)
    datasets.DatasetDict({"train": split, "validation": split.select(range(6))}).save_to_disk(tmp_path / "glue")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = RobertaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=160,
    )
    RobertaForSequenceClassification(config).save_pretrained(tmp_path / "roberta")
    tokenizer.save_pretrained(tmp_path / "roberta")
    spec = TASKS["qnli-roberta"]
    spec = dataclasses.replace(
        spec, source={**spec.source, "dataset": str(tmp_path / "glue"), "model": str(tmp_path / "roberta")}
    )
    profile = dataclasses.replace(
        get_profile("qnli-roberta", profile_name),
        train_size=16,
        val_size=4,
        min_client_size=1,
        num_clients=2,
        clients_per_round=1,
    )
    task = spec.builder(spec, profile, 0)
    assert task.test["input_ids"].shape == (6, 128)  # the paper's max length (and colab's for sentence pairs)
    assert len(lora_layers(task.backbone.model)) == 3
    history = one_private_step(task, profile)
    assert history["epsilon_spent"].iloc[0] > 0


def test_shipped_backbone_is_what_pretraining_rebuilds():
    """The 1,500-step stand-in backbone in lalora_lite/weights is what :func:`pretrain_fmnist_swin` makes
    (~1 min on 2 threads). Bit for bit only on the kind of CPU that built it: on an AVX2 machine with 2
    threads the rebuild equalled the file, on an AVX-512 one (even with the kernels pinned to AVX2) every
    weight differs after 1,500 AdamW steps (largest difference 0.045 native, 0.066 pinned). So the test
    checks what holds everywhere: the loader uses the file, pretraining is deterministic on this machine,
    and a fresh rebuild classifies the 5,000 public-class test images (never seen in pretraining) as well
    as the shipped backbone, to within 1.5 points (3 binomial standard errors)."""
    from lalora_lite.tasks.fmnist import (
        PUBLIC_CLASSES,
        SHIPPED_WEIGHTS,
        fmnist_classes,
        pretrain_fmnist_swin,
        pretrained_fmnist_swin,
    )
    from lalora_lite.training import evaluate

    shipped = torch.load(SHIPPED_WEIGHTS / "fmnist-swin-public-1500steps.pt", weights_only=True)
    loaded = pretrained_fmnist_swin(1500)
    assert all(torch.equal(loaded.model.state_dict()[k], shipped[k]) for k in shipped)  # the loader uses the file
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the thread count the shipped file was built with
    try:
        first, again = (pretrain_fmnist_swin(20).model.state_dict() for _ in range(2))
        rebuilt = pretrain_fmnist_swin(1500)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(first[k], again[k]) for k in first)  # deterministic on one machine
    assert set(rebuilt.model.state_dict()) == set(shipped)
    public_test = fmnist_classes("test", PUBLIC_CLASSES)
    shipped_acc, _ = evaluate(loaded.model, public_test)
    rebuilt_acc, _ = evaluate(rebuilt.model, public_test)
    assert shipped_acc > 0.8, shipped_acc  # a backbone worth transferring
    assert abs(rebuilt_acc - shipped_acc) < 0.015, (rebuilt_acc, shipped_acc)


@pytest.mark.parametrize("task", ["fmnist-swin", "wordnet-minilm"])
def test_transfer_report_trains_head_then_lora_centrally_and_writes_it(task, tmp_path):
    """``lalora pretrain``'s report: the centralised, non-private reference, with as many steps as one
    federated run (smoke: 2 rounds x 2 steps x 4 clients), its learning rate searched like the
    comparison's (lalora_lite.study.search; smoke's grid is one point)."""
    import json

    from lalora_lite.study.transfer import transfer_report

    report = transfer_report(task, "smoke", tmp_path)
    profile = get_profile(task, "smoke")
    assert report["steps"] == profile.rounds * profile.local_steps * profile.clients_per_round == 16
    for key in (
        "fresh_head_val_accuracy",
        "head_only_val_accuracy",
        "lora_and_head_val_accuracy",
        "head_only_test_accuracy",
        "lora_and_head_test_accuracy",
    ):
        assert 0.0 <= report[key] <= 1.0
    for name in ("head_only", "lora_and_head"):
        by_lr = report[f"{name}_val_accuracy_by_lr"]
        assert list(by_lr) == [f"{lr:g}" for lr in profile.lr_grid]  # one point: no edge to widen (search.py)
        assert report[f"{name}_val_accuracy"] == by_lr[f"{report[f'{name}_lr']:g}"]
        assert report[f"{name}_on_edge"] == ""
    assert json.loads((tmp_path / task / "smoke" / "transfer.json").read_text()) == report


def test_cached_backbone_appears_only_when_written_in_full(tmp_path, monkeypatch):
    """A backbone pretrained for a step count that is not shipped is cached; the cache file must never
    be visible half-written (two xdist workers building the smoke backbone at once once made one of them
    read a truncated file: 'PytorchStreamReader failed reading file'). It is written under another name
    and renamed."""
    from lalora_lite.tasks import fmnist as tasks

    monkeypatch.setenv("LALORA_CACHE", str(tmp_path))
    monkeypatch.setattr(tasks, "pretrain_fmnist_swin", lambda steps: tasks._fmnist_backbone(seed=0))  # no training
    final = tmp_path / "fmnist-swin-public-7steps.pt"
    written, save = [], torch.save

    def watched_save(obj, target):
        written.append((Path(target).name, final.exists()))
        save(obj, target)

    monkeypatch.setattr(tasks.torch, "save", watched_save)
    built = tasks.pretrained_fmnist_swin(7)
    assert len(written) == 1 and written[0][0] != final.name and not written[0][1]  # not under the final name
    assert sorted(p.name for p in tmp_path.iterdir()) == [final.name]  # renamed, nothing left over
    monkeypatch.setattr(tasks.torch, "save", save)
    loaded = tasks.pretrained_fmnist_swin(7)  # read back from the cache
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in built.model.state_dict().items())


def test_the_wide_stand_in_has_swin_b_widths_and_takes_a_private_step_on_a_cpu(tmp_path, monkeypatch):
    """fmnist-swin-wide: widths 192/384/768 at its default size; at a tiny size (the tests' architecture) it
    builds on a CPU, pretrains, caches its backbone, and a DP federated round moves LoRA and spends epsilon."""
    from lalora_lite.federated import FederatedConfig, run_federated
    from lalora_lite.tasks import build_task, get_profile
    from lalora_lite.tasks.fmnist_wide import WIDE, wide_backbone
    from lalora_lite.training import LocalConfig

    net = wide_backbone(WIDE).model.net
    assert [layer.blocks[0].attn.qkv.in_features for layer in net.layers] == [192, 384, 768]
    assert 30e6 < sum(p.numel() for p in net.parameters()) < 40e6
    gpu = get_profile("fmnist-swin-wide", "gpu")
    assert (gpu.rank, gpu.lora_alpha, gpu.local_steps, gpu.precision) == (16, 16, 20, "fp16")

    monkeypatch.setenv("LALORA_CACHE", str(tmp_path))
    task = build_task("fmnist-swin-wide", "smoke", seed=0, pretrain_device="cpu")  # the tiny Swin
    assert [p.name.startswith("fmnist-swin-wide-") for p in tmp_path.iterdir()] == [True]  # the cached backbone
    before = {n: p.detach().clone() for n, p in task.backbone.model.named_parameters() if n.endswith("lora_B")}
    local = LocalConfig(local_steps=1, batch_size=8, lr=0.5, clip_norm=1.0)
    cfg = FederatedConfig("lalora", rounds=1, clients_per_round=1, epsilon=3.0, local=local)
    history = run_federated(task.backbone, task.clients, task.val, cfg, progress=False)
    after = dict(task.backbone.model.named_parameters())
    assert history["epsilon_spent"].iloc[-1] > 0
    assert any(not torch.equal(before[n], after[n]) for n in before)
