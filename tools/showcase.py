"""Real removals with the default method at 100 % zoom, before and after: docs/showcase.png.

    nice -n 5 python tools/showcase.py [--model CKPT] [--out docs/showcase.png] [--overwrite]

Each row is one edit on a full-resolution photo of the prepared ``test`` split (never seen in
training; `fillgap data prepare --sets photos`): a blob painted over an object, text written over
a photo, a scratch across one. The whole photo goes through ``fillgap.inpaint`` (as a user's
would: the fill crops its own window), then a 384 x 384 crop around the edit is shown pixel for
pixel: the photo before, the hole in red, and the result. Masks and overlays are drawn here
from fixed coordinates, so a rerun gives the same picture for the same model.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

import fillgap
from fillgap.data.photos import data_root, photo_list
from fillgap.errors import FillgapError
from fillgap.imageio import read_image, write_image

DOCS = Path(__file__).resolve().parent.parent / "docs"
CROP = 384


@dataclass
class Edit:
    title: str
    photo: str  # a test-split name of photos.csv
    top_left: tuple[int, int]  # (y, x) of the shown crop in the prepared photo

    def apply(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the photo as the user has it, the hole mask as uint8 0/255) for this edit."""
        raise NotImplementedError


class Blob(Edit):
    def __init__(self, title, photo, top_left, centre, axes, angle=0.0):
        super().__init__(title, photo, top_left)
        self.centre, self.axes, self.angle = centre, axes, angle

    def apply(self, image):
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.ellipse(mask, self.centre, self.axes, self.angle, 0, 360, 255, -1, cv2.LINE_AA)
        return image, np.where(mask > 0, 255, 0).astype(np.uint8)


class Text(Edit):
    def __init__(self, title, photo, top_left, text, origin, scale):
        super().__init__(title, photo, top_left)
        self.text, self.origin, self.scale = text, origin, scale

    def apply(self, image):
        ink = np.zeros(image.shape[:2], np.uint8)
        cv2.putText(ink, self.text, self.origin, cv2.FONT_HERSHEY_DUPLEX, self.scale, 255, 3, cv2.LINE_AA)
        marked = image.copy()
        marked[ink > 0] = (255, 255, 255)  # whatever the text covered is what the fill must restore
        return marked, _grow(ink)


class Scratch(Edit):
    def __init__(self, title, photo, top_left, points, width=3):
        super().__init__(title, photo, top_left)
        self.points, self.width = np.array(points, np.int32), width

    def apply(self, image):
        ink = np.zeros(image.shape[:2], np.uint8)
        cv2.polylines(ink, [self.points], False, 255, self.width, cv2.LINE_AA)
        marked = image.copy()
        marked[ink > 0] = (236, 236, 228)
        return marked, _grow(ink)


def _grow(ink: np.ndarray, px: int = 2) -> np.ndarray:
    """The mark's mask, a little wider: a user's brush covers anti-aliased edges too."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(np.where(ink > 0, 255, 0).astype(np.uint8), kernel)


EDITS = [
    Blob(
        "object: a blob over the rock on the meadow",
        "picosdeeuropa_by_Aitzol_Berasategi",
        (560, 560),
        centre=(768, 765),
        axes=(34, 30),
    ),
    Blob("object: a blob over the ladybird on the stem", "LadyBird", (300, 840), centre=(1076, 500), axes=(90, 94)),
    Text(
        "text: a caption written over the photo",
        "Picture_0B_by_freespace",
        (420, 60),
        text="fillgap 2026",
        origin=(84, 640),
        scale=2.0,
    ),
    Scratch(
        "scratch: a thin line across the facade",
        "building",
        (150, 300),
        points=[(310, 470), (420, 380), (540, 330), (680, 170)],
    ),
]


def label(text: str, width: int, height: int = 26, size: float = 0.55) -> np.ndarray:
    strip = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (6, height - 8), cv2.FONT_HERSHEY_SIMPLEX, size, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def render(model=None) -> tuple[np.ndarray, list[str]]:
    test = {row["name"] for row in photo_list() if row["split"] == "test"}
    folder = data_root() / "photos"
    rows, notes = [], []
    gap = np.full((CROP, 8, 3), 255, np.uint8)
    for edit in EDITS:
        if edit.photo not in test:
            raise FillgapError(f"{edit.photo} is not in the test split of photos.csv: showcase only held-out photos")
        path = folder / f"{edit.photo}.png"
        if not path.exists():
            raise FillgapError(f"{path} is missing: run `fillgap data prepare --sets photos` first")
        before, mask = edit.apply(read_image(path))
        start = time.perf_counter()
        after = fillgap.inpaint(before, mask, model)
        notes.append(
            f"{edit.photo}: {before.shape[1]}x{before.shape[0]}, hole {int((mask > 0).sum())} px, "
            f"{time.perf_counter() - start:.2f} s"
        )
        y, x = edit.top_left
        window = (slice(y, y + CROP), slice(x, x + CROP))
        red = before.copy()
        red[mask > 0] = (0.45 * red[mask > 0] + 0.55 * np.array([230, 20, 20])).astype(np.uint8)
        cells = [before[window], gap, red[window], gap, after[window]]
        row = np.concatenate(cells, axis=1)
        rows += [label(edit.title + f"  ({edit.photo}, 100 %)", row.shape[1]), row]
    width = rows[1].shape[1]
    header = np.full((30, width, 3), 255, np.uint8)
    for i, text in enumerate(["before", "hole (red)", "after: fillgap.inpaint (default)"]):
        cv2.putText(header, text, (i * (CROP + 8) + 6, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.65, (0, 0, 0), 2, cv2.LINE_AA)
    return np.concatenate([header] + rows, axis=0), notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a method name or checkpoint (default: the default method)")
    parser.add_argument("--out", type=Path, default=DOCS / "showcase.png")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing picture")
    args = parser.parse_args(argv)
    try:
        if args.out.exists() and not args.overwrite:
            raise FillgapError(f"output exists: {args.out} (pass --overwrite to replace it)")
        model = args.model  # a name or a path: inpaint resolves it (None: the default)
        picture, notes = render(model)
        write_image(args.out, picture, overwrite=True)
    except FillgapError as exc:
        print(f"showcase: error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(notes))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
