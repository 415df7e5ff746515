"""The reviewed photo corpus (photos.csv beside this file). Prepared by ``fillgap data prepare``."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..errors import FillgapError
from .sources import FolderImages

PHOTO_LIST = Path(__file__).with_name("photos.csv")
SPLITS = ("train", "val", "test")


def data_root() -> Path:
    """Where prepared data lives: $FILLGAP_DATA, else ~/.cache/fillgap."""
    return Path(os.environ.get("FILLGAP_DATA", Path.home() / ".cache" / "fillgap")).expanduser()


def photo_list() -> list[dict[str, str]]:
    with open(PHOTO_LIST, newline="") as fh:
        return list(csv.DictReader(fh))


def photo_source(split: str = "train", root: str | Path | None = None):
    """The prepared photos of one split (train / val / test) as an image source."""
    if split not in SPLITS:
        raise FillgapError(f"unknown split '{split}' (choose {', '.join(SPLITS)})")
    folder = (Path(root) if root else data_root()) / "photos"
    names = [row["name"] for row in photo_list() if row["split"] == split]
    files = [folder / f"{n}.png" for n in names]
    missing = [f for f in files if not f.exists()]
    if missing:
        hint = f" --root {root}" if root else ""
        raise FillgapError(
            f"{len(missing)} prepared photos missing in {folder} (e.g. {missing[0].name}): "
            f"run `fillgap data prepare --sets photos{hint}` first"
        )
    return FolderImages(folder, files=files, preload=True)
