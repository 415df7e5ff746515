"""`fillgap data pack` and `--data pack:FILE`: tiny prepared photos in, the same pixels (or close, JPEG) out."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from PIL import Image

from fillgap import cli
from fillgap.train.config import load_config
from fillgap.data import make_source
from fillgap.data.pack import PackImages, write_pack
from fillgap.errors import FillgapError
from fillgap.train import Trainer


@pytest.fixture
def prepared(tmp_path):
    """A data root with five prepared photos (smooth, so JPEG stays close) and their list rows."""
    rng = np.random.default_rng(3)
    (tmp_path / "data" / "photos").mkdir(parents=True)
    rows, pixels = [], {}
    for i, (split, w, h) in enumerate(
        [("train", 90, 60), ("train", 50, 70), ("train", 64, 64), ("val", 80, 40), ("test", 40, 40)]
    ):
        img = np.asarray(
            Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((w, h), Image.BILINEAR)
        )
        name = f"p{i}"
        Image.fromarray(img).save(tmp_path / "data" / "photos" / f"{name}.png")
        rows.append(dict(name=name, split=split))
        pixels[name] = img
    return tmp_path / "data", rows, pixels


def test_raw_pack_gives_back_the_exact_pixels_per_split(prepared, tmp_path):
    root, rows, pixels = prepared
    out = tmp_path / "pack.npz"
    summary = write_pack(out, root, max_side=64, rows=rows, echo=lambda line: None)
    assert summary["photos"] == 4 and summary["splits"] == {"train": 3, "val": 1}
    train = PackImages(out, "train")
    assert train.names == ["p0", "p1", "p2"] and len(train) == 3
    assert train[0].shape == (43, 64, 3) and train[0].dtype == np.uint8  # 90x60 -> long side 64
    assert np.array_equal(train[2], pixels["p2"])  # 64x64: not resized, bit-exact
    val = make_source(f"pack:{out}", "val")
    assert val.names == ["p3"] and val[0].shape == (32, 64, 3)
    with pytest.raises(FillgapError, match="has no 'test' photos .*holds train, val"):
        make_source(f"pack:{out}", "test")


def test_jpeg_pack_is_smaller_and_close(prepared, tmp_path):
    root, rows, pixels = prepared
    raw, jpeg = tmp_path / "raw.npz", tmp_path / "jpeg.npz"
    write_pack(raw, root, splits=["train", "val", "test"], rows=rows, echo=lambda line: None)
    write_pack(jpeg, root, splits=["train", "val", "test"], codec="jpeg", quality=90, rows=rows, echo=lambda line: None)
    assert jpeg.stat().st_size < raw.stat().st_size
    got = PackImages(jpeg, "test")[0].astype(int)
    assert np.abs(got - pixels["p4"]).mean() < 4


def test_pack_refuses_to_overwrite_and_names_missing_photos(prepared, tmp_path):
    root, rows, _ = prepared
    out = tmp_path / "pack.npz"
    write_pack(out, root, rows=rows, echo=lambda line: None)
    with pytest.raises(FillgapError, match="exists .*--overwrite"):
        write_pack(out, root, rows=rows, echo=lambda line: None)
    write_pack(out, root, rows=rows, overwrite=True, max_side=32, echo=lambda line: None)
    assert max(PackImages(out, "train")[0].shape) == 32
    (root / "photos" / "p1.png").unlink()
    with pytest.raises(FillgapError, match="1 prepared photos missing .*p1.png.*data prepare"):
        write_pack(tmp_path / "other.npz", root, rows=rows, echo=lambda line: None)
    assert not (tmp_path / "other.npz").exists() and not list(tmp_path.glob(".fillgap-*"))


def test_a_damaged_pack_is_a_one_line_error(prepared, tmp_path):
    root, rows, _ = prepared
    out = tmp_path / "pack.npz"
    write_pack(out, root, rows=rows, codec="jpeg", echo=lambda line: None)
    # Swap two photos' names: the arrays still load, but the list no longer matches its checksum.
    with np.load(out) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["names"] = arrays["names"][[1, 0, 2, 3]]
    edited = tmp_path / "edited.npz"
    np.savez(edited, **arrays)
    with pytest.raises(FillgapError, match="does not match its list_sha256"):
        PackImages(edited, "train")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(out.read_bytes()[:200])
    with pytest.raises(FillgapError, match="unreadable"):
        PackImages(truncated, "train")
    assert zipfile.is_zipfile(out)
    with pytest.raises(FillgapError, match="not found"):
        make_source(f"pack:{tmp_path / 'nope.npz'}")


def test_cli_packs_and_train_reads_the_pack(prepared, tmp_path, monkeypatch, capsys):
    root, rows, _ = prepared
    monkeypatch.setattr("fillgap.data.pack.photo_list", lambda: [dict(r, source="x") for r in rows])
    out = tmp_path / "pack.npz"
    assert cli.main(["data", "pack", "--out", str(out), "--root", str(root), "--max-side", "48"]) == 0
    assert "4 photos (train 3, val 1)" in capsys.readouterr().out
    assert cli.main(["data", "pack", "--out", str(out), "--root", str(root)]) == 1
    assert "exists" in capsys.readouterr().err
    cfg = load_config(
        None,
        dict(
            model="ffc-tiny",
            data=f"pack:{out}",
            size=32,
            batch_size=2,
            epochs=1,
            max_steps=2,
            val_samples=2,
            out=str(tmp_path / "run"),
            checkpoint_every=2,
            log_every=1,
            progress=False,
            grid_samples=2,
        ),
    )
    assert Trainer(cfg).fit()["step"] == 2
    assert (tmp_path / "run" / "last.pt").exists()
