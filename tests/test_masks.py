"""The masks: the paper's formulas, parameter budgets, combination, the float32 cut-off."""

import functools

import pytest
import torch

from gmmvit.nn.masks import (ElementwiseLearnableMask, GaussianMixtureMask, NoMask, gaussian_reference,
                          squared_distance_grid)


def test_distance_grid_is_squared_patch_distance():
    d2 = squared_distance_grid(3)
    assert d2.shape == (9, 9)
    assert d2[0, 8] == 8  # (0,0) to (2,2)
    assert d2[1, 3] == 2  # (0,1) to (1,0)
    assert torch.equal(d2, d2.T) and torch.all(d2.diagonal() == 0)


def test_gmm_values_follow_the_formula_on_a_small_grid():
    torch.manual_seed(0)
    mask = GaussianMixtureMask(num_heads=2, grid_size=3, num_kernels=3)
    d2 = squared_distance_grid(3)
    expected = torch.zeros(2, 9, 9, dtype=torch.float64)
    for h in range(2):
        for k in range(3):
            s2 = mask.sigma[k, h, 0, 0].double() ** 2 + 1e-5
            expected[h] += mask.alpha[k, h, 0, 0].double() * torch.exp(-d2.double() / (2 * s2))
    torch.testing.assert_close(mask.values().double(), expected, rtol=1e-5, atol=1e-6)


def test_gmm_matches_the_authors_float32_computation_including_underflow_on_16x16():
    torch.manual_seed(1)
    mask = GaussianMixtureMask(num_heads=4, grid_size=16)
    d2 = squared_distance_grid(16)
    ours = mask.values().detach()
    theirs = gaussian_reference(16, mask.sigma.detach(), mask.alpha.detach())
    # pow() of a float32 (sub)normal vs exp(): the two float32 roundings differ in the 4th digit
    torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-3)
    far = d2 >= 104
    assert far.any()
    assert torch.all(ours[:, far] == 0), "exp(-d2) underflows to 0 in float32 beyond d2 = 104"


def test_gmm_exact_tails_keep_the_far_gaussians():
    torch.manual_seed(1)
    mask = GaussianMixtureMask(num_heads=4, grid_size=16, exact_tails=True)
    far = squared_distance_grid(16) >= 104
    assert torch.all(mask.values()[:, far] != 0)


def test_gmm_gradients_are_finite_where_the_base_map_underflows():
    mask = GaussianMixtureMask(num_heads=2, grid_size=16)
    mask.values().sum().backward()
    assert torch.isfinite(mask.sigma.grad).all() and torch.isfinite(mask.alpha.grad).all()


def test_gmm_has_2KH_parameters_and_the_papers_init():
    torch.manual_seed(0)
    mask = GaussianMixtureMask(num_heads=12, grid_size=8, num_kernels=5)
    assert sum(p.numel() for p in mask.parameters()) == 2 * 5 * 12
    big = GaussianMixtureMask(num_heads=1000, grid_size=2, num_kernels=5)
    assert big.sigma.mean().item() == pytest.approx(10, abs=0.5)
    assert big.sigma.std().item() == pytest.approx(10, abs=0.5)
    assert big.alpha.mean().item() == pytest.approx(0, abs=0.1)
    assert big.alpha.std().item() == pytest.approx(2, abs=0.1)


def test_elm_is_one_zero_initialised_NxN_weight_shared_by_heads():
    mask = ElementwiseLearnableMask(num_heads=12, grid_size=8)
    assert [p.shape for p in mask.parameters()] == [torch.Size([1, 64, 64])]
    scores = torch.randn(2, 12, 64, 64)
    assert torch.all(mask(scores) == 0), "mul with zeros: attention starts uniform"


@pytest.mark.parametrize("combine", ["mul", "add"])
def test_mask_combines_with_scores_by_multiplying_or_adding(combine):
    torch.manual_seed(0)
    mask = GaussianMixtureMask(num_heads=3, grid_size=4, combine=combine)
    scores = torch.randn(2, 3, 16, 16)
    m = mask.values()
    expected = scores * m if combine == "mul" else scores + m
    torch.testing.assert_close(mask(scores), expected)


@pytest.mark.parametrize("combine,identity", [("mul", 1.0), ("add", 0.0)])
def test_prefix_tokens_keep_their_scores(combine, identity):
    mask = GaussianMixtureMask(num_heads=2, grid_size=4, num_prefix_tokens=1, combine=combine)
    full = mask.full()
    assert full.shape == (2, 17, 17)
    assert torch.all(full[:, 0, :] == identity) and torch.all(full[:, :, 0] == identity)
    torch.testing.assert_close(full[:, 1:, 1:], mask.values())


def test_no_mask_passes_scores_through():
    scores = torch.randn(2, 3, 5, 5)
    assert NoMask()(scores) is scores


def test_unknown_combination_is_refused():
    with pytest.raises(ValueError, match="combine"):
        functools.partial(GaussianMixtureMask, combine="sub")(num_heads=1, grid_size=2)
