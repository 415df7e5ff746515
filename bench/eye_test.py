"""The eye test: can a person tell a filled crop from an untouched one? A blind A/B test.

    python bench/eye_test.py make --methods opencv-telea,fillgap-network --judges 3 --per-method 10 --out /tmp/eye
    # hand each judge its folder /tmp/eye/judge-J/ (sheets and answers.txt) and nothing else
    python bench/eye_test.py score --dir /tmp/eye         # -> bench/results/eye-test.{json,md}

Each pair shows one crop twice side by side, in random order: untouched, and with a hole filled by one
method. The judge writes which side (A or B) was filled. Fool rate: the share of pairs where the judge
picked the untouched side; 50 % = the fill cannot be told from the photo, 0 % = always spotted.

Cases (all seeded by --seed), from the test split of photos.csv (or every picture of --photos DIR):
- setting "256", hole kinds thick and box (fillgap.masks, redrawn until 10-35 % of the crop): the photo
  area-resized to a short side of 512-768 px (smaller ones at native size, from 256 px), 256 px crops at
  non-overlapping places, each filled as a picture of its own.
- setting "2560", hole kind blob (one smooth blob 220-420 px across, ``blob_mask``): the photo area-resized
  to a long side of 2560 px (one from 1600 px at native size, smaller ones skipped), a new hole per crop,
  filled on the WHOLE picture through ``fillgap.inpaint`` (strategy auto); the judge sees the 384 px crop
  centred on the hole at 100 % (the hole inside it where it fits). The prepared photos are at most 1536 px,
  so this setting needs the originals: --originals DIR holding the Debian packages of photos.csv extracted
  as DIR/<package>/<path> (as bench/hires.py; `apt-get download lomiri-wallpapers-16.04 mate-backgrounds`,
  `dpkg-deb -x`), default $FILLGAP_ORIGINALS. Without any such picture the setting is left out (said so).

Viewing rule: `make --viewing look|any` writes it at the top of every answers.txt and into the key;
"look" (the default: by eye only, the sheets in an image viewer) or "any" (any aid on the sheets).
Tell every judge of a run the same one. Judges allowed any aid enlarge,
contrast-stretch and diff the two sides, and then spot every fill by its grain and compression blocks:
they measure forensics, not the eye.

Judges: each gets M x --per-method pairs (M methods), one crop each and never a crop twice; judge j's k-th
crop gets method (k + j) mod M, and its setting/kind cycles per block of M crops, so every method gets the
same kinds. Crops differ between judges while the pool of non-overlapping crops allows; else every judge
gets the same crops and the rotation shows each crop with a different method to each judge (up to M
judges). Pairs are shown in a shuffled order, the filled side drawn at random.

Layout of --out DIR: judge-J/sheet-NN.png (--per-sheet pairs each, numbered "12  A | B", crops at 100 %) and
judge-J/answers.txt (one line "12 ?" per pair) are all a judge gets; key/key-judge-J.json (method, setting,
kind, photo, crop box, filled side per pair) and key/make.json (command, pools, seconds per method) are the
key; cache/<case>/ keeps each crop, its hole and each method's fill, so a rerun only renders the sheets
(delete it after changing a method's weights). A rerun never overwrites an answers.txt with answers in it.
Versus mode (``make --versus``, exactly two methods): a pair shows the same crop filled by each method
(no untouched side; sides drawn at random) and the judge writes the side whose fill gives itself away
more; crops where the two fills are the same are left out. ``score`` reports how often the second method was preferred (50 % = no difference) with a 95 %
interval and a two-sided sign test: a direct comparison of two fills of one crop, far more sensitive to
a change than two fool rates measured on different crops (each about +-4 % at 198 pairs).
Alone mode (``make --alone``): no pairs; each picture is one crop, untouched or filled by one of the
methods (rotated like the methods, so each judge sees a crop once), and the judge writes R (an
untouched photo) or F (filled). ``score`` reports, per method, the share of its fills taken for
untouched photos, beside the share of untouched crops taken for untouched photos (the judges'
baseline), with a Fisher test between the two. That is how a fill is seen in use: nobody who looks
at a cleaned photo has the original beside it, and no missing object gives it away.
Method names go to ``fillgap.methods.get_method`` / ``fillgap.inpaint`` as given (any name they accept),
except a name given with ``--texture-variant NAME KEY=VALUE,...``: the default method with those
``fillgap.texture.TextureSettings`` changed (``--texture-variant big coarse_min_side=32``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import hashlib
import json
import math
import os
import random
import re
import shlex
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from _common import RESULTS, machine, save_json, save_text

SETTINGS = {  # setting -> (kinds, side of the crop the judge sees)
    "256": (("thick", "box"), 256),
    "2560": (("blob",), 384),
}
SHORT_SIDE = (512, 768)  # setting 256: the photo's short side after resizing (drawn per photo)
HOLE_RATIO = (0.10, 0.35)  # setting 256: hole share of the crop
BIG_SIDE, BIG_MIN = 2560, 1600  # setting 2560: long side; pictures from BIG_MIN px are used at native size
BLOB_ACROSS = (220, 420)  # setting 2560: the blob's longest extent in px
SHEET = {"margin": 16, "band": 34, "gap": 8, "row_gap": 22, "font": 22}
CACHE_VERSION = 1
SAME_FILL = 0.5  # versus: two fills closer than this (mean |difference| in the hole, levels) are the same
VIEWING = {  # the rule judges get with their folder; the fool rate means something different under each
    "look": "by eye only: the sheets in an image viewer, no image processing",
    "any": "any viewing aid on the sheets: enlarging, contrast stretching, high-pass and A/B difference maps",
}
VIEWING_RULE = {  # the same rule as the judge reads it, at the top of answers.txt
    "look": "# Look only: open the sheets in an image viewer at 100 %. No enlarging, contrast stretching,\n"
    "# difference maps or any other processing of the pictures.\n",
    "any": "# Any viewing aid on these sheets is allowed: enlarging, contrast stretching, high-pass,\n"
    "# difference maps between the two sides.\n",
}


def command_line(argv: list[str]) -> str:
    return "python bench/eye_test.py " + " ".join(shlex.quote(a) for a in argv)


# -- pictures ------------------------------------------------------------------------------------
class Photo:
    """A source picture: its name in the key, the file for setting 256, the (larger) file for 2560."""

    def __init__(self, name: str, path: Path, big: Path | None = None):
        self.name, self.path, self.big = name, path, big or path


def oriented_size(path: Path) -> tuple[int, int]:
    """(width, height) as ``fillgap.imageio.read_image`` returns the picture (EXIF rotation applied)."""
    with Image.open(path) as im:
        w, h = im.size
        if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
            w, h = h, w
    return w, h


def test_photos(originals: Path | None) -> list[Photo]:
    from fillgap.data.photos import data_root, photo_list

    folder = data_root() / "photos"
    photos = []
    for row in photo_list():
        if row["split"] != "test":
            continue
        path = folder / f"{row['name']}.png"
        if not path.exists():
            sys.exit(f"eye_test.py: prepared photo missing: {path} (run `fillgap data prepare --sets photos`)")
        big = None
        if originals is not None and row["source"].startswith("deb:"):
            candidate = originals / row["source"][4:] / row["path"]
            if candidate.exists() and oriented_size(candidate) == (int(row["width"]), int(row["height"])):
                big = candidate
        photos.append(Photo(row["name"], path, big))
    return photos


def folder_photos(folder: Path) -> list[Photo]:
    from fillgap.data.sources import list_images

    files = list_images(folder)
    if not files:
        sys.exit(f"eye_test.py: no pictures in {folder}")
    return [Photo(str(f.relative_to(folder)), f) for f in files]


@functools.lru_cache(maxsize=2)
def load_resized(path: str, width: int, height: int) -> np.ndarray:
    from fillgap.imageio import read_image

    rgb = read_image(path)
    if rgb.shape[:2] != (height, width):
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb)


def blob_mask(rng: np.random.Generator, height: int, width: int, cy: float, cx: float, across: float) -> np.ndarray:
    """One smooth object-sized blob (uint8, 255 = hole): an ellipse whose radius wobbles with a few low
    harmonics, turned at random, scaled so its longest extent is ``across`` px, centred on (cy, cx)."""
    theta = np.linspace(0, 2 * math.pi, 240, endpoint=False)
    radius = np.ones_like(theta)
    for k in range(2, 6):
        radius += rng.uniform(0, 0.16 / (k - 1)) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    x, y = radius * np.cos(theta), rng.uniform(0.55, 1.0) * radius * np.sin(theta)
    turn = rng.uniform(0, math.pi)
    x, y = x * math.cos(turn) - y * math.sin(turn), x * math.sin(turn) + y * math.cos(turn)
    scale = across / max(x.max() - x.min(), y.max() - y.min())
    x, y = (x - (x.max() + x.min()) / 2) * scale + cx, (y - (y.max() + y.min()) / 2) * scale + cy
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(np.stack([x, y], axis=1) * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return np.where(mask >= 128, 255, 0).astype(np.uint8)


# -- cases ---------------------------------------------------------------------------------------
def windows(rng: np.random.Generator, width: int, height: int, side: int) -> list[tuple[int, int]]:
    """Non-overlapping side x side crops (top, left) on a grid at a random offset, in random order."""
    nx, ny = width // side, height // side
    ox, oy = int(rng.integers(0, width - nx * side + 1)), int(rng.integers(0, height - ny * side + 1))
    boxes = [(oy + i * side, ox + j * side) for i in range(ny) for j in range(nx)]
    return [boxes[i] for i in rng.permutation(len(boxes))]


def crop_pool(photos: list[Photo], setting: str, seed: int) -> list[dict]:
    """Every non-overlapping crop of the setting, the photos taken in turn (in a random order): the
    first crops of the pool come from as many different photos as there are."""
    from fillgap.masks import make_rng

    side = SETTINGS[setting][1]
    per_photo = []
    for index, photo in enumerate(photos):
        rng = make_rng(seed, 100 + list(SETTINGS).index(setting), index)
        path = photo.path if setting == "256" else photo.big
        w, h = oriented_size(path)
        if setting == "256":
            short = min(w, h)
            target = int(rng.integers(SHORT_SIDE[0], SHORT_SIDE[1] + 1))
            scale = target / short if short > target else 1.0
        else:
            scale = BIG_SIDE / max(w, h) if max(w, h) > BIG_SIDE else 1.0 if max(w, h) >= BIG_MIN else 0.0
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if scale == 0.0 or min(size) < side:
            continue
        per_photo.append(
            [
                {
                    "setting": setting,
                    "photo": photo.name,
                    "file": str(path),
                    "size": list(size),
                    "box": [top, left, side, side],
                }
                for top, left in windows(rng, *size, side)
            ]
        )
    order = random.Random(f"{seed}-{setting}").sample(per_photo, len(per_photo))
    pool = []
    for i in range(max((len(crops) for crops in order), default=0)):
        pool += [crops[i] for crops in order if i < len(crops)]
    return pool


def make_hole(case: dict, seed: int) -> np.ndarray:
    """The case's hole (uint8, 255 = hole): on the crop for setting 256, on the whole picture for 2560."""
    from fillgap.masks import generate, make_rng

    rng = make_rng(seed, 200 + list(SETTINGS).index(case["setting"]), case["pool_index"])
    top, left, side, _ = case["box"]
    if case["setting"] == "2560":
        w, h = case["size"]
        return blob_mask(rng, h, w, top + side / 2 - 0.5, left + side / 2 - 0.5, rng.uniform(*BLOB_ACROSS))
    for _ in range(10_000):
        hole = generate(case["kind"], rng, side, side) > 0
        if HOLE_RATIO[0] <= hole.mean() <= HOLE_RATIO[1]:
            return hole.astype(np.uint8) * 255
    raise RuntimeError(f"no {case['kind']} hole of {HOLE_RATIO} in 10,000 draws")


def case_id(case: dict) -> str:
    spec = {k: case[k] for k in ("setting", "kind", "photo", "size", "box", "pool_index")}
    spec.update(version=CACHE_VERSION, seed=case["seed"], bytes=os.path.getsize(case["file"]))
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def slots(n_methods: int, per_method: int, kinds: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(setting, kind) of each crop k of a judge: the same for all judges, cycling per block of M crops."""
    return [kinds[(k // n_methods) % len(kinds)] for k in range(n_methods * per_method)]


def assign(
    pools: dict[str, list[dict]], plan: list[tuple[str, str]], judges: int, n_methods: int, seed: int
) -> tuple[list[list[dict]], dict[str, str]]:
    """Per judge, its crops in slot order (a dict per crop, with its method index); and per setting
    whether judges got distinct crops or the same ones with the methods rotated."""
    need = {s: sum(1 for setting, _ in plan if setting == s) for s in pools}
    regime = {}
    for s, pool in pools.items():
        if need[s] == 0:
            continue
        if len(pool) >= judges * need[s]:
            regime[s] = "distinct"
        elif len(pool) >= need[s]:
            regime[s] = "shared, methods rotated"
        else:
            sys.exit(
                f"eye_test.py: setting {s} has {len(pool)} crops, a judge needs {need[s]}: lower --per-method, "
                f"add photos or leave the setting out (--settings)"
            )
    out = []
    for j in range(judges):
        taken = {s: 0 for s in pools}
        crops = []
        for k, (setting, kind) in enumerate(plan):
            i = taken[setting]
            taken[setting] += 1
            index = j * need[setting] + i if regime[setting] == "distinct" else i
            case = dict(pools[setting][index], kind=kind, pool_index=index, seed=seed)
            crops.append(dict(case, slot=k, method_index=(k + j) % n_methods))
        out.append(crops)
    return out, regime


# -- fills ---------------------------------------------------------------------------------------
def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[-48:] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]


def write_png(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)


def prepare_case(cache: Path, case: dict) -> Path:
    """The case's folder in the cache with truth.png and hole.png (the crop the judge sees)."""
    folder = cache / case["id"]
    if (folder / "hole.png").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    w, h = case["size"]
    picture = load_resized(case["file"], w, h)
    top, left, side, _ = case["box"]
    hole = make_hole(case, case["seed"])
    crop_hole = hole if case["setting"] == "256" else hole[top : top + side, left : left + side]
    write_png(folder / "truth.png", picture[top : top + side, left : left + side])
    (folder / "case.json").write_text(
        json.dumps({k: v for k, v in case.items() if k not in ("slot", "method_index")}, indent=1)
    )
    write_png(folder / "hole.png", crop_hole)
    return folder


def fill_case(folder: Path, case: dict, method, name: str, tag: str = "") -> tuple[np.ndarray, float, bool]:
    """The crop filled by ``method``, the seconds the fill took, and whether it came from the cache
    (its seconds kept beside it; ``tag`` tells apart fills of one name made with other settings)."""
    from fillgap import inpaint

    path = folder / f"fill-{slug(name)}{'-' + tag if tag else ''}.png"
    if path.exists() and path.with_suffix(".json").exists():
        seconds = json.loads(path.with_suffix(".json").read_text())["seconds"]
        return np.asarray(Image.open(path).convert("RGB")), seconds, True
    w, h = case["size"]
    picture = load_resized(case["file"], w, h)
    top, left, side, _ = case["box"]
    if case["setting"] == "256":
        crop = np.ascontiguousarray(picture[top : top + side, left : left + side])
        t = time.perf_counter()
        filled = inpaint(crop, np.asarray(Image.open(folder / "hole.png")), method)
    else:
        hole = make_hole(case, case["seed"])
        t = time.perf_counter()
        filled = inpaint(picture, hole, method, strategy="auto")[top : top + side, left : left + side]
    seconds = time.perf_counter() - t
    filled = np.ascontiguousarray(filled)
    write_png(path, filled)
    path.with_suffix(".json").write_text(json.dumps({"method": name, "seconds": seconds}))
    return filled, seconds, False


# -- sheets --------------------------------------------------------------------------------------
def font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the small bitmap font
        return ImageFont.load_default()


def draw_sheet(pairs: list[tuple[int, np.ndarray, np.ndarray | None]]) -> Image.Image:
    """Numbered pairs one under the other: a white band with "12" and A / B over each crop, then the two
    crops at 100 % with a thin white gap between them; a pair without B (alone mode): its number and
    the one crop."""
    m, band, gap, row_gap = SHEET["margin"], SHEET["band"], SHEET["gap"], SHEET["row_gap"]
    side = max(a.shape[1] for _, a, _ in pairs)
    label_w = 56
    alone = all(b is None for _, _, b in pairs)
    width = 2 * m + label_w + (side if alone else 2 * side + gap)
    height = 2 * m + sum(band + a.shape[0] for _, a, _ in pairs) + row_gap * (len(pairs) - 1)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    f = font(SHEET["font"])
    y = m
    for number, a, b in pairs:
        s = a.shape[1]
        x0 = m + label_w
        draw.text((m, y + band / 2), str(number), fill="black", font=f, anchor="lm")
        sheet.paste(Image.fromarray(a), (x0, y + band))
        if b is not None:
            for letter, x in (("A", x0 + s / 2), ("B", x0 + s + gap + s / 2)):
                draw.text((x, y + band / 2), letter, fill="black", font=f, anchor="mm")
            sheet.paste(Image.fromarray(b), (x0 + s + gap, y + band))
        y += band + a.shape[0] + row_gap
    return sheet


def sheet_sizes(n: int, per_sheet: int) -> list[int]:
    """Pairs per sheet: 2-6 on each where n allows (6 pairs: one sheet of 6, not 5 + 1), near ``per_sheet``.
    3 pairs of the 384 px crops make a sheet under 1,568 px tall, which viewers show at 100 %."""
    options = range(max(1, -(-n // 6)), n // 2 + 1)
    count = min(options, key=lambda s: abs(n / s - per_sheet)) if options else max(1, -(-n // per_sheet))
    return [n // count + (i < n % count) for i in range(count)]


ANSWERS_HEAD = """# Eye test. In every numbered pair on the sheets one side (A or B) had a region removed and filled
# in by a computer; the other side is the untouched photo. Replace each ? with A or B: the side you
# think was FILLED. Guess when unsure; every line needs an answer.
"""
ALONE_HEAD = """# Eye test. Each numbered picture on the sheets is either an untouched photo, or a photo where a
# region was removed and filled in by a computer. Replace each ? with R (untouched, real) or F
# (filled). Guess when unsure; every line needs an answer.
"""
VERSUS_HEAD = """# Eye test. In every numbered pair on the sheets BOTH sides had the same region removed and filled
# in by a computer, in two different ways. Replace each ? with A or B: the side whose fill gives
# itself away MORE (looks less like an untouched photo). Guess when unsure; every line needs an answer.
"""


def answered(path: Path) -> bool:
    return path.exists() and any(
        re.fullmatch(r"\d+\s+[ABabRrFf]", line.strip()) for line in path.read_text().splitlines()
    )


# -- make ----------------------------------------------------------------------------------------
def texture_variants(specs: list[list[str]] | None, methods: list[str]) -> dict:
    """--texture-variant NAME KEY=VALUE,...: NAME -> the (``TextureSettings``, ``GrainSettings``) of a
    method that is the default with those settings changed (``grain.KEY`` for the grain's). Each
    is tried on a small picture here, so a bad value stops the run with one line before any fill."""
    import torch

    from fillgap.grain import DEFAULT_GRAIN, add_grain
    from fillgap.methods import RENAMED, method_names
    from fillgap.texture import DEFAULT_SETTINGS, synthesize

    def stop(name: str, why: str):
        sys.exit(f"eye_test.py: --texture-variant {name}: {why}")

    defaults = {"": DEFAULT_SETTINGS, "grain.": DEFAULT_GRAIN}
    fields = [p + f.name for p, d in defaults.items() for f in dataclasses.fields(d)]
    out = {}
    for name, pairs in specs or []:
        if name in method_names() or name in RENAMED or name in out:
            stop(name, "that name is taken (a method, or another variant): give it its own")
        if name not in methods:
            stop(name, "not in --methods, so no pair would show it")
        changes = {"": {}, "grain.": {}}
        for pair in filter(None, pairs.split(",")):
            key, _, value = pair.partition("=")
            prefix = "grain." if key.startswith("grain.") else ""
            field = key[len(prefix) :]
            kind = type(getattr(defaults[prefix], field, None))
            try:
                if kind is bool:  # bool("false") is True: spell it out
                    changed = {"true": True, "1": True, "false": False, "0": False}.get(value.lower())
                else:
                    changed = kind(value) if key in fields and value else None
            except ValueError:
                changed = None
            if changed is None or (kind is float and not math.isfinite(changed)):
                stop(name, f"'{pair}' is not KEY=VALUE of {', '.join(fields)}")
            changes[prefix][field] = changed
        settings = dataclasses.replace(DEFAULT_SETTINGS, **changes[""])
        grain = dataclasses.replace(DEFAULT_GRAIN, **changes["grain."])
        image = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
        hole = torch.zeros(1, 1, 48, 48)
        hole[..., 8:40, 8:40] = 1
        try:
            filled = add_grain(image, hole, synthesize(image, hole, image, settings), grain)
        except Exception as exc:  # noqa: BLE001 - any failure of these settings is the user's bad value
            stop(name, f"these settings do not run ({type(exc).__name__}: {str(exc)[:120]})")
        if not torch.isfinite(filled).all():
            stop(name, "these settings give a fill that is not a number")
        out[name] = (settings, grain)
    return out


def variant_method(name: str, settings, grain=None):
    """The default method with other texture (and grain) settings, as ``name``."""
    from fillgap.methods import DEFAULT_NAME, get_method

    default = get_method(DEFAULT_NAME)
    return type(default)(default.base, name, settings, grain or default.grain)


def make(args: argparse.Namespace, argv: list[str]) -> int:
    from fillgap.errors import FillgapError
    from fillgap.methods import get_method

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    bad = [s for s in settings if s not in SETTINGS]
    if not methods or bad or len(set(methods)) != len(methods):
        sys.exit(f"eye_test.py: give distinct --methods and --settings from {', '.join(SETTINGS)}")
    if args.versus and len(methods) != 2:
        sys.exit("eye_test.py: --versus compares exactly two --methods")
    if args.versus and args.alone:
        sys.exit("eye_test.py: --versus or --alone, not both")
    if not 2 <= args.per_sheet <= 6 or args.judges < 1 or args.per_method < 1:
        sys.exit("eye_test.py: --per-sheet is 2-6, --judges and --per-method at least 1")
    out = args.out
    filled = [p for p in sorted(out.glob("judge-*/answers.txt")) if answered(p)]
    if filled:
        sys.exit(f"eye_test.py: {filled[0]} has answers: score it, or make into a new --out")
    env = os.environ.get("FILLGAP_ORIGINALS")
    originals = args.originals or (Path(env) if env else None)
    photos = folder_photos(args.photos) if args.photos else test_photos(originals)
    if args.photos is None and "2560" in settings:
        print(
            f"{sum(p.big is not p.path for p in photos)} of {len(photos)} test photos have their original "
            f"({originals or 'no --originals'})"
        )

    variants = texture_variants(args.texture_variant, methods)
    tags = {name: hashlib.sha1(repr(v).encode()).hexdigest()[:8] for name, v in variants.items()}
    resolved = {}
    for name in methods:  # every name first: a wrong one stops the run before any fill
        t = time.perf_counter()
        try:
            method = variant_method(name, *variants[name]) if name in variants else get_method(name)
            resolved[name] = (method, time.perf_counter() - t)
        except FillgapError as exc:
            sys.exit(f"eye_test.py: {exc}")

    pools = {s: crop_pool(photos, s, args.seed) for s in settings}
    for s in settings:
        if not pools[s]:
            side = f"a long side of {BIG_MIN} px" if s == "2560" else f"a short side of {SETTINGS[s][1]} px"
            print(
                f"setting {s}: no picture with {side}"
                + (
                    " (the prepared photos are at most 1536 px: give --originals)"
                    if s == "2560" and not args.photos
                    else ""
                )
                + "; left out"
            )
            del pools[s]
    if not pools:
        sys.exit("eye_test.py: no crops in any setting")
    kinds = [(s, k) for s in pools for k in SETTINGS[s][0]]
    # versus: every crop shows both methods; alone: the untouched crop is one more arm of the rotation
    rotate = 1 if args.versus else len(methods) + args.alone
    plan = slots(rotate, args.per_method, kinds)
    per_judge, regime = assign(pools, plan, args.judges, rotate, args.seed)
    cache = out / "cache"
    cases = {}
    for crops in per_judge:
        for crop in crops:
            crop["id"] = case_id(crop)
            cases.setdefault(crop["id"], crop)
    for s in pools:
        used = len({c["id"] for c in cases.values() if c["setting"] == s})
        print(f"setting {s}: {len(pools[s])} crops in the pool, {used} used ({regime.get(s, 'not used')})")

    for case in cases.values():  # every crop's truth and hole (alone: an untouched crop has no fill)
        prepare_case(cache, case)
    # fills: each (crop, method) once, method by method
    fills: dict[tuple[str, str], np.ndarray] = {}
    timing = {}
    for mi, name in enumerate(methods):
        todo = sorted(
            {(c["id"]) for crops in per_judge for c in crops if args.versus or c["method_index"] == mi + args.alone},
            key=lambda i: (cases[i]["setting"], cases[i]["photo"], i),
        )
        method, load = resolved[name]
        spent = {s: [] for s in pools}  # seconds of every fill, cached ones as measured when made
        cached = 0
        t = time.perf_counter()
        for n, cid in enumerate(todo, 1):
            case = cases[cid]
            folder = prepare_case(cache, case)
            fills[cid, name], seconds, hit = fill_case(folder, case, method, name, tags.get(name, ""))
            spent[case["setting"]].append(seconds)
            cached += hit
            print(
                f"[{name}] {n}/{len(todo)} {case['setting']} {case['kind']} {case['photo']} {seconds:.2f} s"
                + (" (cached)" if hit else ""),
                flush=True,
            )
        per_fill = {s: round(sum(v) / len(v), 3) for s, v in spent.items() if v}
        timing[name] = {
            "load_s": round(load, 3),
            "fills": len(todo),
            "cached": cached,
            "fill_s": round(sum(map(sum, spent.values())), 2),
            "this_run_s": round(time.perf_counter() - t, 2),
            "per_fill_s": per_fill,
        }
        print(
            f"[{name}] {len(todo)} fills ({cached} cached): {timing[name]['fill_s']:.1f} s filling, loading "
            f"{load:.1f} s; per fill " + ", ".join(f"{s} px {v:.2f} s" for s, v in per_fill.items()),
            flush=True,
        )

    # judge folders and keys (those of an earlier make with more judges go: none has answers)
    (out / "key").mkdir(parents=True, exist_ok=True)
    for stale in out.glob("judge-*"):
        if stale.name.split("-", 1)[1].isdigit() and int(stale.name.split("-", 1)[1]) > args.judges:
            for f in [*stale.glob("sheet-*.png"), stale / "answers.txt", out / "key" / f"key-{stale.name}.json"]:
                f.unlink(missing_ok=True)
            if not any(stale.iterdir()):
                stale.rmdir()
    same = set()
    if args.versus:  # two equal fills tell nothing: those crops go (a change that acts on some pictures only)
        for cid in cases:
            hole = np.asarray(Image.open(cache / cid / "hole.png")) > 0
            first, second = (fills[cid, m].astype(np.int16) for m in methods)
            if not hole.any() or np.abs(first - second)[hole].mean() < SAME_FILL:
                same.add(cid)
        print(f"versus: {len(same)} of {len(cases)} crops left out, their two fills the same (< {SAME_FILL} level)")
        per_judge = [[c for c in crops if c["id"] not in same] for crops in per_judge]
        if not any(per_judge):
            sys.exit("eye_test.py: --versus: the two methods filled every crop the same; nothing to judge")
    for j, crops in enumerate(per_judge, 1):
        folder = out / f"judge-{j}"
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("sheet-*.png"):
            old.unlink()
        rng = random.Random(f"{args.seed}-judge-{j}")
        order = rng.sample(crops, len(crops))
        key, rows = [], []
        sheet_of = [i for i, size in enumerate(sheet_sizes(len(order), args.per_sheet), 1) for _ in range(size)]
        for number, crop in enumerate(order, 1):
            hole = np.asarray(Image.open(cache / crop["id"] / "hole.png")) > 0
            side = rng.choice("AB")
            if args.alone:  # one crop: untouched (arm 0) or a method's fill
                name = "untouched" if crop["method_index"] == 0 else methods[crop["method_index"] - 1]
                truth = np.asarray(Image.open(cache / crop["id"] / "truth.png").convert("RGB"))
                a, b, side = (truth if name == "untouched" else fills[crop["id"], name]), None, None
                shown = {"alone": name}
            elif args.versus:  # ``side`` shows the first method, the other side the second
                first, second = (fills[crop["id"], m] for m in methods)
                a, b = (first, second) if side == "A" else (second, first)
                name, shown = "versus", {side: methods[0], "AB".replace(side, ""): methods[1]}
            else:  # ``side`` shows the fill, the other side the untouched crop
                name = methods[crop["method_index"]]
                truth = np.asarray(Image.open(cache / crop["id"] / "truth.png").convert("RGB"))
                fill = fills[crop["id"], name]
                a, b = (fill, truth) if side == "A" else (truth, fill)
                shown = {side: name, "AB".replace(side, ""): "untouched"}
            sheet = sheet_of[number - 1]
            rows.append((sheet, number, a, b))
            top, left, size, _ = crop["box"]
            key.append(
                {
                    "number": number,
                    "sheet": f"sheet-{sheet:02d}.png",
                    **({} if args.versus or args.alone else {"filled": side}),
                    "sides": dict(sorted(shown.items())),
                    "method": name,
                    "setting": crop["setting"],
                    "kind": crop["kind"],
                    "photo": crop["photo"],
                    "picture_size": crop["size"],
                    "crop_box": {"top": top, "left": left, "size": size},
                    "hole_ratio": round(float(hole.mean()), 4),
                    "hole_inside": bool(not (hole[0].any() or hole[-1].any() or hole[:, 0].any() or hole[:, -1].any())),
                    "case": crop["id"],
                    "slot": crop["slot"],
                }
            )
        for sheet in sorted({r[0] for r in rows}):
            draw_sheet([(n, a, b) for s, n, a, b in rows if s == sheet]).save(folder / f"sheet-{sheet:02d}.png")
        (folder / "answers.txt").write_text(
            (VERSUS_HEAD if args.versus else ALONE_HEAD if args.alone else ANSWERS_HEAD)
            + VIEWING_RULE[args.viewing]
            + "".join(f"{n} ?\n" for n in range(1, len(order) + 1))
        )
        save_json((out / "key" / f"key-judge-{j}.json").resolve(), {"judge": j, "pairs": key})
        print(f"judge-{j}: {len(order)} {'pictures' if args.alone else 'pairs'} on {len({r[0] for r in rows})} sheets")
    save_json(
        (out / "key" / "make.json").resolve(),
        {
            "command": command_line(argv),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "methods": methods,
            "mode": "versus" if args.versus else "alone" if args.alone else "fool",
            "left_out_same": len(same),
            "texture_variants": {
                name: {**dataclasses.asdict(v), "grain": dataclasses.asdict(g)} for name, (v, g) in variants.items()
            },
            "judges": args.judges,
            "per_method": args.per_method,
            "seed": args.seed,
            "viewing": args.viewing,
            "settings": list(pools),
            "kinds": [f"{s}/{k}" for s, k in kinds],
            "regime": regime,
            "pool": {s: len(p) for s, p in pools.items()},
            "photos": len(photos),
            "photo_source": str(args.photos) if args.photos else "test split of photos.csv",
            "originals": str(originals) if originals else None,
            "timing": timing,
            "machine": machine(),
        },
    )
    print(f"hand out {out}/judge-*/ only; the key is in {out / 'key'}")
    return 0


# -- score ---------------------------------------------------------------------------------------
def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k / n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def cell(rows: list[dict]) -> dict:
    k, n = sum(r["fooled"] for r in rows), len(rows)
    lo, hi = wilson(k, n)
    return {"fooled": k, "n": n, "rate": k / n if n else None, "ci95": [round(lo, 4), round(hi, 4)]}


def fmt(c: dict | None) -> str:
    if not c or not c["n"]:
        return "-"
    return f"{c['fooled']}/{c['n']} = {c['rate'] * 100:.0f} % [{c['ci95'][0] * 100:.0f}-{c['ci95'][1] * 100:.0f}]"


def read_answers(path: Path, key: list[dict], letters: str = "AB") -> dict[int, str]:
    """The judge's A / B per pair number; exits with one line on anything missing or unknown."""
    numbers = {p["number"] for p in key}
    answers: dict[int, str] = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        m = re.fullmatch(r"(\d+)\s*[.:)]?\s*(.*)", text)
        if not m or int(m.group(1)) not in numbers:
            sys.exit(f"eye_test.py score: {path} line {i}: not a pair number of this judge: {line.strip()!r}")
        number, given = int(m.group(1)), m.group(2).strip()
        if given.upper() not in letters:
            sys.exit(
                f"eye_test.py score: {path} line {i}: pair {number} needs {' or '.join(letters)}, "
                f"got {given or 'nothing'!r}"
            )
        answer = given.upper()
        if number in answers:
            sys.exit(f"eye_test.py score: {path} line {i}: pair {number} answered twice")
        answers[number] = answer
    missing = sorted(numbers - set(answers))
    if missing:
        sys.exit(
            f"eye_test.py score: {path}: no answer for pair {missing[0]}"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        )
    return answers


def score(args: argparse.Namespace, argv: list[str]) -> int:
    folders = sorted(args.dir.glob("judge-*/answers.txt"), key=lambda p: int(p.parent.name.split("-")[1]))
    if not folders:
        sys.exit(f"eye_test.py score: no judge-*/answers.txt in {args.dir}")
    made = json.loads((args.dir / "key" / "make.json").read_text())
    viewing = args.viewing or made.get("viewing")
    if viewing is None:
        sys.exit("eye_test.py score: these cases were made before make --viewing: name the judges' rule with --viewing")
    rows = []
    for path in folders:
        judge = int(path.parent.name.split("-")[1])
        key_path = args.dir / "key" / f"key-judge-{judge}.json"
        if not key_path.exists():
            sys.exit(f"eye_test.py score: {path} has no key ({key_path})")
        key = json.loads(key_path.read_text())["pairs"]
        answers = read_answers(path, key, "RF" if made.get("mode") == "alone" else "AB")
        rows += [dict(pair, judge=judge, answer=answers[pair["number"]]) for pair in key]
    kinds = list(dict.fromkeys(f"{r['setting']}/{r['kind']}" for r in sorted(rows, key=lambda r: r["slot"])))
    judges = sorted({r["judge"] for r in rows})
    mode = {"versus": score_versus, "alone": score_alone}.get(made.get("mode"), score_fool)
    return mode(args, argv, made, rows, kinds, judges, viewing)


def score_fool(args, argv, made: dict, rows: list[dict], kinds: list[str], judges: list[int], viewing: str) -> int:
    """The fool rate of each method: the share of pairs where the judge picked the untouched side."""
    for r in rows:
        r["fooled"] = r["answer"] != r["filled"]
    methods = [m for m in made["methods"] if any(r["method"] == m for r in rows)]

    def per_method_cells(subset: list[dict]) -> dict:
        return {m: cell([r for r in subset if r["method"] == m]) for m in methods}

    table, per_judge = by_kind(rows, kinds, judges, per_method_cells)
    per_method = {m: {k: table[k][m] for k in table} for m in methods}
    fields = ("judge", "number", "method", "setting", "kind", "photo", "filled", "answer", "fooled")
    result = {
        "fool_rate": "share of pairs where the judge picked the untouched crop as the filled one (50 % = cannot tell)",
        "methods": per_method,
        "judges": per_judge,
        "pairs": len(rows),
        "answers": [{k: r[k] for k in fields} for r in rows],
    }
    md = [
        "# Eye test (bench/eye_test.py)",
        "Fool rate: the share of pairs where the judge picked the untouched crop as the filled one "
        "(50 % = cannot tell the fill from the photo, 0 % = always spotted). Cells: fooled/pairs = rate "
        "[95 % Wilson interval].",
        f"{len(rows)} pairs, kinds {', '.join(kinds)} (crops: "
        + "; ".join(f"{s} {r}" for s, r in made["regime"].items())
        + ")",
        *tables("method", methods, table, per_judge, fmt),
    ]
    timing = made.get("timing", {})
    if timing:
        md += [
            "",
            "Fill seconds per crop when made: "
            + "; ".join(
                f"{m} " + ", ".join(f"{s} px {v:.2f} s" for s, v in t["per_fill_s"].items())
                for m, t in timing.items()
                if t["per_fill_s"]
            )
            + ".",
        ]
    made_keys = ("settings", "pool", "photos", "photo_source", "timing")
    return save_report(args, argv, made, judges, viewing, result, md, made_keys)


def p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def sign_test(k: int, n: int) -> float:
    """Two-sided exact binomial test of k of n against 1/2: the chance of a split at least this uneven."""
    if n == 0:
        return 1.0
    far = max(k, n - k)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(far, n + 1)) / 2**n)


def save_report(
    args, argv, made: dict, judges: list[int], viewing: str, result: dict, md: list[str], made_keys=("left_out_same",)
) -> int:
    """Save a score: ``result`` (JSON) and ``md`` (title, explanation, what was counted, then the
    report's own lines), with the commands, dates, the make's settings (its common keys and
    ``made_keys``) and the viewing rule around them."""
    date = datetime.datetime.now().isoformat(timespec="seconds")
    command = command_line(argv)
    common = ("command", "date", "methods", "judges", "per_method", "seed", "regime")
    result = {
        "command": command,
        "date": date,
        "made": {k: made.get(k) for k in (*common, *made_keys)},
        "viewing": VIEWING[viewing],
        **result,
    }
    title, explain, count, *rest = md
    md = [
        title,
        "",
        explain,
        "",
        f"Scored {date} with `{command}`; cases made {made['date']} with `{made['command']}`: "
        f"{len(judges)} judge(s), {count}. Viewing: {VIEWING[viewing]}.",
        "",
        *rest,
    ]
    out = args.out.resolve()
    save_json(out / "eye-test.json", result)
    save_text(out / "eye-test.md", "\n".join(md))
    print("\n".join(md))
    return 0


def by_kind(rows: list[dict], kinds: list[str], judges: list[int], count) -> tuple[dict, dict]:
    """``count(subset)`` over all rows and each kind, and over each judge's rows."""
    table = {"all": count(rows), **{k: count([r for r in rows if f"{r['setting']}/{r['kind']}" == k]) for k in kinds}}
    return table, {str(j): count([r for r in rows if r["judge"] == j]) for j in judges}


def tables(head: str, names: list[str], table: dict, per_judge: dict, show) -> list[str]:
    """Report lines: a row per name with its cells over all rows and each kind (``table`` from
    ``by_kind``, shown by ``show``), then the per-judge table."""
    kinds = [k for k in table if k != "all"]
    return [
        f"| {head} | all | " + " | ".join(kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
        *(f"| {n} | " + " | ".join(show(table[k][n]) for k in ("all", *kinds)) + " |" for n in names),
        "",
        "Per judge:",
        "",
        "| judge | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        *(f"| {j} | " + " | ".join(fmt(cells[n]) for n in names) + " |" for j, cells in per_judge.items()),
    ]


def score_versus(args, argv, made: dict, rows: list[dict], kinds: list[str], judges: list[int], viewing: str) -> int:
    """Versus mode: how often the judges called the first method's fill the one that gives itself
    away, i.e. preferred the second method's."""
    first, second = made["methods"]
    for r in rows:
        r["fooled"] = r["sides"][r["answer"]] == first  # ``cell`` counts it: the second method preferred

    def tested(subset: list[dict]) -> dict:
        c = cell(subset)
        return {**c, "p_sign": round(sign_test(c["fooled"], c["n"]), 4)}

    def show(c: dict) -> str:
        return f"{fmt(c)}, {p_text(c['p_sign'])}" if c["n"] else "-"

    table, per_judge = by_kind(rows, kinds, judges, tested)
    fields = ("judge", "number", "setting", "kind", "photo", "sides", "answer")
    result = {
        "mode": "versus",
        "preference": f"share of pairs where the judge called {first}'s fill the more obvious one "
        f"(preferred {second}'s); 50 % = no difference",
        "second_preferred": table,
        "judges": per_judge,
        "pairs": len(rows),
        "answers": [{k: r[k] for k in fields} for r in rows],
    }
    md = [
        "# Eye test, versus (bench/eye_test.py)",
        f"Each pair: one crop filled by `{first}` and by `{second}`, sides at random; the judge wrote the side "
        f"whose fill gives itself away more. Cells: pairs where `{second}` was preferred / pairs = rate "
        "[95 % Wilson interval], p = two-sided sign test (50 % = no difference).",
        f"{len(rows)} pairs",
        "| preferred | all | " + " | ".join(kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
        f"| {second} over {first} | {show(table['all'])} | " + " | ".join(show(table[k]) for k in kinds) + " |",
        "",
        "Per judge: " + "; ".join(f"{j}: {show(per_judge[str(j)])}" for j in judges) + ".",
    ]
    return save_report(args, argv, made, judges, viewing, result, md)


def score_alone(args, argv, made: dict, rows: list[dict], kinds: list[str], judges: list[int], viewing: str) -> int:
    """Alone mode: per arm (the untouched crops, each method's fills), the share the judges took for
    an untouched photo; each method against the untouched crops by Fisher's exact test."""
    from scipy.stats import fisher_exact

    arms = ["untouched", *made["methods"]]
    for r in rows:
        r["fooled"] = r["answer"] == "R"  # ``cell`` counts it: taken for an untouched photo

    def arm_cells(subset: list[dict]) -> dict:
        base = cell([r for r in subset if r["method"] == "untouched"])
        out = {"untouched": base}
        for arm in arms[1:]:
            c = cell([r for r in subset if r["method"] == arm])
            if c["n"] and base["n"]:
                table = [[c["fooled"], c["n"] - c["fooled"]], [base["fooled"], base["n"] - base["fooled"]]]
                c["p_fisher"] = float(f"{float(fisher_exact(table)[1]):.3g}")
            out[arm] = c
        return out

    def show(c: dict) -> str:
        p = c.get("p_fisher")
        return fmt(c) + (f", {p_text(p)}" if p is not None else "")

    table, per_judge = by_kind(rows, kinds, judges, arm_cells)
    fields = ("judge", "number", "method", "setting", "kind", "photo", "answer")
    result = {
        "mode": "alone",
        "real_rate": "share of the pictures of each arm the judge took for an untouched photo (R); for a "
        "method's fills, its fool rate; for the untouched crops, the judges' baseline",
        "arms": {arm: {k: table[k][arm] for k in table} for arm in arms},
        "judges": per_judge,
        "pictures": len(rows),
        "answers": [{k: r[k] for k in fields} for r in rows],
    }
    md = [
        "# Eye test, alone (bench/eye_test.py)",
        "Each picture: one crop, untouched or filled by one method, never the same crop twice to a judge; the "
        "judge wrote R (untouched) or F (filled). Cells: pictures taken for untouched / pictures = rate [95 % "
        "Wilson interval]; for a method, p = Fisher's exact test against the untouched crops (the same rate "
        "as the untouched row = cannot tell).",
        f"{len(rows)} pictures",
        *tables("shown", arms, table, per_judge, show),
    ]
    return save_report(args, argv, made, judges, viewing, result, md)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make", help="build the cases, fills, sheets and keys")
    mk.add_argument("--methods", required=True, help="comma-separated method names (anything fillgap.inpaint takes)")
    mk.add_argument(
        "--texture-variant",
        nargs=2,
        action="append",
        metavar=("NAME", "KEY=VALUE,..."),
        help="a --methods NAME that is the default method with these fillgap.texture settings changed (repeatable)",
    )
    mk.add_argument(
        "--versus",
        action="store_true",
        help="two --methods: each pair shows one crop filled by each (no untouched side); score: preference",
    )
    mk.add_argument(
        "--alone",
        action="store_true",
        help="no pairs: each picture is a crop untouched or filled, the judge writes R or F; score: per method",
    )
    mk.add_argument("--judges", type=int, default=3)
    mk.add_argument("--per-method", type=int, default=10, help="pairs per method per judge")
    mk.add_argument("--out", type=Path, required=True, help="folder for judge-*/, key/ and cache/")
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument(
        "--viewing",
        choices=sorted(VIEWING),
        default="look",
        help="the rule written at the top of every answers.txt: look (by eye only, default) or any (any aid)",
    )
    mk.add_argument("--settings", default="256,2560", help="which settings (default both: 256,2560)")
    mk.add_argument("--photos", type=Path, help="use every picture of this folder instead of the test split")
    mk.add_argument(
        "--originals",
        type=Path,
        help="extracted Debian packages of photos.csv, for setting 2560 (default $FILLGAP_ORIGINALS)",
    )
    mk.add_argument(
        "--per-sheet", type=int, default=5, help="pairs per sheet, 2-6 (3 keeps a sheet of 384 px crops under 1,568 px)"
    )
    sc = sub.add_parser("score", help="join the judges' answers with the key: fool rates")
    sc.add_argument("--dir", type=Path, required=True, help="the folder `make --out` wrote")
    sc.add_argument("--out", type=Path, default=RESULTS, help="folder for eye-test.json and eye-test.md")
    sc.add_argument(
        "--viewing",
        choices=sorted(VIEWING),
        help="the rule the judges were given, where make did not write it (cases made before make --viewing)",
    )
    args = ap.parse_args(argv)
    return make(args, argv) if args.command == "make" else score(args, argv)


if __name__ == "__main__":
    sys.exit(main())
