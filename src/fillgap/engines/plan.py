"""Planning a folder run: which picture goes with which mask and which output (``plan_folder``),
and what a run reports (``FolderReport``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FillgapError
from ..imageio import IMAGE_SUFFIXES, list_images


def find_mask(
    mask_dir: Path, relative: Path, existing: dict[Path, Path] | None = None, image: Path | None = None
) -> Path | None:
    """The mask of ``relative`` (an image path relative to its folder): same path and stem (or stem
    + ``_mask``), any image suffix, .png first. ``existing``: ``mask_index(mask_dir)``, to look up
    thousands of masks without a file-system call each. ``image``: the picture itself, never its
    own mask (masks kept beside their pictures)."""
    stem = mask_dir / relative.with_suffix("")
    for suffix in (".png", *sorted(IMAGE_SUFFIXES - {".png"})):
        # with_name, not with_suffix: a stem may hold dots ("scan.v2")
        for candidate in (stem.with_name(stem.name + suffix), stem.with_name(stem.name + "_mask" + suffix)):
            found = existing.get(candidate) if existing is not None else candidate if candidate.exists() else None
            if found is not None and not (image is not None and found.resolve() == image.resolve()):
                return found
    return None


def mask_index(mask_dir: Path) -> dict[Path, Path]:
    """Every file under ``mask_dir``, keyed by its path with the suffix in lower case (".PNG" found too)."""
    return {p.with_name(p.stem + p.suffix.lower()): p for p in Path(mask_dir).rglob("*") if p.is_file()}


@dataclass
class FolderReport:
    written: list[Path] = field(default_factory=list)
    skipped_existing: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # not pictures: folders named like one


def plan_folder(image_dir: Path, mask_dir: Path, out_dir: Path) -> list[tuple[Path, Path | None, Path]]:
    """(image, mask or None, output) for every picture under ``image_dir``. ``mask_dir``: a folder
    of masks named like the pictures, or one mask file for every picture."""
    image_dir, mask_dir, out_dir = Path(image_dir), Path(mask_dir), Path(out_dir)
    if mask_dir.is_file():
        return _plan_one_mask(image_dir, mask_dir, out_dir)
    if not mask_dir.is_dir():
        raise FillgapError(f"mask folder not found: {mask_dir}")
    if out_dir.resolve() == image_dir.resolve() or out_dir.resolve() == mask_dir.resolve():
        raise FillgapError(f"output folder {out_dir} is an input folder: choose another one")
    out_resolved, mask_resolved = out_dir.resolve(), mask_dir.resolve()
    beside = mask_resolved == image_dir.resolve()  # masks in the picture folder (name_mask.png)
    skip = [out_resolved] + ([] if beside else [mask_resolved])
    masks = mask_index(mask_dir)
    plan = []
    for img in list_images(image_dir):
        parents = img.resolve().parents
        if any(folder in parents for folder in skip):  # output or mask folder inside the input folder
            continue
        rel = img.relative_to(image_dir)
        plan.append((img, find_mask(mask_dir, rel, masks, image=img if beside else None), out_dir / rel))
    # Masks kept beside their pictures (--mask-dir = the input folder) are not pictures to fill.
    used = {m.resolve() for _, m, _ in plan if m is not None}
    return [row for row in plan if row[0].resolve() not in used]


def _plan_one_mask(image_dir: Path, mask: Path, out_dir: Path) -> list[tuple[Path, Path | None, Path]]:
    """``plan_folder`` with the same mask file for every picture (the mask itself, if it lies in
    the picture folder, is not a picture to fill)."""
    if out_dir.resolve() == image_dir.resolve():
        raise FillgapError(f"output folder {out_dir} is an input folder: choose another one")
    out_resolved, mask_resolved = out_dir.resolve(), mask.resolve()
    plan = []
    for img in list_images(image_dir):
        resolved = img.resolve()
        if resolved == mask_resolved or out_resolved in resolved.parents:
            continue
        plan.append((img, mask, out_dir / img.relative_to(image_dir)))
    return plan
