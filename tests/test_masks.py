import numpy as np
import pytest

from fillgap.masks import KINDS, MaskGenerator, dilate, hole_ratio

# (5th, 95th) percentile bounds of the hole ratio per preset, with slack; see the masks module doc.
EXPECTED = {"thin": (0.02, 0.22), "medium": (0.05, 0.33), "thick": (0.10, 0.62), "box": (0.04, 0.60)}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_preset_hole_ratio_statistics(kind):
    gen = MaskGenerator(kind, seed=0)
    ratios = np.array([hole_ratio(gen(128, 128, 0, i)) for i in range(150)])
    lo, hi = np.percentile(ratios, [5, 95])
    assert EXPECTED[kind][0] <= lo and hi <= EXPECTED[kind][1], (kind, lo, hi)


def test_presets_are_ordered_by_thickness():
    med = {
        k: np.median([hole_ratio(MaskGenerator(k, 0)(128, 128, 0, i)) for i in range(100)])
        for k in ("thin", "medium", "thick")
    }
    assert med["thin"] < med["medium"] < med["thick"]


@pytest.mark.parametrize("kind", KINDS)
def test_masks_are_float_binary_in_range(kind):
    m = MaskGenerator(kind, seed=3)(64, 80, 1, 2)
    assert m.shape == (64, 80) and m.dtype == np.float32
    assert set(np.unique(m)) <= {0.0, 1.0}
    assert m.any()


def test_same_seed_same_mask_and_fresh_per_epoch_and_index():
    a, b = MaskGenerator("mixture", seed=7), MaskGenerator("mixture", seed=7)
    assert np.array_equal(a(64, 64, epoch=2, index=5), b(64, 64, epoch=2, index=5))
    assert not np.array_equal(a(64, 64, epoch=2, index=5), a(64, 64, epoch=3, index=5))
    assert not np.array_equal(a(64, 64, epoch=2, index=5), a(64, 64, epoch=2, index=6))
    assert not np.array_equal(a(64, 64, 2, 5), MaskGenerator("mixture", seed=8)(64, 64, 2, 5))


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown mask kind"):
        MaskGenerator("zigzag")


def test_dilate_grows_hole_and_keeps_grey_levels():
    m = np.zeros((21, 21), np.float32)
    m[10, 10] = 0.5
    d = dilate(m, 3)
    assert d[10, 13] == 0.5 and d[10, 14] == 0.0
    assert d.max() == 0.5
    assert hole_ratio(d) > hole_ratio(m)
