"""Image sources: anything with ``len()`` and ``[i] -> uint8 H x W x C``.

``ArrayImages`` (arrays in memory: MNIST, prepared caches), ``FolderImages`` (a folder of
pictures), ``ManifestImages`` (a text file listing pictures), ``bundled_photos`` (the photos
shipped in the package). The corpora (``mnist``, ``photos``) build on these; ``datasets`` turns
a source into training samples. No import of the other data modules here: that is what keeps
the package free of import circles.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..errors import FillgapError
from ..imageio import list_images, read_image

BUNDLED = Path(__file__).with_name("bundled")


class ArrayImages:
    """Images already in memory: a list of H x W x C uint8 arrays or one N x H x W (x C) array."""

    def __init__(self, images: Sequence[np.ndarray] | np.ndarray, names: Sequence[str] | None = None):
        self.images = images
        self.names = list(names) if names is not None else [str(i) for i in range(len(images))]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> np.ndarray:
        img = np.asarray(self.images[i])
        return img[..., None] if img.ndim == 2 else img


class FolderImages:
    """Every picture under a folder (recursive; jpg/png/webp/bmp/tif), as RGB uint8.

    Unreadable files are skipped with a warning that names them. ``max_side`` downscales
    big photos once at load; ``preload`` keeps them all in memory (fast epochs for small
    photo sets), otherwise each access reads the file again (any folder size).
    """

    def __init__(
        self, root: str | Path, max_side: int | None = None, preload: bool = False, files: Sequence[Path] | None = None
    ):
        self.root = Path(root)
        self.files = list(files) if files is not None else list_images(self.root)
        self.max_side = max_side
        self._cache: dict[int, np.ndarray] = {}
        if preload:
            good = []
            for i, f in enumerate(self.files):
                img = self._load(f)
                if img is not None:
                    self._cache[len(good)] = img
                    good.append(f)
            self.files = good
        if not self.files:
            raise FillgapError(f"no readable images in {self.root}")
        self.names = [str(f.relative_to(self.root)) if f.is_relative_to(self.root) else f.name for f in self.files]

    def _load(self, path: Path) -> np.ndarray | None:
        try:
            img = read_image(path)
        except FillgapError as exc:
            warnings.warn(f"skipping {exc}", stacklevel=2)
            return None
        if self.max_side and max(img.shape[:2]) > self.max_side:
            s = self.max_side / max(img.shape[:2])
            img = cv2.resize(
                img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))), interpolation=cv2.INTER_AREA
            )
        return img

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self.files) <= i < len(self.files):  # ends a for loop (sequence protocol)
            raise IndexError(f"image {i} of {len(self.files)}")
        i %= len(self.files)
        if i in self._cache:
            return self._cache[i]
        # A file that went bad after listing: warn, and hand the next good one instead.
        for k in range(len(self.files)):
            img = self._load(self.files[(i + k) % len(self.files)])
            if img is not None:
                return img
        raise FillgapError(f"no readable images in {self.root}")


class ManifestImages(FolderImages):
    """The pictures listed in a manifest: a UTF-8 text file with one path per line (relative paths
    start at the manifest's folder; blank lines and ``#`` comments are skipped).

    Nothing is read up front, not even a file's existence: each access reads its file (a bad one
    is skipped with a warning when its turn comes, as in FolderImages), so a manifest can list
    more pictures than fit in memory and DataLoader workers stream them.
    """

    def __init__(self, manifest: str | Path, max_side: int | None = None):
        manifest = Path(manifest)
        try:
            lines = manifest.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise FillgapError(f"cannot read manifest {manifest}: {getattr(exc, 'strerror', None) or exc}") from None
        root = manifest.parent
        files = [root / line for line in (raw.strip() for raw in lines) if line and not line.startswith("#")]
        if not files:
            raise FillgapError(f"manifest {manifest} lists no files")
        super().__init__(root, max_side=max_side, preload=False, files=files)


def bundled_photos(split: str = "train") -> FolderImages:
    """The small photo set shipped in the package (``data/bundled/{train,test}``, see SOURCES.md there)."""
    return FolderImages(BUNDLED / split, preload=True)
