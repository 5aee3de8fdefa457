import pytest
import torch

from lalora_lite.smoothing import smooth_factor_gradient, smooth_rows


def test_hand_computed_example():
    # x = [0, 0, 16, 0, 0, 0]; reflect-padded: [16, 0 | 0, 0, 16, 0, 0, 0 | 0, 0]
    # out[j] = (p[j] + 4 p[j+1] + 6 p[j+2] + 4 p[j+3] + p[j+4]) / 16
    # out[0] = (16 + 16) / 16 = 2 (the spike reflected into the left padding), then 4, 6, 4, 1, 0
    x = torch.tensor([[0.0, 0.0, 16.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(smooth_rows(x), torch.tensor([[2.0, 4.0, 6.0, 4.0, 1.0, 0.0]]))
    # y = [16, 0, 0, 0]; padded: [0, 0 | 16, 0, 0, 0 | 0, 0] -> [6, 4, 1, 0]
    y = torch.tensor([[16.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(smooth_rows(y), torch.tensor([[6.0, 4.0, 1.0, 0.0]]))


def test_constants_pass_and_axes_are_right():
    torch.testing.assert_close(smooth_rows(torch.full((2, 7), 3.0)), torch.full((2, 7), 3.0))
    grad_a = torch.zeros(2, 8)  # (r, n): filter along n only, ranks never mix
    grad_a[0, 4] = 16.0
    out_a = smooth_factor_gradient(grad_a, "A")
    assert torch.all(out_a[1] == 0)
    torch.testing.assert_close(out_a[0, 2:7], torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]))
    grad_b = grad_a.T.contiguous()  # (m, r): filter along m only
    torch.testing.assert_close(smooth_factor_gradient(grad_b, "B"), out_a.T)


def test_bad_input():
    with pytest.raises(ValueError, match="at least 3"):
        smooth_rows(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="factor"):
        smooth_factor_gradient(torch.zeros(3, 3), "C")


def test_binomial_widths_are_the_discrete_gaussians_and_five_taps_is_the_paper_kernel():
    from lalora_lite.smoothing import binomial_kernel, min_features, white_noise_gain

    assert binomial_kernel() == (1.0, 4.0, 6.0, 4.0, 1.0)
    assert binomial_kernel(3) == (1.0, 2.0, 1.0)
    for taps in (3, 5, 9, 17):
        k = torch.tensor(binomial_kernel(taps)) / sum(binomial_kernel(taps))
        offsets = torch.arange(taps) - taps // 2
        torch.testing.assert_close((k * offsets**2).sum(), torch.tensor((taps - 1) / 4))  # variance (taps-1)/4
    assert abs(white_noise_gain(5) - (70**0.5) / 16) < 1e-12  # sqrt(1+16+36+16+1)/16 = 0.523
    assert white_noise_gain(3) > white_noise_gain(5) > white_noise_gain(9) > white_noise_gain(17)
    x = torch.randn(3, 40)
    torch.testing.assert_close(smooth_rows(torch.full((2, 9), 3.0), taps=17), torch.full((2, 9), 3.0))
    assert not torch.allclose(smooth_rows(x, taps=3), smooth_rows(x, taps=9))
    assert min_features(17) == 9
    with pytest.raises(ValueError, match="9 features"):
        smooth_rows(torch.zeros(2, 8), taps=17)
    with pytest.raises(ValueError, match="odd and >= 3"):
        binomial_kernel(4)
