import math

import numpy as np
import pytest
import torch

from lalora_lite.data import dirichlet_partition, label_histogram
from lalora_lite.federated import (
    FederatedConfig,
    fedavg,
    round_lr,
    run_federated,
    steps_per_client,
)
from lalora_lite.lora import lora_state
from lalora_lite.sampling import client_schedule, sample_clients
from lalora_lite.tasks import digits_swin
from lalora_lite.training import LocalConfig, evaluate

FAST = LocalConfig(local_steps=6, batch_size=16, lr=0.1)


def test_dirichlet_partition_uses_every_example_once():
    labels = np.repeat(np.arange(10), 50)
    parts = dirichlet_partition(labels, 8, alpha=0.1, seed=3, min_size=5)
    everything = np.concatenate(parts)
    assert len(everything) == 500 and len(np.unique(everything)) == 500
    assert min(len(p) for p in parts) >= 5
    hist = label_histogram(labels, parts, 10)
    assert hist.sum() == 500 and hist.shape == (8, 10)
    # alpha = 0.1 is very skewed: most clients are dominated by a few classes
    assert np.median(hist.max(1) / hist.sum(1)) > 0.4
    again = dirichlet_partition(labels, 8, alpha=0.1, seed=3, min_size=5)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = dirichlet_partition(labels, 8, alpha=0.1, seed=4, min_size=5)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other))


def test_dirichlet_partition_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        dirichlet_partition(np.zeros(10), 2, alpha=0, seed=0)
    with pytest.raises(ValueError, match="cannot give"):
        dirichlet_partition(np.zeros(10), 4, alpha=1, seed=0, min_size=3)


def test_fedavg_uniform_weighted_and_partial():
    a = {"x": torch.tensor([1.0, 2.0]), "y": torch.tensor([0.0])}
    b = {"x": torch.tensor([3.0, 6.0])}
    torch.testing.assert_close(fedavg([a, b], [1, 1])["x"], torch.tensor([2.0, 4.0]))
    torch.testing.assert_close(fedavg([a, b], [1, 3])["x"], torch.tensor([2.5, 5.0]))
    torch.testing.assert_close(fedavg([a, b], [1, 3])["y"], torch.tensor([0.0]))  # only a uploaded y


def test_steps_per_client():
    cfg = FederatedConfig("lalora", rounds=10, clients_per_round=4, local=LocalConfig(local_steps=20))
    assert steps_per_client(cfg, 8) == 200
    assert (
        steps_per_client(
            FederatedConfig(
                "lalora", rounds=10, clients_per_round=4, local=LocalConfig(local_steps=20), count_steps="expected"
            ),
            8,
        )
        == 100
    )


@pytest.fixture(scope="module")
def task_factory():
    return lambda: digits_swin(num_clients=4, seed=0)


@pytest.mark.parametrize(
    "cfg, message",
    [
        (FederatedConfig("lalora", clients_per_round=5), r"clients_per_round must be in \[1, 4\]"),
        (FederatedConfig("fedlora", epsilon=1.0), "not private"),
        (FederatedConfig("dp-lora", epsilon=None), "give a finite epsilon"),
        (FederatedConfig("dp-lora", epsilon=-1.0), "epsilon must be"),
        (FederatedConfig("dp-lora", delta=2.0), "delta"),
        (FederatedConfig("la-lora"), "unknown method"),
        (FederatedConfig("lalora", local=LocalConfig(optimizer="adam")), "unknown optimizer 'adam'"),
        (FederatedConfig("lalora", accountant="gdp"), "unknown accountant"),
        (FederatedConfig("lalora", count_steps="sometimes"), "unknown count_steps"),
        (FederatedConfig("lalora", rounds=0), "rounds"),
        (FederatedConfig("lalora", lr_schedule="linear"), "unknown lr_schedule 'linear'; allowed: constant, cosine"),
        (FederatedConfig("lalora", eval_every=0), "eval_every must be >= 1"),
        (FederatedConfig("lalora", epsilon=1e-4, rounds=1000), "cannot be met"),
    ],
)
def test_bad_config_fails_before_training(task_factory, cfg, message):
    task = task_factory()
    before = lora_state(task.backbone.model, task.backbone.head)
    with pytest.raises(ValueError, match=message):
        run_federated(task.backbone, task.clients, task.test, cfg, progress=False)
    after = lora_state(task.backbone.model, task.backbone.head)
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_shuffle_sampling_warns(task_factory):
    task = task_factory()
    cfg = FederatedConfig(
        "dp-lora", rounds=1, clients_per_round=1, local=LocalConfig(local_steps=1, sampling="shuffle")
    )
    with pytest.warns(UserWarning, match="only approximate the Poisson"):
        run_federated(task.backbone, task.clients, task.test, cfg, progress=False)


def test_end_to_end_nonprivate_learns_and_lora_changes(task_factory):
    task = task_factory()
    untrained, _ = evaluate(task.backbone.model, task.test)
    start = lora_state(task.backbone.model, task.backbone.head)
    # 8 rounds: after 4 the non-IID digits task sat at +22.8 points on one CPU (0.394 vs 0.167), too close to call
    cfg = FederatedConfig("fedlora", rounds=8, clients_per_round=2, local=FAST, epsilon=None)
    history = run_federated(task.backbone, task.clients, task.test, cfg, progress=False)
    end = lora_state(task.backbone.model, task.backbone.head)
    assert history["accuracy"].iloc[-1] > untrained + 0.25, (untrained, history["accuracy"].tolist())
    for name in start:  # every factor and the head moved (guards the silent no-update failure)
        assert not torch.equal(start[name], end[name]), name
    assert list(history["round"]) == list(range(1, 9))
    assert (history["upload_bytes"] > 0).all()


def test_private_run_respects_budget_and_trains_only_scheduled_factors(task_factory):
    task = task_factory()
    start = lora_state(task.backbone.model, task.backbone.head)
    cfg = FederatedConfig("ffa-lora", rounds=3, clients_per_round=2, local=FAST, epsilon=2.0)
    history = run_federated(task.backbone, task.clients, task.test, cfg, progress=False)
    end = lora_state(task.backbone.model, task.backbone.head)
    assert (history["epsilon_spent"] <= 2.0).all() and history["epsilon_spent"].iloc[-1] > 0.5
    assert history["epsilon_spent"].is_monotonic_increasing
    for name in start:
        changed = not torch.equal(start[name], end[name])
        assert changed == (not name.endswith("lora_A")), name  # FFA-LoRA never moves A


def test_client_schedule_is_uniform_until_a_budget_binds():
    # without a binding budget: k of N uniformly with numpy's default_rng([seed, t]) (the reference draw)
    free = client_schedule(3, 40, 8, 4, rounds_per_client=40)
    for t in (0, 7, 39):
        reference = sorted(np.random.default_rng([3, t]).choice(8, 4, replace=False))
        assert list(free[t]) == reference == sample_clients(3, t, 8, 4)
    for seed in range(20):  # 40 rounds x 4 of 8 clients, budget for 20 rounds each
        schedule = client_schedule(seed, 40, 8, 4, rounds_per_client=20)
        assert all(len(c) == 4 == len(set(c)) for c in schedule)  # every round full
        assert np.bincount(np.concatenate(schedule), minlength=8).tolist() == [20] * 8  # every budget spent
        first_binding = next((t for t in range(40) if list(schedule[t]) != sample_clients(seed, t, 8, 4)), 40)
        assert first_binding >= 20  # identical to the uniform draws until some client has trained 20 rounds
    uniform = np.concatenate([sample_clients(1, t, 8, 4) for t in range(40)])
    assert np.bincount(uniform, minlength=8).max() > 20  # uniform picks over-pick (so the rule did act)
    # less budget than rounds x k: rounds shrink only when fewer than k clients have budget left
    short = client_schedule(2, 6, 5, 3, rounds_per_client=2)
    assert np.bincount(np.concatenate([np.array(c, int) for c in short]), minlength=5).tolist() == [2] * 5
    assert [len(c) for c in short] == [3, 3, 3, 1, 0, 0]


def test_expected_step_count_keeps_rounds_full_and_spends_every_budget(task_factory):
    task = task_factory()
    local = LocalConfig(local_steps=2, batch_size=16, lr=0.05)
    cfg = FederatedConfig("lalora", rounds=8, clients_per_round=3, local=local, epsilon=3.0, count_steps="expected")
    history = run_federated(task.backbone, task.clients, task.test, cfg, progress=False)
    budget_rounds = math.ceil(8 * 3 / 4)  # 6 rounds of 2 steps per client: 4 x 6 = 8 x 3 picks
    picks = np.zeros(4, int)
    for t in range(8):
        picks[np.random.default_rng([0, t]).choice(4, 3, replace=False)] += 1
    assert picks.max() > budget_rounds  # uniform picks would over-pick a client with this seed...
    assert (history["clients"] == 3).all()  # ...the server picks only clients with budget left
    assert history["local_steps"].sum() == 4 * budget_rounds * 2
    assert (history["epsilon_spent"] <= 3.0 + 1e-9).all()
    assert history["epsilon_spent"].iloc[-1] > 2.95  # every client spent (almost) all of its budget


def test_upload_sizes_follow_the_method(task_factory):
    sizes = {}
    for method in ("dp-lora", "ffa-lora"):
        task = task_factory()
        cfg = FederatedConfig(method, rounds=1, clients_per_round=2, local=LocalConfig(local_steps=1), epsilon=3.0)
        sizes[method] = run_federated(task.backbone, task.clients, task.test, cfg, progress=False)["upload_bytes"][0]
    assert sizes["ffa-lora"] < sizes["dp-lora"]


def test_resume_gives_the_same_result(task_factory, tmp_path):
    local = LocalConfig(local_steps=3, batch_size=16, lr=0.1)
    cfg = FederatedConfig("lalora", rounds=4, clients_per_round=2, local=local, epsilon=3.0, seed=7)

    task = task_factory()
    full = run_federated(task.backbone, task.clients, task.test, cfg, checkpoint=tmp_path / "a.pt", progress=False)
    full_state = lora_state(task.backbone.model, task.backbone.head)

    class Interrupt(Exception):
        pass

    def stop_after_two(row):
        if row["round"] == 2:
            raise Interrupt

    task = task_factory()
    with pytest.raises(Interrupt):
        run_federated(
            task.backbone,
            task.clients,
            task.test,
            cfg,
            checkpoint=tmp_path / "b.pt",
            progress=False,
            on_round_end=stop_after_two,
        )
    task = task_factory()  # a fresh process would rebuild everything
    resumed = run_federated(task.backbone, task.clients, task.test, cfg, checkpoint=tmp_path / "b.pt", progress=False)
    resumed_state = lora_state(task.backbone.model, task.backbone.head)

    columns = ["round", "accuracy", "loss", "epsilon_spent", "local_steps", "upload_bytes"]
    assert full[columns].equals(resumed[columns])
    for name in full_state:
        assert torch.equal(full_state[name], resumed_state[name]), name

    with pytest.raises(ValueError, match="different config.*epsilon"):
        other = FederatedConfig("lalora", rounds=4, clients_per_round=2, local=local, epsilon=2.0, seed=7)
        run_federated(task.backbone, task.clients, task.test, other, checkpoint=tmp_path / "b.pt", progress=False)


@pytest.mark.parametrize("method", ["lalora", "rolora"])
def test_alternating_methods_move_one_factor_at_a_time(task_factory, method):
    from lalora_lite.lora import trainable_parameters
    from lalora_lite.methods import get_method
    from lalora_lite.training import DPNoise, local_update

    moved = {}
    for steps in (1, 2):
        task = task_factory()
        model = task.backbone.model
        params = trainable_parameters(model, task.backbone.head)
        data = task.clients[0]
        dp = DPNoise(1.0, 16 / len(data["labels"]), 1.0, 16.0)
        before = lora_state(model, task.backbone.head)
        local_update(model, params, data, get_method(method), 0, steps, LocalConfig(), dp, torch.Generator())
        after = lora_state(model, task.backbone.head)
        moved[steps] = {
            kind: any(not torch.equal(before[n], after[n]) for n in before if n.endswith(kind))
            for kind in ("lora_A", "lora_B", "head.fc.weight")
        }
    assert moved[1] == {"lora_A": False, "lora_B": True, "head.fc.weight": True}  # B first
    # LA-LoRA's second step trains A; RoLoRA keeps training B for the whole round
    assert moved[2]["lora_A"] == (method == "lalora")


def test_cosine_schedule_and_sparse_evaluation(task_factory, monkeypatch):
    cfg = FederatedConfig(
        "lalora", rounds=4, clients_per_round=2, local=FAST, epsilon=3.0, lr_schedule="cosine", eval_every=3
    )
    assert [round_lr(cfg, t) for t in range(4)] == pytest.approx(
        [0.1, 0.1 * (1 + math.cos(math.pi / 4)) / 2, 0.05, 0.1 * (1 + math.cos(3 * math.pi / 4)) / 2]
    )
    assert round_lr(FederatedConfig("lalora", local=FAST), 7) == 0.1  # constant by default
    seen = []
    import lalora_lite.federated as federated

    real = federated.local_update
    monkeypatch.setattr(federated, "local_update", lambda *a, **k: seen.append(a[6].lr) or real(*a, **k))
    task = task_factory()
    history = run_federated(task.backbone, task.clients, task.test, cfg, progress=False)
    assert seen == pytest.approx([round_lr(cfg, t) for t in range(4) for _ in range(2)])  # what clients trained with
    assert history["accuracy"].isna().tolist() == [True, True, False, False]  # round 3 and the last
    assert (history[["train_s", "setup_s"]] > 0).all().all() and (history["eval_s"] >= 0).all()


def test_a_checkpoint_from_before_a_new_setting_resumes_at_its_default(tmp_path):
    """A run interrupted before LocalConfig.precision existed (its stored config lacks the key) resumes;
    a stored value that differs from the run's, or a key this version does not know, is an error."""
    from lalora_lite.checkpoint import Checkpoint
    from lalora_lite.federated import resume

    cfg = FederatedConfig("lalora", rounds=4, clients_per_round=2, epsilon=3.0)
    old = cfg.to_dict()
    del old["local"]["precision"]
    Checkpoint(old, 2, {}, [], []).save(tmp_path / "old.pt")
    assert resume(tmp_path / "old.pt", cfg).round == 2
    fp16 = FederatedConfig("lalora", rounds=4, clients_per_round=2, epsilon=3.0, local=LocalConfig(precision="fp16"))
    with pytest.raises(ValueError, match=r"different config \(differs in: \['local'\]\)"):
        resume(tmp_path / "old.pt", fp16)
    future = cfg.to_dict() | {"quantum": True}
    Checkpoint(future, 2, {}, [], []).save(tmp_path / "future.pt")
    with pytest.raises(ValueError, match="holds a config this version does not know"):
        resume(tmp_path / "future.pt", cfg)
