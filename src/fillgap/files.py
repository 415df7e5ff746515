"""One file at a time, for the CLI, the Python API and the Ray workers: a mask read and checked
for its picture (inverted, thresholded, refused when it looks wrong), and ``fill_file``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import FillgapError
from .fill import check_blend, check_dilate, check_max_side, check_strategy, inpaint
from .fill.mask import mask_for
from .imageio import OUTPUT_FORMATS, check_output, copy_file, read_picture, read_mask, write_image
from .methods import DEFAULT_RUNTIME, FillMethod, check_spec

if TYPE_CHECKING:
    from .models import InpaintModel


# A mask file that would fill this share of its picture or more is refused without ``force``: an
# inverted mask (black = hole) or the picture itself given as the mask fills nearly everything,
# and the result is a picture-sized smear written with exit code 0.
MAX_HOLE_SHARE = 0.60
# "Looks like a photo": a mask is black and white with few grey pixels (anti-aliased or feathered
# edges, JPEG noise within a few dozen levels of black or white), a photo is mostly mid-tones in
# every level. Refused: more than half the pixels mid-grey (more than MID_MARGIN levels from both
# black and white, so JPEG noise does not count) spread over at least PHOTO_LEVELS grey levels
# (a grey but flat mask, e.g. a 50 % soft blend everywhere, has a handful).
MID_MARGIN = 48
PHOTO_MID_SHARE = 0.5
PHOTO_LEVELS = 64


def adjust_mask(mask: np.ndarray, invert: bool = False, threshold: int | None = None) -> np.ndarray:
    """A float mask in [0, 1] with ``invert`` (dark = hole) and ``threshold`` (0-255: hole where
    the level is above it, keep elsewhere, no grey left) applied, in that order."""
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or not 0 <= threshold <= 255
    ):
        raise FillgapError(f"the mask threshold must be a whole number from 0 to 255, got {threshold!r}")
    if invert:
        mask = 1.0 - mask
    if threshold is not None:
        mask = (np.rint(mask * 255.0) > threshold).astype(np.float32)
    return mask


def mask_problem(mask: np.ndarray, original: np.ndarray | None = None) -> str | None:
    """Why a float mask in [0, 1] is probably not what its user meant, or None: it looks like a
    photo, or it would fill ``MAX_HOLE_SHARE`` of the picture or more (see the rules above).
    ``original``: the mask before ``adjust_mask``, judged for looking like a photo (a threshold
    would hide that)."""
    original = mask if original is None else original
    levels = np.bincount(np.rint(np.asarray(original, np.float32) * 255.0).astype(np.uint8).ravel(), minlength=256)
    mid = levels[MID_MARGIN + 1 : 255 - MID_MARGIN].sum() / max(1, original.size)
    if mid > PHOTO_MID_SHARE and np.count_nonzero(levels) >= PHOTO_LEVELS:
        return (
            f"looks like a photo, not a mask ({mid:.0%} of it mid-grey, {np.count_nonzero(levels)} grey "
            "levels; a mask is white where to fill, black elsewhere)"
        )
    share = np.count_nonzero(mask) / max(1, mask.size)
    if share >= MAX_HOLE_SHARE:
        return f"would fill {share:.0%} of the picture ({MAX_HOLE_SHARE:.0%} or more is refused)"
    return None


def check_mask(
    mask: np.ndarray, label: object = "the mask", force: bool = False, original: np.ndarray | None = None
) -> None:
    """A one-line FillgapError for ``mask_problem`` (nothing with ``force``). ``fillgap.fill.inpaint``
    does not call it; call it before to have an array refused as the CLI refuses a file."""
    problem = None if force else mask_problem(mask, original)
    if problem:
        raise FillgapError(
            f"mask {label} {problem}: if black marks the hole, pass --invert-mask; "
            "to use the mask as it is, pass --force"
        )


def load_mask_for(
    image_shape: tuple[int, int],
    mask_path: Path,
    resize_mask: bool = False,
    *,
    invert_mask: bool = False,
    mask_threshold: int | None = None,
    force: bool = False,
) -> np.ndarray:
    """The mask of a picture of ``image_shape`` (H, W); another size is an error unless ``resize_mask``.
    ``invert_mask``, ``mask_threshold``: see ``adjust_mask``. A mask that looks like a photo or
    would fill most of the picture is refused unless ``force`` (``check_mask``)."""
    original = read_mask(mask_path)
    mask = adjust_mask(original, invert_mask, mask_threshold)
    mask = mask_for(mask, image_shape, resize_mask, f"mask {mask_path}")
    check_mask(mask, mask_path, force, original)
    return mask


def _same_format(a: Path, b: Path) -> bool:
    fa, fb = OUTPUT_FORMATS.get(a.suffix.lower()), OUTPUT_FORMATS.get(b.suffix.lower())
    return fa is not None and fa == fb


def fill_file(
    image_path: Path,
    mask_path: Path,
    out_path: Path,
    model: FillMethod | InpaintModel | str | Path | None = None,
    dilate: int = 0,
    overwrite: bool = False,
    resize_mask: bool = False,
    *,
    strategy: str = "auto",
    max_side: int | None = None,
    blend: str = "hard",
    runtime: str = DEFAULT_RUNTIME,
    invert_mask: bool = False,
    force: bool = False,
    mask_threshold: int | None = None,
) -> Path:
    """Read, fill, write one picture (alpha kept). Refuses to write over the input or the mask.

    ``model``: anything ``fillgap.methods.get_method`` takes (None: the shipped default), loaded
    only when the mask has a hole; the fill is ``fillgap.fill.inpaint`` with the other settings.
    An empty mask gives the input back unchanged: the file is copied byte for byte when the
    output has the input's format, so no re-encoding loss.

    The mask file: ``invert_mask`` (black = hole), ``mask_threshold`` (0-255: hole above it, no
    grey; for JPEG masks), and one that looks like a photo or would fill 60 % of the picture or
    more is refused unless ``force`` (``load_mask_for``).
    """
    image_path, mask_path, out_path = Path(image_path), Path(mask_path), Path(out_path)
    for what, src in (("image", image_path), ("mask", mask_path)):
        if not src.exists():
            raise FillgapError(f"{what} not found: {src}")
    # Cheap refusals first: no picture is decoded and no model loaded for bad settings or an
    # output we cannot write.
    check_dilate(dilate), check_blend(blend), check_strategy(strategy), check_max_side(max_side)
    check_spec(model)
    adjust_mask(np.zeros((1, 1), np.float32), threshold=mask_threshold)  # a bad threshold before any file
    check_output(out_path, overwrite, inputs=(image_path, mask_path))
    picture = read_picture(image_path)  # colour profile, EXIF and greyscale go into the output
    rgb, alpha, keep = picture.rgb, picture.alpha, dict(metadata=picture.metadata, grey=picture.grey)
    check_output(out_path, overwrite, alpha=alpha is not None)
    mask = load_mask_for(
        rgb.shape[:2], mask_path, resize_mask, invert_mask=invert_mask, mask_threshold=mask_threshold, force=force
    )
    if not (mask > 0).any():
        if _same_format(image_path, out_path):
            return copy_file(image_path, out_path, overwrite)
        return write_image(out_path, rgb, alpha=alpha, overwrite=overwrite, **keep)
    result = inpaint(rgb, mask, model, dilate, max_side, strategy=strategy, blend=blend, runtime=runtime)
    return write_image(out_path, result, alpha=alpha, overwrite=overwrite, **keep)
