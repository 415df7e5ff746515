import math

import pytest
import torch

from fillgap.errors import FillgapError
from fillgap.train.losses import (
    CompositeLoss,
    PatchDiscriminator,
    discriminator_adversarial,
    fft_l1,
    focal_frequency,
    generator_adversarial,
    hole_l1,
    l1,
    mse,
    tv_border,
)


def test_pixel_losses_hand_computed():
    pred = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 3.0]]]])
    hole = torch.tensor([[[[1.0, 0.0]]]])
    assert l1(pred, target, hole) == pytest.approx(2.0)
    assert mse(pred, target, hole) == pytest.approx(5.0)
    # hole weight 3: (3*1 + 1*3) / (3 + 1)
    assert l1(pred, target, hole, hole_weight=3.0) == pytest.approx(1.5)
    assert hole_l1(pred, target, hole) == pytest.approx(1.0)


def test_fft_l1_zero_for_equal_and_amplitude_for_constant_shift():
    x = torch.rand(1, 1, 8, 8)
    assert fft_l1(x, x) == pytest.approx(0.0, abs=1e-6)
    # a constant offset c changes only the DC amplitude, by c * sqrt(H*W) (orthonormal FFT)
    c = 0.25
    amp_only = (torch.fft.rfft2(x + c, norm="ortho").abs() - torch.fft.rfft2(x, norm="ortho").abs()).abs().mean()
    assert float(amp_only) == pytest.approx(c * 8 / (8 * 5), rel=1e-4)


def test_focal_frequency_hand_computed():
    # One frequency wrong only: weight 1 (it is the max), loss = |diff|^2 / number of frequencies.
    pred = torch.zeros(1, 1, 4, 4)
    target = torch.full((1, 1, 4, 4), 0.5)
    # target's spectrum: DC = 0.5 * 4 = 2 (ortho), all else 0 -> dist^2 = 4 at one of 16 bins
    assert focal_frequency(pred, target) == pytest.approx(4.0 / 16)
    assert focal_frequency(target, target) == pytest.approx(0.0)


def test_tv_border_only_counts_the_band_around_the_hole():
    pred = torch.zeros(1, 1, 16, 16)
    pred[..., :, ::2] = 1.0  # stripes everywhere
    hole = torch.zeros(1, 1, 16, 16)
    hole[..., 6:10, 6:10] = 1
    assert tv_border(pred, pred, hole) > 0
    assert tv_border(pred, pred, torch.zeros_like(hole)) == 0


def test_composite_weights_and_unknown_loss():
    pred, target, hole = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4), torch.ones(1, 1, 4, 4)
    total, parts = CompositeLoss({"l1": 2.0, "mse": 3.0})(pred, target, hole)
    assert float(total) == pytest.approx(5.0) and parts == {"l1": 1.0, "mse": 1.0}
    with pytest.raises(FillgapError, match="unknown loss 'perceptual'"):
        CompositeLoss({"perceptual": 1.0})


def test_adversarial_losses_are_finite_and_r1_positive():
    torch.manual_seed(0)
    disc = PatchDiscriminator(3, width=8, layers=2)
    real, fake, hole = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), torch.ones(2, 1, 32, 32)
    g = generator_adversarial(disc, fake, hole)
    d0 = discriminator_adversarial(disc, real, fake, hole, r1_weight=0.0)
    d1 = discriminator_adversarial(disc, real, fake, hole, r1_weight=10.0)
    assert math.isfinite(g.item()) and d1.item() > d0.item()


def test_feature_matching_zero_for_the_truth_and_grows_with_the_difference():
    from fillgap.train.losses import PatchDiscriminator, feature_matching

    torch.manual_seed(0)
    disc = PatchDiscriminator(3, width=8)
    real = torch.rand(2, 3, 32, 32)
    hole = torch.zeros(2, 1, 32, 32)
    hole[..., 8:24, 8:24] = 1
    assert feature_matching(disc, real, real, hole) == 0
    near = feature_matching(disc, real, real + 0.01 * torch.randn_like(real), hole)
    far = feature_matching(disc, real, torch.rand_like(real), hole)
    assert 0 < near < far
    assert len(disc.features(real, hole)) == 3


def test_texture_energy_asks_for_the_truths_detail_not_its_position():
    from fillgap.train.losses import texture_energy

    g = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, 32, 32, generator=g)
    hole = torch.zeros(1, 1, 32, 32)
    hole[..., 8:24, 8:24] = 1
    smooth = torch.full_like(target, 0.5)
    shifted = torch.roll(target, shifts=(0, 1), dims=(2, 3))  # same texture, other position
    assert texture_energy(target, target, hole) < 1e-6
    assert texture_energy(shifted, target, hole) < 0.25 * texture_energy(smooth, target, hole)
    # cells away from the hole do not count
    far = target.clone()
    far[..., :4, :4] = 0.5
    assert texture_energy(far, target, hole) < 1e-6


def test_checker_match_costs_a_grid_and_a_smear_but_not_real_texture():
    from fillgap.train.losses import checker_match

    g = torch.Generator().manual_seed(1)
    target = 0.5 + 0.1 * torch.randn(1, 3, 32, 32, generator=g)  # noise-like texture
    hole = torch.zeros(1, 1, 32, 32)
    hole[..., 8:24, 8:24] = 1
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    grid = 0.5 + 0.15 * ((yy + xx) % 2 * 2 - 1).float().expand(1, 3, 32, 32)  # a 2 x 2 checkerboard
    shifted = torch.roll(target, shifts=(1, 0), dims=(2, 3))  # the same texture, elsewhere
    smooth = torch.full_like(target, 0.5)
    assert checker_match(target, target, hole) < 1e-6
    assert checker_match(shifted, target, hole) < 0.02
    assert checker_match(grid, target, hole) > 0.2
    assert checker_match(smooth, target, hole) > 0.05  # too little fine detail costs too
