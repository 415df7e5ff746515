import numpy as np
import pytest
import torch

import fillgap
from fillgap.errors import FillgapError
from fillgap.fill import hole_window, inpaint
from fillgap.models import create_model


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("ffc-tiny", refine=False).eval()


def test_unmasked_pixels_are_bit_identical(photo, tiny):
    mask = np.zeros(photo.shape[:2], np.float32)
    mask[20:50, 30:70] = 1
    out = inpaint(photo, mask, tiny)
    keep = mask == 0
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert np.array_equal(out[keep], photo[keep])
    assert not np.array_equal(out[~keep], photo[~keep])


def test_empty_mask_returns_input_without_calling_the_model(photo):
    model = create_model("ffc-tiny")

    def boom(*args):
        raise AssertionError("the model was called for an empty mask")

    model.forward = boom
    out = fillgap.inpaint(photo, np.zeros(photo.shape[:2]), model=model)
    assert np.array_equal(out, photo)


def test_grey_mask_blends_proportionally_without_halo(photo, tiny):
    hard = np.zeros(photo.shape[:2], np.float32)
    hard[30:60, 40:90] = 1.0
    soft = hard * 0.5
    full = inpaint(photo, hard, tiny, blend="soft").astype(np.float32)
    half = inpaint(photo, soft, tiny, blend="soft").astype(np.float32)
    inside = hard > 0
    # a = 0.5: the output is the mean of the full fill and the input, within rounding
    expected = 0.5 * full[inside] + 0.5 * photo[inside].astype(np.float32)
    assert np.abs(half[inside] - expected).max() <= 1.0
    # No halo: the network saw the grey area as a hole, so the fill under a grey mask is the same
    # fill as under the hard mask (nothing of the old content leaked into it).
    fill_from_half = (half[inside] - 0.5 * photo[inside]) / 0.5
    assert np.abs(fill_from_half - full[inside]).max() <= 2.0


def test_any_size_and_fixed_size_models(tiny):
    img = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    mask = np.zeros((37, 53), np.float32)
    mask[5:9, 7:30] = 1
    for model in (tiny, create_model("seed-color-ae").eval()):
        out = inpaint(img, mask, model)
        assert out.shape == img.shape
        assert np.array_equal(out[mask == 0], img[mask == 0])


def test_mnist_model_refuses_a_colour_picture_and_fills_a_grey_one(tiny):
    # a 28 x 28 greyscale digits model would fill a grey copy of a colour photo: refused
    img = np.random.default_rng(0).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    mask = np.zeros((28, 28), np.float32)
    mask[10:15, 10:15] = 1
    digits = create_model("seed-mnist-ae").eval()
    with pytest.raises(FillgapError, match="greyscale pictures only"):
        inpaint(img, mask, digits)
    grey = np.repeat(img[..., :1], 3, axis=2)
    out = inpaint(grey, mask, digits)
    assert out.shape == grey.shape and np.array_equal(out[mask == 0], grey[mask == 0])


def test_wrong_mask_size_and_wrong_image_type_are_clear_errors(photo, tiny):
    with pytest.raises(FillgapError, match="mask is 10x10 but the image is 128x96"):
        inpaint(photo, np.ones((10, 10)), tiny)
    with pytest.raises(FillgapError, match="uint8"):
        inpaint(photo.astype(np.float32), np.ones(photo.shape[:2]), tiny)


def test_hole_window_adds_context_and_stays_inside():
    hole = np.zeros((100, 200), bool)
    hole[40:50, 100:120] = True
    top, bottom, left, right = hole_window(hole)
    assert top <= 40 - 32 and bottom >= 50 + 32 and left <= 100 - 32 and right >= 120 + 32
    hole[:] = False
    hole[0:5, 0:5] = True
    assert hole_window(hole)[0] == 0 and hole_window(hole)[2] == 0


def test_large_image_is_processed_through_a_window(tiny, monkeypatch):
    """A small hole on a big picture: the network sees a small window, not the whole picture."""
    import fillgap.fill as fill_mod

    seen = []
    real = fill_mod.run
    monkeypatch.setattr(fill_mod, "run", lambda m, x, k, *a: seen.append(x.shape) or real(m, x, k, *a))
    img = np.zeros((1500, 2000, 3), np.uint8)
    mask = np.zeros((1500, 2000), np.float32)
    mask[700:720, 900:940] = 1
    out = inpaint(img, mask, tiny)
    assert out.shape == img.shape and seen[0][-2:] == (84, 104)


@pytest.mark.parametrize("strategy", ["crop", "cra"])
def test_a_grey_photo_gets_a_grey_fill(photo, strategy):
    """A black-and-white photo: the network's fill (faintly tinted on its own) comes out grey;
    a colour photo's fill keeps its colours."""
    grey = np.repeat(photo.mean(2, keepdims=True).astype(np.uint8), 3, axis=2)
    mask = np.zeros(grey.shape[:2], bool)
    mask[20:60, 30:80] = True
    out = fillgap.inpaint(grey, mask, "fillgap-network", strategy=strategy, max_side=64)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    assert np.array_equal(out[~mask], grey[~mask])
    colour = fillgap.inpaint(photo, mask, "fillgap-network", strategy=strategy, max_side=64)
    assert np.abs(colour[mask].astype(int) - colour[mask].mean(1, keepdims=True)).max() > 3
