"""The method registry and the classical methods (tests/test_texture.py: the textured one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fillgap import inpaint
from fillgap.errors import FillgapError
from fillgap.methods import (
    ClassicalMethod,
    FillMethod,
    TorchNetwork,
    check_spec,
    get_method,
    list_methods,
    load_network,
    register_runtime,
)
from fillgap.models import create_model

from _pictures import picture


def test_classical_method_through_the_pipeline_matches_the_function():
    from fillgap.methods.classical import telea

    img = picture(120, 160)
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[50:70, 60:90] = 255
    ours = inpaint(img, mask, "opencv-telea")
    theirs = telea(img, mask)  # Telea only looks 5 px around the hole: the window holds all it needs
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("name", ["opencv-telea", "opencv-ns", "opencv-fsr", "skimage-biharmonic", "fillgap-diffusion"])
def test_every_classical_method_fills_a_smooth_picture_closely(name):
    """Through the pipeline (which hands the functions strided views of its batch): a smooth
    gradient's hole comes back within a few grey levels of the truth. OpenCV 5 wrote FSR's fill into
    a copy of a strided output buffer, and the hole stayed black (mean error ~100)."""
    yy, xx = np.mgrid[0:64, 0:80]
    img = np.stack([xx * 2 + 40, yy * 2 + 60, 200 - xx - yy], axis=2).astype(np.uint8)
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[24:36, 30:46] = 255
    out = inpaint(img, mask, name)
    hole = mask > 0
    assert np.abs(out[hole].astype(int) - img[hole]).mean() < 4


def test_shiftmap_fills_a_textured_hole_with_the_pictures_colours():
    """ShiftMap copies known pixels into the hole (through Lab and back): the marked hole is replaced,
    not left black or as it was, its colours stay within the picture's, the rest is untouched."""
    from fillgap.methods.classical import shiftmap

    yy, xx = np.mgrid[0:48, 0:64]
    stripes = ((xx // 4 + yy // 6) % 2).astype(bool)
    img = np.where(stripes[..., None], (200, 60, 40), (30, 110, 190)).astype(np.uint8)
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[16:32, 20:40] = 255
    hole = mask > 0
    marked = img.copy()
    marked[hole] = (255, 0, 255)  # what was there must not survive
    lo, hi = img.reshape(-1, 3).min(0).astype(int) - 3, img.reshape(-1, 3).max(0).astype(int) + 3
    for out in (shiftmap(marked, mask), inpaint(marked, mask, "opencv-shiftmap")):
        assert out.shape == img.shape and out.dtype == np.uint8
        filled = out[hole].astype(int)
        assert not (filled == (255, 0, 255)).all(axis=1).any() and not (filled == 0).all(axis=1).any()
        assert ((filled >= lo) & (filled <= hi)).all()
        assert filled.std(axis=0).min() > 20  # both stripe colours, not a flat average
        assert np.array_equal(out[~hole], marked[~hole])


@pytest.mark.parametrize(
    "name", ["opencv-telea", "opencv-ns", "opencv-fsr", "opencv-shiftmap", "skimage-biharmonic", "mean-fill"]
)
@pytest.mark.parametrize("shape", [(1, 1), (9, 7)])
def test_a_mask_over_the_whole_picture_gives_mid_grey(name, shape):
    """Nothing known to fill from: every classical method gives mid grey (Telea and NS returned the
    picture unchanged, the biharmonic solve raised on a 1 x 1 picture)."""
    img = np.full(shape + (3,), 30, np.uint8)
    out = inpaint(img, np.ones(shape, np.uint8), name)
    assert (out == 128).all()


# -- the registry
def test_registry_names_paths_and_objects(weights):
    assert get_method("opencv-telea").kind == "classical"
    assert isinstance(get_method("mean-fill"), ClassicalMethod)
    net = get_method(weights)
    assert isinstance(net, TorchNetwork) and net.source == weights
    assert get_method(net) is net
    assert get_method(create_model("ffc-tiny")).kind == "network"
    default = get_method(None)
    assert default.name == "fillgap-texture" and default.base.name == "fillgap-network"
    rows = {r.name: r for r in list_methods()}
    assert rows["fillgap-texture"].default and not rows["fillgap-network"].default
    assert not rows["opencv-telea"].default
    assert {"opencv-telea", "opencv-ns", "opencv-fsr", "skimage-biharmonic", "mean-fill", "ffc-small"} <= set(rows)
    assert rows["ffc-small"].trainable and not rows["opencv-telea"].trainable
    with pytest.raises(FillgapError, match="unknown model 'lama'"):
        get_method("lama")
    with pytest.raises(FillgapError, match="'fillgap-default' is now called 'fillgap-network'"):
        get_method("fillgap-default")
    with pytest.raises(FillgapError, match="the default \\(no model given\\) is fillgap-texture"):
        check_spec("fillgap-default")  # the CLI's check, before any picture is read
    with pytest.raises(FillgapError, match="now called 'fillgap-network'"):
        load_network("fillgap-default")  # export, a training config's init
    with pytest.raises(FillgapError, match="use its network, 'fillgap-network'"):
        load_network("fillgap-texture")
    with pytest.raises(FillgapError, match="unknown runtime"):
        get_method(weights, runtime="tpu")


def test_untrained_architectures_need_asking_for():
    img = picture()
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[5:10, 5:10] = 255
    for call in (lambda: get_method("ffc-tiny"), lambda: inpaint(img, mask, "ffc-tiny")):
        with pytest.raises(FillgapError, match="'ffc-tiny' is a trainable architecture"):
            call()
    method = get_method("ffc-tiny", allow_untrained=True)  # tests and benches time fresh networks
    assert method.kind == "network" and method.name == "ffc-tiny"
    assert inpaint(img, mask, method).shape == img.shape


def test_another_runtime_plugs_in_through_one_hook():
    class Grey(FillMethod):
        name, kind, max_side = "grey", "network", 256

        def fill(self, image, hole):
            return torch.full_like(image[:, :3], 0.5)

    register_runtime("test-grey", lambda model, source: Grey())
    img = picture()
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[5:10, 5:10] = 255
    out = inpaint(img, mask, create_model("ffc-tiny"), runtime="test-grey")
    assert (out[5:10, 5:10] == 128).all()


def test_models_command_marks_the_default(capsys):
    from fillgap.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("* fillgap-texture") for line in out.splitlines())
    assert "opencv-telea" in out and "ffc-small" in out


@pytest.mark.parametrize(
    "name",
    [
        "opencv-telea",
        "opencv-ns",
        "opencv-fsr",
        "skimage-biharmonic",
        "fillgap-diffusion",
        "fillgap-network",
        "fillgap-texture",
    ],
)
def test_no_method_reads_what_the_hole_holds(name):
    """The hole is what the user removes: the fill must not depend on it (white or black there,
    the same bytes)."""
    image = picture(64, 80, seed=4)
    mask = np.zeros((64, 80), np.uint8)
    mask[14:46, 20:60] = 255
    white, black = image.copy(), image.copy()
    white[mask > 0], black[mask > 0] = 255, 0
    assert np.array_equal(inpaint(white, mask, name), inpaint(black, mask, name))
