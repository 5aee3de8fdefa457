import torch

from lalora_lite.privacy import clip_and_sum, noisy_gradient, per_example_norms, poisson_batch


def per_example_fixture():
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([0.1, 0.5, 2.0, 10.0, 100.0]).view(5, 1, 1)
    return {
        "a": torch.randn(5, 3, 4, generator=g) * scales,
        "b": torch.randn(5, 7, generator=g) * scales.view(5, 1),
    }


def test_each_example_is_clipped_over_all_tensors():
    per_example = per_example_fixture()
    norms = per_example_norms(per_example)
    expected_norms = torch.sqrt(per_example["a"].pow(2).sum((1, 2)) + per_example["b"].pow(2).sum(1))
    torch.testing.assert_close(norms, expected_norms)
    clip = 1.0
    for i in range(5):  # clip one example at a time: its contribution has norm min(||g_i||, C)
        one = {n: g[i : i + 1] for n, g in per_example.items()}
        clipped = clip_and_sum(one, clip)
        norm = torch.sqrt(sum(t.pow(2).sum() for t in clipped.values()))
        assert norm <= clip * (1 + 1e-6)
        if norms[i] <= clip:  # examples inside the ball are untouched
            torch.testing.assert_close(clipped["a"], per_example["a"][i])
        else:
            torch.testing.assert_close(norm, torch.tensor(clip))
    # the sum is the sum of the individually clipped examples
    total = clip_and_sum(per_example, clip)
    manual = sum(per_example["a"][i] * min(1.0, clip / norms[i].item()) for i in range(5))
    torch.testing.assert_close(total["a"], manual)


def test_noise_std_is_sigma_c_over_b():
    sigma, clip, b = 1.3, 0.7, 16.0
    zeros = {"w": torch.zeros(1, 400, 500)}
    noisy = noisy_gradient(zeros, clip, sigma, b, torch.Generator().manual_seed(0))["w"]
    expected = sigma * clip / b
    # 200k samples: the sample std is within 1% of the truth with overwhelming probability
    assert abs(noisy.std().item() / expected - 1) < 0.01
    assert abs(noisy.mean().item()) < 5 * expected / 400
    empty_batch = {"w": torch.zeros(0, 400, 500)}  # an empty Poisson batch still releases noise
    empty = noisy_gradient(empty_batch, clip, sigma, b, torch.Generator().manual_seed(1))["w"]
    assert empty.shape == (400, 500) and abs(empty.std().item() / expected - 1) < 0.01


def test_without_noise_the_gradient_is_clipped_sum_over_expected_batch():
    per_example = per_example_fixture()
    out = noisy_gradient(per_example, 1.0, 0.0, 8.0)
    summed = clip_and_sum(per_example, 1.0)
    for n in per_example:
        torch.testing.assert_close(out[n], summed[n] / 8.0)


def test_poisson_sampling_rate():
    g = torch.Generator().manual_seed(0)
    sizes = [len(poisson_batch(1000, 0.05, g)) for _ in range(400)]
    mean = sum(sizes) / len(sizes)
    assert 49.0 < mean < 51.0  # expected 50, std of the mean about 0.34
    assert len(set(sizes)) > 5  # the batch size really varies


def test_the_fused_release_has_the_bits_of_the_per_tensor_formula():
    """noisy_gradient adds the noise and divides with foreach kernels; every tensor must equal
    ``(clipped sum + noise) / b_expected`` computed tensor by tensor, bit for bit."""
    from lalora_lite.privacy import clip_and_sum, gaussian_noise, noisy_gradient

    per_example = {f"t{i}": torch.randn(5, 3, i + 2, generator=torch.Generator().manual_seed(i)) for i in range(4)}
    released = noisy_gradient(per_example, 0.7, 1.3, 4.5, torch.Generator().manual_seed(9))
    summed = clip_and_sum(per_example, 0.7)
    noise = gaussian_noise(summed, 1.3 * 0.7, torch.Generator().manual_seed(9))
    assert list(released) == list(per_example)
    assert all(torch.equal(released[n], (summed[n] + noise[n]) / 4.5) for n in summed)
