import pytest
import torch

from lalora_lite.methods import METHODS, get_method


def schedule(name, rounds=3, steps=4):
    m = get_method(name)
    return ["".join(sorted(m.active(t, k))) for t in range(rounds) for k in range(steps)]


def test_schedules_over_three_rounds():
    assert schedule("dp-lora") == ["AB"] * 12
    assert schedule("fedlora") == ["AB"] * 12
    assert schedule("ffa-lora") == ["B"] * 12
    assert schedule("rolora") == ["B"] * 4 + ["A"] * 4 + ["B"] * 4
    assert schedule("lalora") == ["B", "A", "B", "A"] * 3  # B first in every round
    assert schedule("lalora-nofilter") == schedule("lalora")
    assert schedule("dp-lora+filter") == schedule("dp-lora")
    assert schedule("dp-head") == [""] * 12  # only the head trains


def test_uploads_filter_and_privacy():
    up = {name: [sorted(m.uploads(t, 4)) for t in range(2)] for name, m in METHODS.items()}
    assert up["ffa-lora"] == [["B"], ["B"]]
    assert up["rolora"] == [["B"], ["A"]]
    assert up["lalora"] == [["A", "B"], ["A", "B"]]
    assert up["dp-lora"] == [["A", "B"], ["A", "B"]]
    assert up["dp-head"] == [[], []]  # the head only (it is always uploaded)
    assert [n for n, m in METHODS.items() if m.smooth] == ["dp-lora+filter", "lalora"]
    assert [n for n, m in METHODS.items() if not m.private] == ["fedlora"]


def test_unknown_method_lists_known_ones():
    with pytest.raises(ValueError, match="unknown method 'la-lora'.*lalora"):
        get_method("la-lora")


def test_dp_head_trains_only_the_head_and_is_as_private_as_any_method():
    """The head-only control moves no LoRA factor, uploads the head only, and its clients' noise and ledgers
    are those of every other private method at the same budget."""
    from lalora_lite.federated import FederatedConfig, run_federated
    from lalora_lite.lora import lora_state
    from lalora_lite.tasks import digits_swin
    from lalora_lite.training import LocalConfig

    local = LocalConfig(local_steps=3, batch_size=16, lr=0.5, clip_norm=1.0)
    ledgers = {}
    for method in ("dp-head", "dp-lora"):
        task = digits_swin(num_clients=4, pretrain_steps=30)
        model, head = task.backbone.model, task.backbone.head
        before = lora_state(model, head)
        cfg = FederatedConfig(method, rounds=2, clients_per_round=2, epsilon=2.0, local=local)
        history = run_federated(task.backbone, task.clients, task.test, cfg, progress=False)
        after = lora_state(model, head)
        moved = {n for n in before if not torch.equal(before[n], after[n])}
        ledgers[method] = history[["epsilon_spent", "local_steps"]].to_numpy().tolist()
        if method == "dp-head":
            assert moved and all(n.split(".")[-1] not in ("lora_A", "lora_B") for n in moved), moved
        else:
            assert any(n.endswith("lora_B") for n in moved)
    assert ledgers["dp-head"] == ledgers["dp-lora"]  # same sigma, same steps, same epsilon spent
