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
    assert [n for n, m in METHODS.items() if m.smooth] == ["dp-lora+filter", "lalora", "lalora-authors"]
    assert [n for n, m in METHODS.items() if not m.private] == ["fedlora", "lalora-nodp"]
    assert schedule("lalora-authors") == schedule("lalora-nodp") == schedule("lalora")


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


def _one_step(method_name, steps=2, lr=0.3, release=None):
    """``steps`` local DP steps of ``method_name`` on a small model from one seed; the LoRA+head state after."""
    from lalora_lite.lora import lora_state, trainable_parameters
    from lalora_lite.privacy import noisy_gradient
    from lalora_lite.tasks import digits_swin
    from lalora_lite.training import DPNoise, LocalConfig, local_update

    task = digits_swin(num_clients=2, pretrain_steps=5)
    model, head = task.backbone.model, task.backbone.head
    params = trainable_parameters(model, head)
    torch.manual_seed(0)
    with torch.no_grad():  # B = 0 at init would hide A's step: start from a random B
        for name, p in params.items():
            if name.endswith("lora_B"):
                p.normal_(0, 0.05)
    start = lora_state(model, head)
    dp = DPNoise(1.0, 0.5, 1.0, 16.0)
    local_update(model, params, task.clients[0], get_method(method_name), 0, steps, LocalConfig(lr=lr), dp,
                 torch.Generator().manual_seed(1), release=release or noisy_gradient)  # fmt: skip
    return start, lora_state(model, head), task


def test_lalora_authors_differs_from_lalora_only_by_b_lr_and_the_extra_filter_step():
    """Step by step: with the same batches and noise, lalora-authors' step on a factor is
    ``-lr_f (g + filter(g))`` (lr_B = 2 lr) where lalora's is ``-lr filter(g)``; the head's step is the same."""
    from lalora_lite.lora import factor_of
    from lalora_lite.smoothing import smooth_factor_gradient

    released = []

    def recording(*args):
        from lalora_lite.privacy import noisy_gradient

        out = noisy_gradient(*args)
        released.append({n: g.clone() for n, g in out.items()})
        return out

    after_first = {}
    for steps in (1, 2):  # step 0 trains B (and the head), step 1 trains A (and the head)
        released.clear()
        start, la, _ = _one_step("lalora", steps, release=recording)
        la_grads = released[-1]
        released.clear()
        start_authors, authors, _ = _one_step("lalora-authors", steps, release=recording)
        authors_grads = released[-1]
        assert all(torch.equal(start[n], start_authors[n]) for n in start)
        if steps == 1:  # the first step from the same state: the same batch and noise, the same release
            assert all(torch.equal(la_grads[n], authors_grads[n]) for n in la_grads)
            for n, g in la_grads.items():
                kind = factor_of(n)
                if kind is None:
                    torch.testing.assert_close(authors[n], la[n])  # the head: one plain step in both
                    continue
                lr = 0.3 * (2.0 if kind == "B" else 1.0)
                smooth = smooth_factor_gradient(g, kind)
                torch.testing.assert_close(la[n], start[n] - 0.3 * smooth)
                torch.testing.assert_close(authors[n], start[n] - lr * (g + smooth))
            after_first = authors
        else:  # the second step trains A: A moves by -lr (g + filter(g)) at lr (not doubled), B stays
            names = [n for n in authors_grads if factor_of(n) == "A"]
            assert names, "the second step trains A"
            for n in names:
                g = authors_grads[n]
                expected = after_first[n] - 0.3 * (g + smooth_factor_gradient(g, "A"))
                torch.testing.assert_close(authors[n], expected)
            for n in (n for n in authors if factor_of(n) == "B"):
                assert torch.equal(authors[n], after_first[n])
    assert get_method("lalora-authors").trains is get_method("lalora").trains


def test_arms_are_study_only_and_compare_cannot_select_them():
    """The authors'-noise and clip-only arms are not methods: `lalora compare --methods` rejects them, a
    comparison's runs carry the default arm, and the arms say they are not private."""
    from lalora_lite.cli import build_parser
    from lalora_lite.study.arms import ARMS, DEFAULT
    from lalora_lite.study.runs import RunSpec

    for arm in ("authors-noise", "clip-only"):
        assert arm not in METHODS and not ARMS[arm].private
        with pytest.raises(SystemExit):
            build_parser().parse_args(["compare", "--task", "fmnist-swin", "--methods", arm])
    assert RunSpec("t", "cpu", "lalora", 1.0, 0, 0.1, 1.0, 80, "val").arm == DEFAULT
    assert "authors" not in RunSpec("t", "cpu", "lalora", 1.0, 0, 0.1, 1.0, 80, "val").run_id
    assert (
        RunSpec("t", "cpu", "lalora", 1.0, 0, 0.1, 1.0, 80, "val", "authors-noise").run_id.count("authors-noise") == 1
    )


def test_clip_only_arm_takes_the_private_runs_batches_without_noise():
    from lalora_lite.study.arms import clip_only_gradient

    g = {"w": torch.randn(6, 3, 4)}
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    from lalora_lite.privacy import clip_and_sum, noisy_gradient

    out = clip_only_gradient(g, 1.0, 5.0, 4.0, a)
    torch.testing.assert_close(out["w"], clip_and_sum(g, 1.0)["w"] / 4.0)
    noisy_gradient(g, 1.0, 5.0, 4.0, b)
    assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))  # the streams stay in step
