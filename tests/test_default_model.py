"""The weights shipped inside the package: they load with no flag and beat Telea on a held-out photo."""

import numpy as np
import pytest

import fillgap
from fillgap.checkpoint import DEFAULT_WEIGHTS, weights_metadata
from fillgap.methods.classical import telea
from fillgap.data import bundled_photos
from fillgap.masks import MaskGenerator


def hole_psnr(out, ref, hole):
    err = (out.astype(np.float64) - ref.astype(np.float64))[hole] ** 2
    return 10 * np.log10(255.0**2 / err.mean())


def test_default_weights_are_shipped_with_their_recipe():
    assert DEFAULT_WEIGHTS.exists()
    assert DEFAULT_WEIGHTS.stat().st_size < 25e6
    meta = weights_metadata()
    assert meta["model_name"] == "ffc-small"
    # steps in all, counting the weights it was fine-tuned from
    assert int(meta.get("total_steps", meta["trained_steps"])) > 1000 and "train_photo_list_sha256" in meta
    assert (DEFAULT_WEIGHTS.parent / "MODEL_CARD.md").exists()


@pytest.fixture(scope="module")
def default_model():
    return fillgap.load_model()


def test_default_model_beats_telea_on_a_bundled_photo(default_model):
    """Summed over a few seeded thick-stroke and box holes on the three held-out bundled photos,
    so one lucky or unlucky hole cannot decide it."""
    ours, theirs = [], []
    for i, photo in enumerate(bundled_photos("test")[k] for k in range(3)):
        img = np.ascontiguousarray(photo[:256, :256])
        for j, kind in enumerate(("thick", "box", "medium")):
            mask = MaskGenerator(kind, seed=99)(256, 256, 0, 10 * i + j)
            hole = mask > 0
            ours.append(hole_psnr(fillgap.inpaint(img, mask, default_model), img, hole))
            theirs.append(hole_psnr(telea(img, mask), img, hole))
    assert np.mean(ours) > np.mean(theirs), (np.mean(ours), np.mean(theirs))


def test_default_model_runs_at_twice_its_training_size(default_model):
    img = np.ascontiguousarray(bundled_photos("test")[0][:256, :384])
    mask = np.zeros(img.shape[:2], np.float32)
    mask[60:200, 100:300] = 1.0
    out = fillgap.inpaint(img, mask, default_model)
    assert out.shape == img.shape and np.array_equal(out[mask == 0], img[mask == 0])


def test_default_model_is_pure_torch(default_model):
    """The start it refines is the torch diffusion prior: no NumPy/OpenCV inside forward, so it
    runs on a GPU and exports."""
    from fillgap.models.prior import DiffusionPrior

    assert isinstance(default_model.prior, DiffusionPrior)


@pytest.mark.parametrize("variant", ["network", "smooth"])
def test_every_shipped_variant_has_its_card_a_name_and_fills(variant):
    from fillgap.methods import METHODS, get_method, list_methods, shipped_names

    name = f"fillgap-{variant}"
    entry = METHODS[name]
    assert entry.weights.exists() and entry.weights.stat().st_size < 25e6
    assert (entry.weights.parent / entry.card).exists()
    assert name in shipped_names() and name in {m.name for m in list_methods()}
    img = np.ascontiguousarray(bundled_photos("test")[1][:128, :128])
    mask = MaskGenerator("box", seed=3)(128, 128, 0, 0)
    out = fillgap.inpaint(img, mask, get_method(name))
    assert np.array_equal(out[mask == 0], img[mask == 0]) and not np.array_equal(out, img)
