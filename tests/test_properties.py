"""Property tests (Hypothesis): for any size, mode and mask, filling keeps what it must.

Through ``fillgap.inpaint`` with an untrained ffc-tiny (made once per module):
- every pixel outside the hole is bit-identical to the input (also after a file round trip,
  where the alpha channel must come back unchanged too);
- the output has the input's size; the network's own output is finite and in [0, 1].
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fillgap import inpaint
from fillgap.fill import run
from fillgap.imageio import read_image_rgba, read_mask, write_image
from fillgap.masks import dilate as dilate_mask
from fillgap.methods import get_method
from fillgap.models import create_model

# Modest counts: the file runs in well under a minute on two busy cores.
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sides = st.one_of(st.just(1), st.integers(1, 9), st.integers(10, 70))
MASK_KINDS = ("empty", "full", "one-pixel", "box", "random", "soft")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("ffc-tiny").eval()


def make_mask(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """float32 H x W in [0, 1] (soft: grey levels, partial holes)."""
    m = np.zeros((h, w), np.float32)
    if kind == "full":
        m[:] = 1
    elif kind == "one-pixel":
        m[rng.integers(h), rng.integers(w)] = 1
    elif kind == "box":
        top, left = rng.integers(h), rng.integers(w)
        m[top : top + rng.integers(1, h + 1), left : left + rng.integers(1, w + 1)] = 1
    elif kind == "random":
        m[:] = rng.random((h, w)) < 0.3
    elif kind == "soft":
        m[:] = np.where(rng.random((h, w)) < 0.5, rng.random((h, w)), 0).astype(np.float32)
    return m


def as_given(mask: np.ndarray, dtype: str):
    """The same mask in the forms inpaint accepts: float 0-1, uint8 0-255, bool (binary masks only)."""
    if dtype == "uint8":
        return np.round(mask * 255).astype(np.uint8)
    if dtype == "bool":
        return mask > 0
    return mask


@SETTINGS
@given(
    h=sides,
    w=sides,
    kind=st.sampled_from(MASK_KINDS),
    dtype=st.sampled_from(["float32", "uint8", "bool"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_unmasked_pixels_are_bit_identical(model, h, w, kind, dtype, seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = as_given(make_mask(kind, h, w, rng), dtype)
    keep = np.asarray(mask) == 0
    out = inpaint(image, mask, model)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[keep], image[keep])
    if keep.all():
        np.testing.assert_array_equal(out, image)


@SETTINGS
@given(h=sides, w=sides, pixels=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_dilation_only_touches_the_grown_hole(model, h, w, pixels, seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = make_mask("one-pixel", h, w, rng)
    out = inpaint(image, mask, model, dilate=pixels)
    keep = dilate_mask(mask, pixels) == 0
    assert out.shape == image.shape
    np.testing.assert_array_equal(out[keep], image[keep])


@SETTINGS
@given(h=st.integers(1, 40), w=st.integers(1, 40), kind=st.sampled_from(MASK_KINDS[1:]), seed=st.integers(0, 2**32 - 1))
def test_network_output_is_finite_and_in_range(model, h, w, kind, seed):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.random((1, 3, h, w), dtype=np.float32))
    m = torch.from_numpy((make_mask(kind, h, w, rng) > 0).astype(np.float32))[None, None]
    out = run(get_method(model), x, m, "crop")
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "I;16")


def picture_in_mode(mode: str, h: int, w: int, rng: np.random.Generator) -> Image.Image:
    rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    img = Image.fromarray(rgba, "RGBA")
    if mode == "P":
        return img.convert("RGB").quantize(16)
    if mode == "PA":  # palette with a transparent entry
        pal = img.convert("RGB").quantize(8)
        pal.info["transparency"] = 0
        return pal
    return img.convert(mode)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=sides,
    w=sides,
    mode=st.sampled_from(MODES),
    kind=st.sampled_from(MASK_KINDS),
    suffix=st.sampled_from([".png", ".tif", ".webp"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_file_round_trip_keeps_pixels_and_alpha(model, h, w, mode, kind, suffix, seed):
    rng = np.random.default_rng(seed)
    src = picture_in_mode(mode, h, w, rng)
    if (suffix == ".webp" and mode not in ("RGB", "RGBA")) or mode == "PA":
        suffix = ".png"  # WebP stores RGB(A) only; TIFF has no transparent palette entry
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        options = {"lossless": True, "exact": True} if suffix == ".webp" else {}
        if mode == "PA":
            options["transparency"] = 0
        src.save(tmp / f"in{suffix}", **options)
        Image.fromarray(np.round(make_mask(kind, h, w, rng) * 255).astype(np.uint8)).save(tmp / "mask.png")
        rgb, alpha = read_image_rgba(tmp / f"in{suffix}")
        mask = read_mask(tmp / "mask.png")
        assert rgb.shape == (h, w, 3) and mask.shape == (h, w)
        assert (alpha is not None) == (mode in ("LA", "PA", "RGBA"))
        out = inpaint(rgb, mask, model)
        write_image(tmp / "out.png", out, alpha=alpha)
        back, back_alpha = read_image_rgba(tmp / "out.png")
    keep = mask == 0
    assert back.shape == (h, w, 3)
    np.testing.assert_array_equal(back[keep], rgb[keep])
    if alpha is not None:
        np.testing.assert_array_equal(back_alpha, alpha)  # alpha kept everywhere, in the hole too
