"""File-level operations shared by the CLI and the server: fill one file, fill a folder."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import FillgapError
from .fill import inpaint
from .imageio import IMAGE_SUFFIXES, list_images, read_image_rgba, read_mask, write_image
from .models import InpaintModel


def load_mask_for(image_shape: tuple[int, int], mask_path: Path, resize_mask: bool = False) -> np.ndarray:
    mask = read_mask(mask_path)
    h, w = image_shape
    if mask.shape != (h, w):
        if not resize_mask:
            raise FillgapError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but the image is {w}x{h} "
                               "(pass --resize-mask to scale it)")
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    return mask


def fill_file(image_path: Path, mask_path: Path, out_path: Path, model: InpaintModel,
              dilate: int = 0, overwrite: bool = False, resize_mask: bool = False) -> Path:
    """Read, fill, write one picture (alpha kept). Refuses to write over the input or the mask."""
    image_path, mask_path, out_path = Path(image_path), Path(mask_path), Path(out_path)
    for src in (image_path, mask_path):
        if out_path.exists() and src.exists() and out_path.resolve() == src.resolve():
            raise FillgapError(f"output {out_path} is an input file: choose another output path")
    if out_path.exists() and not overwrite:
        raise FillgapError(f"output exists: {out_path} (pass --overwrite to replace it)")
    rgb, alpha = read_image_rgba(image_path)
    mask = load_mask_for(rgb.shape[:2], mask_path, resize_mask)
    result = inpaint(rgb, mask, model, dilate=dilate)
    return write_image(out_path, result, alpha=alpha, overwrite=overwrite)


def find_mask(mask_dir: Path, relative: Path) -> Path | None:
    """The mask of ``relative`` (an image path relative to its folder): same path and stem, any image suffix."""
    stem = mask_dir / relative.with_suffix("")
    for suffix in (".png", *sorted(IMAGE_SUFFIXES - {".png"})):
        for candidate in (stem.with_suffix(suffix), stem.with_name(stem.name + "_mask").with_suffix(suffix)):
            if candidate.exists():
                return candidate
    return None


@dataclass
class FolderReport:
    written: list[Path] = field(default_factory=list)
    skipped_existing: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def plan_folder(image_dir: Path, mask_dir: Path, out_dir: Path) -> list[tuple[Path, Path | None, Path]]:
    """(image, mask or None, output) for every picture under ``image_dir``."""
    image_dir, mask_dir, out_dir = Path(image_dir), Path(mask_dir), Path(out_dir)
    if not mask_dir.is_dir():
        raise FillgapError(f"mask folder not found: {mask_dir}")
    if out_dir.resolve() == image_dir.resolve() or out_dir.resolve() == mask_dir.resolve():
        raise FillgapError(f"output folder {out_dir} is an input folder: choose another one")
    out_resolved = out_dir.resolve()
    plan = []
    for img in list_images(image_dir):
        if out_resolved in img.resolve().parents:  # output folder nested in the input folder
            continue
        rel = img.relative_to(image_dir)
        plan.append((img, find_mask(mask_dir, rel), out_dir / rel))
    return plan
