"""Contact sheets of the prepared photos, for reviewing photos.csv by eye.

    python tools/photo_sheet.py --root ~/.cache/fillgap --split test --out test-sheet.png
    python tools/photo_sheet.py --source deb:scratch --out scratch.png --thumb 200

Each tile is a prepared photo (fitted into a square) with its row number and name; a new
row of photos.csv is reviewed by looking at the sheet of its source before it is kept.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from fillgap.data.photos import data_root, photo_list


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=None, help="data root (default: $FILLGAP_DATA or ~/.cache/fillgap)")
    ap.add_argument("--split", default=None, help="only this split")
    ap.add_argument("--source", default=None, help="only this source (e.g. deb:scratch)")
    ap.add_argument("--thumb", type=int, default=160, help="tile size in px")
    ap.add_argument("--cols", type=int, default=10)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    folder = (args.root or data_root()) / "photos"
    rows = [
        (i, r)
        for i, r in enumerate(photo_list(), start=2)  # line numbers in photos.csv
        if (args.split in (None, r["split"])) and (args.source in (None, r["source"]))
    ]
    if not rows:
        raise SystemExit("no photos match")
    t, cols = args.thumb, args.cols
    sheet = Image.new("RGB", (cols * t, -(-len(rows) // cols) * (t + 12)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (line, r) in enumerate(rows):
        x, y = (k % cols) * t, (k // cols) * (t + 12)
        path = folder / f"{r['name']}.png"
        if path.is_file():
            with Image.open(path) as im:
                im = im.convert("RGB")
                im.thumbnail((t, t))
                sheet.paste(im, (x, y + 12))
        draw.text((x + 2, y), f"{line} {r['name'][: t // 7]}", fill="black")
    sheet.save(args.out)
    print(f"{args.out}: {len(rows)} photos")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
