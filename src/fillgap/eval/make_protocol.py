"""Write an evaluation protocol from the ``test`` split of photos.csv (protocol v2 and later).

    python -m fillgap.eval.make_protocol v2            # rewrite src/fillgap/eval/protocols/v2.json
    python -m fillgap.eval.make_protocol v2 --check    # recompute and compare, write nothing

A maintainer's tool, run when photos.csv's test split changes (a new list is a new protocol
file, never an edit of a released one's cases). The protocol takes v1's mask rules unchanged
(seed, buckets, cells, draw limit), so the cases of a photo that both hold are the same masks;
the pictures are every ``test`` row of photos.csv in the file's order. The picture-grid rows are
six photos picked by a seeded draw, each with one of six (kind, bucket) cells. Checksums need the
prepared photos (`fillgap data prepare --sets photos`).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ..data.photos import photo_list
from ..errors import FillgapError
from .protocol import (
    PROTOCOL_DIR,
    GridCell,
    ImageSet,
    Protocol,
    images_checksum,
    load_images,
    load_protocol,
    make_cases,
    masks_checksum,
)

SIZES = (256, 512)
# (kind, bucket index) of the grid rows: every kind, small to large holes
GRID_CELLS = (("thin", 1), ("medium", 1), ("medium", 2), ("thick", 3), ("box", 2), ("box", 4))


def build_protocol(
    name: str, version: int, base: str = "v1", sizes: tuple[int, ...] = SIZES, checksums: bool = True
) -> Protocol:
    """The protocol over photos.csv's test split with ``base``'s mask rules (checksums need the photos)."""
    rules = load_protocol(base)
    names = [row["name"] for row in photo_list() if row["split"] == "test"]
    if len(names) < len(GRID_CELLS):
        raise FillgapError(f"photos.csv has {len(names)} test photos; a protocol needs at least {len(GRID_CELLS)}")
    rng = np.random.default_rng(rules.mask_seed)
    picked = sorted(rng.choice(len(names), len(GRID_CELLS), replace=False).tolist())
    grid = [GridCell(image=names[i], kind=k, bucket=b) for i, (k, b) in zip(picked, GRID_CELLS)]
    protocol = Protocol(
        name=name,
        version=version,
        description=(
            f"fillgap evaluation protocol {name}: all {len(names)} photos of the test split of photos.csv "
            "(never used in training), each as a square at 256 px (the main table) or 512 px (the "
            f"large-image run), with {base}'s seeded stroke and box holes, buckets and cells unchanged "
            f"(a photo that {base} also holds gets the same masks). Written by "
            f"`python -m fillgap.eval.make_protocol {name}`."
        ),
        images=ImageSet(source="photos", split="test", names=names),
        preprocess=rules.preprocess,
        sizes=list(sizes),
        mask_seed=rules.mask_seed,
        buckets=rules.buckets,
        cells=rules.cells,
        min_hit_rate=rules.min_hit_rate,
        max_draws=rules.max_draws,
        grid=grid,
    )
    if checksums:
        for size in sizes:
            protocol.images_sha256[str(size)] = images_checksum(load_images(protocol, size))
            protocol.masks_sha256[str(size)] = masks_checksum(make_cases(protocol, size))
    return protocol


def to_json(protocol: Protocol) -> str:
    """One key per line, short values inline, one line per picture name and grid row (readable diffs)."""

    def compact(value) -> str:
        return json.dumps(value, separators=(", ", ": "))

    def block(items: list, indent: str) -> str:
        return "[\n" + ",\n".join(indent + " " + compact(x) for x in items) + "\n" + indent + "]"

    data = protocol.model_dump()
    lines = []
    for key, value in data.items():
        if key == "images":
            inner = [
                f'  "source": {compact(value["source"])}',
                f'  "split": {compact(value["split"])}',
                f'  "names": {block(value["names"], "  ")}',
            ]
            text = "{\n" + ",\n".join(inner) + "\n }"
        elif key == "grid":
            text = block(value, " ")
        elif key.endswith("_sha256"):
            text = json.dumps(value, indent=2).replace("\n}", "\n }")
        else:
            text = compact(value)
        lines.append(f' "{key}": {text}')
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fillgap.eval.make_protocol", description=__doc__.splitlines()[0])
    parser.add_argument("name", help="protocol name, e.g. v2 (written to src/fillgap/eval/protocols/<name>.json)")
    parser.add_argument("--version", type=int, help="version number (default: the digits of the name)")
    parser.add_argument("--check", action="store_true", help="compare with the stored file; write nothing")
    args = parser.parse_args(argv)
    version = args.version or int("".join(c for c in args.name if c.isdigit()) or 0)
    path = PROTOCOL_DIR / f"{args.name}.json"
    try:
        if args.name in ("v1", "bundled"):
            raise FillgapError(f"protocol {args.name} is released and hand-made: write a new one instead")
        text = to_json(build_protocol(args.name, version))
    except FillgapError as exc:
        print(f"make_protocol: error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        same = path.exists() and json.loads(path.read_text()) == json.loads(text)
        print(f"{path}: {'up to date' if same else 'DIFFERS from photos.csv and the prepared photos'}")
        return 0 if same else 1
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
