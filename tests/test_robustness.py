"""Issue 7: every bad input gives a clear one-line error through the CLI, and nothing is lost.

Each case runs ``fillgap.cli.main([...])`` (in a temporary folder, so the messages name
short relative paths) and checks: the exit code, exactly one line on stderr starting
``fillgap: error:`` (or nothing on stderr for a success), no traceback, no warning, and
what happened to the files. Every case is recorded (see tests/_robustness_record.py);
``python tools/robustness_table.py`` turns the records into docs/robustness.md.
"""

from __future__ import annotations

import errno
import io
import json
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from _robustness_record import Recorder
from fillgap import fsutil, imageio
from fillgap.checkpoint import export_weights, read_checkpoint, save_checkpoint
from fillgap.cli import main
from fillgap.errors import FillgapError
from fillgap.models import create_model


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def record():
    rec = Recorder("cli")
    yield rec
    rec.save()


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """An untrained ffc-tiny, as released weights: real loading, instant filling."""
    path = tmp_path_factory.mktemp("weights") / "ffc-tiny.safetensors"
    torch.manual_seed(0)
    export_weights(path, create_model("ffc-tiny"))
    return str(path)


@pytest.fixture
def cli(capsys, record):
    def run(group: str, case: str, args: list, expect: int, checked: str = "") -> str:
        """Run the CLI; ``checked``: what the test verifies beyond the message (for the doc)."""
        capsys.readouterr()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err, err
        assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]
        lines = err.strip().splitlines()
        if rc:
            assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
            assert lines[0].startswith("fillgap: error: "), err
            shown = lines[0]
        else:
            assert err.strip() == "", err
            shown = out.strip().splitlines()[-1]
        assert rc == expect, f"exit {rc}, expected {expect}: {err or out}"
        record.add(group=group, case=case, exit=rc, shown=shown, checked=checked)
        return shown

    return run


# -- pictures ----------------------------------------------------------------------------


def picture(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, channels) if channels > 1 else (h, w), dtype=np.uint8)


def hole(h: int, w: int) -> np.ndarray:
    """uint8 mask with a box in the middle (at least one pixel)."""
    m = np.zeros((h, w), np.uint8)
    m[h // 3 : h // 3 + max(1, h // 3), w // 3 : w // 3 + max(1, w // 3)] = 255
    return m


def save(path: str, array: np.ndarray, **options) -> str:
    Image.fromarray(array).save(path, **options)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(path: str, width: int, height: int) -> str:
    """A PNG that claims a size in its header and holds almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * 64)
    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")
    )
    return path


def png_bomb(path: str, width: int, height: int) -> str:
    """A valid greyscale PNG of zeros: about 100 kB on disk for 100 MB of pixels."""
    z = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")
    )
    return path


def read_rgb(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def assert_kept(out: np.ndarray, expected: np.ndarray, mask: np.ndarray) -> None:
    """Every pixel outside the hole is bit-identical."""
    assert out.shape == expected.shape
    keep = mask == 0
    np.testing.assert_array_equal(out[keep], expected[keep])


# -- 1. pictures and masks ---------------------------------------------------------------


def test_unreadable_pictures(cli, weights):
    save("mask.png", hole(16, 16))
    good = save("good.png", picture(16, 16))
    data = Path(good).read_bytes()
    Path("zero.png").write_bytes(b"")
    Path("text.png").write_text("this is not a picture\n")
    Path("noise.jpg").write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    Path("half.png").write_bytes(data[: len(data) // 2])
    Path("header-only.png").write_bytes(data[:33])  # signature + IHDR, no pixels
    crc = bytearray(data)
    crc[45] ^= 0xFF  # inside the IDAT data: its checksum no longer matches
    Path("bad-crc.png").write_bytes(bytes(crc))
    buf = io.BytesIO()
    Image.fromarray(picture(64, 64)).save(buf, "JPEG", quality=90)
    Path("half.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    Path("a-folder.png").mkdir()
    cases = [
        ("zero-byte image file", "zero.png", "empty file"),
        ("text file named .png", "text.png", "not an image"),
        ("random bytes named .jpg", "noise.jpg", "not an image"),
        ("PNG cut in half", "half.png", "corrupt or truncated"),
        ("PNG with its header only", "header-only.png", "damaged"),
        ("PNG with a damaged chunk checksum", "bad-crc.png", "corrupt or truncated"),
        ("JPEG cut in half", "half.jpg", "corrupt or truncated"),
        ("missing image file", "nowhere.png", "image not found"),
    ]
    for case, name, words in cases:
        shown = cli(
            "pictures", case, ["fill", name, "-m", "mask.png", "-o", "out.png", "--model", weights], 1, "no output file"
        )
        assert words in shown and name in shown
        assert not Path("out.png").exists()
    # The same files as masks.
    for case, name, words in cases[:4] + [("folder named like a picture", "a-folder.png", "got a folder")]:
        shown = cli(
            "masks",
            case.replace("image", "mask"),
            ["fill", "good.png", "-m", name, "-o", "out.png", "--model", weights],
            1,
            "no output file",
        )
        assert words in shown and name in shown
        assert not Path("out.png").exists()
    shown = cli("masks", "missing mask file", ["fill", "good.png", "-m", "nowhere.png", "-o", "out.png"], 1)
    assert "mask not found" in shown


def test_modes_16bit_palette_grey(cli, weights):
    h, w = 13, 11
    m = hole(h, w)
    save("mask.png", m)
    deep = (np.arange(h * w, dtype=np.uint32).reshape(h, w) * 450 % 65536).astype(np.uint16)
    Image.fromarray(deep).save("deep16.png")
    assert Image.open("deep16.png").mode == "I;16"
    dark = np.full((h, w), 200, np.uint16)  # a dark 16-bit picture must stay dark (200/65535)
    Image.fromarray(dark).save("dark16.png")
    pal = Image.fromarray(picture(h, w)).quantize(16)
    pal.save("palette.png")
    save("grey.png", picture(h, w, 1))
    Image.fromarray(picture(h, w)).convert("CMYK").save("cmyk.jpg", quality=95)

    cli(
        "modes",
        "16-bit greyscale PNG",
        ["fill", "deep16.png", "-m", "mask.png", "-o", "o1.png", "--model", weights],
        0,
        "unmasked pixels = the 16-bit values scaled to 8 bits",
    )
    grey = np.clip(deep.astype(np.float64) * 255 / 65535 + 0.5, 0, 255).astype(np.uint8)
    assert_kept(read_rgb("o1.png"), np.repeat(grey[..., None], 3, 2), m)

    cli(
        "modes",
        "dark 16-bit greyscale PNG (max 200 of 65535)",
        ["fill", "dark16.png", "-m", "mask.png", "-o", "o2.png", "--model", weights],
        0,
        "unmasked pixels stay dark (<= 1 of 255)",
    )
    assert read_rgb("o2.png")[m == 0].max() <= 1  # scaled by the bit depth, not by the picture's own maximum

    cli(
        "modes",
        "palette PNG",
        ["fill", "palette.png", "-m", "mask.png", "-o", "o3.png", "--model", weights],
        0,
        "unmasked pixels = the palette colours",
    )
    assert_kept(read_rgb("o3.png"), np.asarray(pal.convert("RGB")), m)

    cli(
        "modes",
        "greyscale PNG",
        ["fill", "grey.png", "-m", "mask.png", "-o", "o4.png", "--model", weights],
        0,
        "unmasked pixels = the grey values",
    )
    assert_kept(read_rgb("o4.png"), np.repeat(picture(h, w, 1)[..., None], 3, 2), m)

    cli(
        "modes",
        "CMYK JPEG",
        ["fill", "cmyk.jpg", "-m", "mask.png", "-o", "o5.png", "--model", weights],
        0,
        "unmasked pixels = Pillow's RGB of the JPEG",
    )
    assert_kept(read_rgb("o5.png"), read_rgb("cmyk.jpg"), m)


def test_alpha_is_kept(cli, weights):
    h, w = 12, 15
    m = hole(h, w)
    save("mask.png", m)
    rgba = picture(h, w, 4, seed=3)
    save("rgba.png", rgba)
    cli(
        "alpha",
        "RGBA PNG",
        ["fill", "rgba.png", "-m", "mask.png", "-o", "o1.png", "--model", weights],
        0,
        "RGBA output; alpha identical everywhere; unmasked RGB identical",
    )
    out = np.asarray(Image.open("o1.png"))
    assert out.shape == (h, w, 4)
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])  # alpha everywhere, hole included
    assert_kept(out[..., :3], rgba[..., :3], m)

    la = np.stack([picture(h, w, 1), picture(h, w, 1, seed=9)], axis=2)
    Image.fromarray(la, "LA").save("la.png")
    cli(
        "alpha",
        "greyscale + alpha PNG",
        ["fill", "la.png", "-m", "mask.png", "-o", "o2.png", "--model", weights],
        0,
        "greyscale + alpha output; alpha identical",
    )
    o2 = np.asarray(Image.open("o2.png"))
    assert o2.shape == (h, w, 2)  # a greyscale picture comes back greyscale
    np.testing.assert_array_equal(o2[..., 1], la[..., 1])
    assert_kept(o2[..., 0], la[..., 0], m)

    pal = Image.fromarray(picture(h, w)).quantize(8)
    pal.info["transparency"] = 0
    pal.save("pal-t.png", transparency=0)
    expected_alpha = np.asarray(Image.open("pal-t.png").convert("RGBA"))[..., 3]
    assert (expected_alpha == 0).any()
    cli(
        "alpha",
        "palette PNG with a transparent colour",
        ["fill", "pal-t.png", "-m", "mask.png", "-o", "o3.png", "--model", weights],
        0,
        "alpha identical (0 where the colour was transparent)",
    )
    np.testing.assert_array_equal(np.asarray(Image.open("o3.png"))[..., 3], expected_alpha)

    shown = cli(
        "alpha",
        "RGBA input, JPEG output",
        ["fill", "rgba.png", "-m", "mask.png", "-o", "o4.jpg", "--model", weights],
        1,
        "no output file",
    )
    assert "transparency" in shown and "o4.png" in shown
    assert not Path("o4.jpg").exists()


def test_exif_rotated_jpeg(cli, weights):
    stored = np.zeros((16, 24, 3), np.uint8)  # 24 wide, 16 high as stored
    stored[..., 0] = np.arange(24)[None, :] * 10
    stored[..., 1] = np.arange(16)[:, None] * 15
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save("photo.jpg", quality=100, subsampling=0, exif=exif)
    seen = np.rot90(np.asarray(Image.open("photo.jpg").convert("RGB")), k=-1)  # clockwise
    assert seen.shape == (24, 16, 3)
    np.testing.assert_array_equal(imageio.read_image("photo.jpg"), seen)

    m = hole(24, 16)
    save("mask-seen.png", m)
    cli(
        "orientation",
        "EXIF-rotated JPEG, mask drawn as seen",
        ["fill", "photo.jpg", "-m", "mask-seen.png", "-o", "out.png", "--model", weights],
        0,
        "output 16x24 as seen; unmasked pixels = the rotated picture",
    )
    out = read_rgb("out.png")
    assert out.shape == (24, 16, 3)
    assert_kept(out, seen, m)

    save("mask-stored.png", hole(16, 24))
    shown = cli(
        "orientation",
        "EXIF-rotated JPEG, mask of the stored (unrotated) size",
        ["fill", "photo.jpg", "-m", "mask-stored.png", "-o", "out2.png", "--model", weights],
        1,
    )
    assert "24x16 but the image is 16x24" in shown


def test_damaged_exif_keeps_the_picture(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(picture(8, 8)).save(buf, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")
    (tmp_path / "odd-exif.jpg").write_bytes(buf.getvalue())
    assert imageio.read_image(tmp_path / "odd-exif.jpg").shape == (8, 8, 3)


def test_huge_pictures_refused_before_decoding(cli, weights, monkeypatch):
    decoded = []
    real_load = ImageFile.ImageFile.load

    def spy(self):
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    save("mask.png", hole(40, 40))
    save("pic.png", picture(40, 40))
    # Pillow's guard: a warning above MAX_IMAGE_PIXELS, an error above twice that.
    png_header_only("claims-150mp.png", 15000, 10000)
    png_header_only("claims-300mp.png", 20000, 15000)
    png_bomb("bomb.png", 10001, 10000)  # a real one: 100 MB of pixels in about 100 kB
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning must not escape either
        for case, name in [
            ("PNG header claiming 15000x10000 (Pillow's warning range)", "claims-150mp.png"),
            ("PNG header claiming 20000x15000 (Pillow's error range)", "claims-300mp.png"),
            ("valid 10001x10000 PNG of zeros (decompression bomb)", "bomb.png"),
        ]:
            shown = cli(
                "size",
                case,
                ["fill", name, "-m", "mask.png", "-o", "out.png", "--model", weights],
                1,
                "no pixel decoded (spy on Pillow's load); also with warnings as errors",
            )
            assert "image too large" in shown and "100,000,000 pixels" in shown
            shown = cli(
                "size",
                case.replace("PNG", "mask PNG", 1),
                ["fill", "pic.png", "-m", name, "-o", "out.png", "--model", weights],
                1,
                "no pixel of the mask decoded",
            )
            assert "image too large" in shown
    assert set(decoded) == {(40, 40)}  # only pic.png (read before each bomb of a mask), no bomb

    decoded.clear()
    monkeypatch.setattr(imageio, "MAX_PIXELS", 1000)  # fillgap's own check, below Pillow's
    shown = cli(
        "size",
        "40x40 picture, limit lowered to 1,000 pixels",
        ["fill", "pic.png", "-m", "mask.png", "-o", "out.png", "--model", weights],
        1,
        "no pixel decoded: fillgap's check reads the header only",
    )
    assert "image too large: pic.png is 40x40, the limit is 1,000 pixels" in shown
    assert decoded == []
    assert not Path("out.png").exists()


def test_forged_headers_refused_before_decoding(cli, weights, monkeypatch):
    """A few hundred bytes whose header claims megapixels: refused, not decoded into grey."""
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or real_load(self))
    save("mask.png", hole(8, 8))
    buf = io.BytesIO()
    Image.fromarray(picture(8, 8)).save(buf, "JPEG")
    jpeg = bytearray(buf.getvalue())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 9791, 2919)  # height, width: 28.6 MP in under 1 kB
    Path("forged.jpg").write_bytes(bytes(jpeg))
    png_header_only("forged.png", 6000, 5000)
    for case, name in [
        ("JPEG header claiming 2919x9791 in under 1 kB", "forged.jpg"),
        ("PNG header claiming 6000x5000 in under 100 bytes", "forged.png"),
    ]:
        shown = cli(
            "size",
            case,
            ["fill", name, "-m", "mask.png", "-o", "out.png", "--model", weights],
            1,
            "no pixel decoded (spy on Pillow's load)",
        )
        assert "more than" in shown and "can hold" in shown
    assert decoded == []


def test_extremely_compressible_pictures_are_not_refused(tmp_path):
    """The bytes-per-pixel guard keeps a wide margin: flat pictures compress far, and are fine."""
    Image.new("1", (3000, 3000)).save(tmp_path / "flat.png", optimize=True)
    Image.new("L", (3000, 3000)).save(tmp_path / "flat.jpg", quality=1, progressive=True)
    for name in ("flat.png", "flat.jpg"):
        size = (tmp_path / name).stat().st_size
        assert imageio.read_image(tmp_path / name).shape == (3000, 3000, 3), (name, size)


@pytest.mark.parametrize("h,w", [(1, 1), (1, 7), (5, 1), (3, 5), (17, 9)])
def test_tiny_and_odd_sizes(cli, weights, h, w):
    img = picture(h, w, seed=h * 100 + w)
    m = hole(h, w)
    save("pic.png", img)
    save("mask.png", m)
    # a 1x1 picture's hole is all of it: past the 60 % refusal, so --force
    force = ["--force"] if (m > 0).mean() >= 0.6 else []
    cli(
        "size",
        f"{w}x{h} picture",
        ["fill", "pic.png", "-m", "mask.png", "-o", "out.png", "--model", weights, *force],
        0,
        "same size out; unmasked pixels identical",
    )
    assert_kept(read_rgb("out.png"), img, m)


def test_empty_mask_returns_the_input_without_a_model(cli, monkeypatch):
    import fillgap.checkpoint
    import fillgap.fill

    def no_model(*args, **kwargs):
        raise AssertionError("the model was used for an empty mask")

    monkeypatch.setattr(fillgap.checkpoint, "load_model", no_model)
    monkeypatch.setattr(fillgap.fill, "run", no_model)
    save("pic.png", picture(9, 14))
    Image.fromarray(picture(20, 30)).save("photo.jpg", quality=80)
    save("empty.png", np.zeros((9, 14), np.uint8))
    save("empty-jpg.png", np.zeros((20, 30), np.uint8))
    cli(
        "masks",
        "empty mask (PNG in, PNG out)",
        ["fill", "pic.png", "-m", "empty.png", "-o", "out.png"],
        0,
        "output file = input file, byte for byte; no model loaded or run",
    )
    assert Path("out.png").read_bytes() == Path("pic.png").read_bytes()
    cli(
        "masks",
        "empty mask (JPEG in, JPEG out)",
        ["fill", "photo.jpg", "-m", "empty-jpg.png", "-o", "out.jpg"],
        0,
        "output file = input file (no second JPEG generation); no model",
    )
    assert Path("out.jpg").read_bytes() == Path("photo.jpg").read_bytes()  # no second JPEG generation
    cli(
        "masks",
        "empty mask (JPEG in, PNG out)",
        ["fill", "photo.jpg", "-m", "empty-jpg.png", "-o", "out2.png"],
        0,
        "pixels = the decoded JPEG; no model",
    )
    np.testing.assert_array_equal(read_rgb("out2.png"), read_rgb("photo.jpg"))


def test_full_mask_and_mask_sizes(cli, weights):
    img = picture(10, 12)
    save("pic.png", img)
    save("full.png", np.full((10, 12), 255, np.uint8))
    shown = cli(
        "masks",
        "full mask (every pixel a hole)",
        ["fill", "pic.png", "-m", "full.png", "-o", "o1.png", "--model", weights],
        1,
        "no output file",
    )
    assert "--invert-mask" in shown and "--force" in shown and not Path("o1.png").exists()
    cli(
        "masks",
        "full mask, --force",
        ["fill", "pic.png", "-m", "full.png", "-o", "o1.png", "--model", weights, "--force"],
        0,
        "output 12x10",
    )
    assert read_rgb("o1.png").shape == (10, 12, 3)

    save("small.png", hole(5, 6))
    shown = cli(
        "masks", "mask of another size", ["fill", "pic.png", "-m", "small.png", "-o", "o2.png", "--model", weights], 1
    )
    assert "mask small.png is 6x5 but the image is 12x10" in shown and "--resize-mask" in shown
    cli(
        "masks",
        "mask of another size, --resize-mask",
        ["fill", "pic.png", "-m", "small.png", "-o", "o2.png", "--model", weights, "--resize-mask"],
        0,
        "output 12x10",
    )
    assert read_rgb("o2.png").shape == (10, 12, 3)
    save("big.png", hole(40, 48))
    cli(
        "masks",
        "larger mask, --resize-mask",
        ["fill", "pic.png", "-m", "big.png", "-o", "o3.png", "--model", weights, "--resize-mask"],
        0,
        "output 12x10",
    )


def test_usage_errors_are_one_line(cli):
    save("pic.png", picture(4, 4))
    shown = cli("usage", "no --output", ["fill", "pic.png", "-m", "pic.png"], 2)
    assert "--output" in shown
    shown = cli("usage", "negative --dilate", ["fill", "pic.png", "-m", "pic.png", "-o", "o.png", "--dilate", "-1"], 2)
    assert "--dilate" in shown
    cli("usage", "no --mask for one picture", ["fill", "pic.png", "-o", "o.png"], 1)


# -- 2. files ----------------------------------------------------------------------------


def test_outputs_that_are_inputs(cli, weights):
    save("pic.png", picture(8, 8))
    save("mask.png", hole(8, 8))
    before = Path("pic.png").read_bytes(), Path("mask.png").read_bytes()
    for case, out, extra in [
        ("output = the input", "pic.png", []),
        ("output = the input, --overwrite", "pic.png", ["--overwrite"]),
        ("output = the mask, --overwrite", "mask.png", ["--overwrite"]),
        ("output = the input by another path", "./sub/../pic.png", ["--overwrite"]),
    ]:
        Path("sub").mkdir(exist_ok=True)
        shown = cli(
            "files",
            case,
            ["fill", "pic.png", "-m", "mask.png", "-o", out, "--model", weights] + extra,
            1,
            "picture and mask unchanged",
        )
        assert "is an input file" in shown
    os.symlink("pic.png", "link.png")
    shown = cli(
        "files",
        "output = a link to the input, --overwrite",
        ["fill", "pic.png", "-m", "mask.png", "-o", "link.png", "--model", weights, "--overwrite"],
        1,
        "picture and mask unchanged",
    )
    assert "is an input file" in shown
    assert (Path("pic.png").read_bytes(), Path("mask.png").read_bytes()) == before


def test_existing_outputs_need_overwrite(cli, weights):
    save("pic.png", picture(8, 8))
    save("mask.png", hole(8, 8))
    Path("out.png").write_bytes(b"precious")
    shown = cli(
        "files",
        "output exists",
        ["fill", "pic.png", "-m", "mask.png", "-o", "out.png", "--model", weights],
        1,
        "existing file unchanged",
    )
    assert "output exists: out.png" in shown and "--overwrite" in shown
    assert Path("out.png").read_bytes() == b"precious"
    cli(
        "files",
        "output exists, --overwrite",
        ["fill", "pic.png", "-m", "mask.png", "-o", "out.png", "--model", weights, "--overwrite"],
        0,
        "replaced by the filled picture",
    )
    assert read_rgb("out.png").shape == (8, 8, 3)
    Path("folder.png").mkdir()
    shown = cli(
        "files",
        "output is a folder",
        ["fill", "pic.png", "-m", "mask.png", "-o", "folder.png", "--model", weights, "--overwrite"],
        1,
    )
    assert "output is a folder" in shown
    shown = cli(
        "files",
        "output with an unknown suffix",
        ["fill", "pic.png", "-m", "mask.png", "-o", "out.xyz", "--model", weights],
        1,
    )
    assert "unknown output format '.xyz'" in shown


def test_unwritable_output_folders(cli, weights, monkeypatch):
    save("pic.png", picture(8, 8))
    save("mask.png", hole(8, 8))
    shown = cli(
        "files",
        "output folder below a file",
        ["fill", "pic.png", "-m", "mask.png", "-o", "pic.png/sub/out.png", "--model", weights],
        1,
    )
    assert "pic.png is a file, not a folder" in shown
    shown = cli(
        "files",
        "output in /proc (no files can be made)",
        ["fill", "pic.png", "-m", "mask.png", "-o", "/proc/fillgap-test.png", "--model", weights],
        1,
    )
    assert "cannot write to the folder /proc" in shown
    Path("out").mkdir()
    real_open = os.open

    def refuse(path, flags, *args, **kwargs):
        if str(path).endswith(".fillgap-tmp"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)  # root ignores chmod: simulate a read-only file system
    shown = cli(
        "files",
        "read-only output folder (simulated: EROFS)",
        ["fill", "pic.png", "-m", "mask.png", "-o", "out/o.png", "--model", weights],
        1,
        "folder left empty",
    )
    assert "cannot write to the folder out: Read-only file system" in shown
    assert os.listdir("out") == []


def _fail_midway(monkeypatch, failing_errno=errno.ENOSPC):
    """A disk that fills up during the write: the first write() takes half the bytes, the next fails."""
    real_write, calls = os.write, []

    def half_then_fail(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[: max(1, len(data) // 2)]))
        raise OSError(failing_errno, os.strerror(failing_errno))

    monkeypatch.setattr(fsutil, "_os_write", half_then_fail)
    return calls


def test_disk_full_leaves_nothing_behind(cli, weights, monkeypatch):
    save("pic.png", picture(8, 8))
    save("mask.png", hole(8, 8))
    Path("out").mkdir()
    _fail_midway(monkeypatch)
    shown = cli(
        "files",
        "disk full while writing (simulated: ENOSPC after half the bytes)",
        ["fill", "pic.png", "-m", "mask.png", "-o", "out/o.png", "--model", weights],
        1,
        "no picture and no temp file left",
    )
    assert "cannot write out/o.png: No space left on device" in shown
    assert os.listdir("out") == []  # no picture, no temp file

    Path("out/o.png").write_bytes(b"the previous result")
    shown = cli(
        "files",
        "disk full while replacing an output (--overwrite)",
        ["fill", "pic.png", "-m", "mask.png", "-o", "out/o.png", "--model", weights, "--overwrite"],
        1,
        "the old output intact, no temp file left",
    )
    assert "No space left on device" in shown
    assert os.listdir("out") == ["o.png"]
    assert Path("out/o.png").read_bytes() == b"the previous result"  # the old file survives whole


def test_disk_full_at_fsync(monkeypatch, tmp_path):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(FillgapError, match="No space left on device"):
        imageio.write_image(tmp_path / "o.png", picture(4, 4))
    assert list(tmp_path.iterdir()) == []


def test_output_appearing_during_the_write_is_not_replaced(monkeypatch, tmp_path):
    real_save = Image.Image.save
    target = tmp_path / "o.png"

    def someone_else_writes_first(self, fp, format=None, **params):
        target.write_bytes(b"another process's result")
        return real_save(self, fp, format, **params)

    monkeypatch.setattr(Image.Image, "save", someone_else_writes_first)
    with pytest.raises(FillgapError, match="output exists"):
        imageio.write_image(target, picture(4, 4))
    assert target.read_bytes() == b"another process's result"
    assert [p.name for p in tmp_path.iterdir()] == ["o.png"]


def test_outputs_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        imageio.write_image(tmp_path / "o.png", picture(4, 4))
    finally:
        os.umask(old)
    assert (tmp_path / "o.png").stat().st_mode & 0o777 == 0o644  # not 0o600 as with mkstemp


def test_interrupted_write_leaves_no_temp_file(monkeypatch, tmp_path):
    def interrupt(self, fp, format=None, **params):
        fp.write(b"\x89PNG partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupt)
    with pytest.raises(KeyboardInterrupt):
        imageio.write_image(tmp_path / "o.png", picture(4, 4))
    assert list(tmp_path.iterdir()) == []


# -- 3. checkpoints and configs ------------------------------------------------------------


def test_bad_checkpoints(cli, weights):
    from safetensors.torch import save_file

    save("pic.png", picture(8, 8))
    save("mask.png", hole(8, 8))
    tiny, small = create_model("ffc-tiny"), create_model("ffc-small")
    save_checkpoint("good.pt", tiny, step=1)
    data = Path("good.pt").read_bytes()
    Path("half.pt").write_bytes(data[: len(data) // 2])
    Path("empty.pt").write_bytes(b"")
    sdata = Path(weights).read_bytes()
    Path("half.safetensors").write_bytes(sdata[: len(sdata) // 2])
    # Another architecture under this one's name.
    torch.save({"model_name": "ffc-tiny", "model_kwargs": {}, "model": small.state_dict()}, "other-arch.pt")
    save_file(
        {k: v.contiguous() for k, v in small.state_dict().items()},
        "other-arch.safetensors",
        metadata={"model_name": "ffc-tiny", "model_kwargs": "{}"},
    )
    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, "no-meta.safetensors")
    save_file(
        {k: v.contiguous() for k, v in tiny.state_dict().items()},
        "bad-kwargs.safetensors",
        metadata={"model_name": "ffc-tiny", "model_kwargs": "{not json"},
    )
    torch.save({"model_name": "unet-9000", "model": tiny.state_dict()}, "unknown-name.pt")
    torch.save(tiny.state_dict(), "plain-state.pt")
    torch.save({"model_name": "ffc-tiny", "model": {"w": "not a tensor"}}, "not-tensors.pt")
    torch.save(
        {"model_name": "ffc-tiny", "model_kwargs": {"width": "eight"}, "model": tiny.state_dict()}, "bad-settings.pt"
    )
    torch.save(tiny, "whole-module.pt")  # a pickled object: loading it would run code
    import pickle

    Path("plain-pickle.pt").write_bytes(pickle.dumps({"model_name": "ffc-tiny"}, protocol=4))  # torch warned
    Path("weights.pt").write_bytes(sdata)  # safetensors content under a .pt name
    cases = [
        ("missing checkpoint", "nowhere.pt", "checkpoint not found"),
        ("zero-byte checkpoint", "empty.pt", "empty checkpoint"),
        ("truncated .pt checkpoint", "half.pt", "unreadable checkpoint"),
        ("truncated .safetensors weights", "half.safetensors", "unreadable weights file"),
        (".pt from another architecture", "other-arch.pt", "does not match model 'ffc-tiny'"),
        (".safetensors from another architecture", "other-arch.safetensors", "does not match model 'ffc-tiny'"),
        (".safetensors without fillgap metadata", "no-meta.safetensors", "does not say which model"),
        (".safetensors with damaged metadata", "bad-kwargs.safetensors", "damaged fillgap metadata"),
        ("checkpoint naming an unknown model", "unknown-name.pt", "holds model 'unet-9000', which this fillgap"),
        ("bare state_dict .pt", "plain-state.pt", "not a fillgap training checkpoint"),
        ("checkpoint whose weights are not tensors", "not-tensors.pt", "not a table of tensors"),
        ("checkpoint with wrong model settings", "bad-settings.pt", 'settings {"width": "eight"}'),
        ("pickled module (code, not data)", "whole-module.pt", "unreadable checkpoint"),
        ("a plain pickle (protocol 4), not torch's format", "plain-pickle.pt", "unreadable checkpoint"),
        ("safetensors file renamed .pt", "weights.pt", "keep its suffix"),
        ("a picture given as --model", "pic.png", "unreadable checkpoint"),
    ]
    for case, name, words in cases:
        shown = cli(
            "checkpoints",
            case,
            ["fill", "pic.png", "-m", "mask.png", "-o", "out.png", "--model", name],
            1,
            "no output file; under 400 characters",
        )
        assert words in shown, shown
        assert len(shown) < 400  # one readable line, not torch's list of every key
        assert not Path("out.png").exists()


def test_checkpoint_loads_after_the_checks(tmp_path):
    model = create_model("ffc-tiny")
    save_checkpoint(tmp_path / "c.pt", model, step=3)
    assert read_checkpoint(tmp_path / "c.pt")["step"] == 3


def test_bad_configs(cli):
    Path("unknown.yaml").write_text("model: ffc-tiny\nepoch: 3\n")
    Path("type.yaml").write_text("epochs: ten\n")
    Path("negative.yaml").write_text("lr: -0.001\n")
    Path("nan.yaml").write_text("lr: .nan\n")
    Path("zero-log.yaml").write_text("log_every: 0\n")
    Path("scale.yaml").write_text("scale: [0, 1]\n")
    Path("masks.yaml").write_text("masks: round\n")
    Path("syntax.yaml").write_text("model: [ffc-tiny\nepochs: 3\n")
    Path("list.yaml").write_text("- model\n- epochs\n")
    Path("int-key.yaml").write_text("1: 2\n")
    Path("binary.yaml").write_bytes(b"\xff\xfe\x00\x81 binary")
    Path("type.toml").write_text('epochs = "ten"\n')
    Path("syntax.toml").write_text("epochs = \n")
    Path("folder.yaml").mkdir()
    Path("wide.yaml").write_text("model: ffc-tiny\nmodel_kwargs: {width: 100000}\n")
    Path("no-prior.yaml").write_text("model: ffc-tiny\nmodel_kwargs: {prior: oracle}\n")
    cases = [
        ("unknown config key", ["--config", "unknown.yaml"], "unknown config key 'epoch' (did you mean 'epochs'?)"),
        ("wrong type", ["--config", "type.yaml"], "bad value for config key 'epochs': 'ten'"),
        ("negative learning rate", ["--config", "negative.yaml"], "'lr': -0.001: must be a number above 0"),
        ("NaN learning rate", ["--config", "nan.yaml"], "'lr': nan"),
        ("log_every: 0", ["--config", "zero-log.yaml"], "'log_every': 0: must be at least 1"),
        ("crop scale of 0", ["--config", "scale.yaml"], "'scale'"),
        ("unknown mask kind", ["--config", "masks.yaml"], "'masks': 'round': not a mask kind"),
        ("YAML syntax error", ["--config", "syntax.yaml"], "syntax.yaml: expected ',' or ']', but got ':' at line 2"),
        ("YAML list, not a mapping", ["--config", "list.yaml"], "must be a mapping"),
        ("YAML key that is a number", ["--config", "int-key.yaml"], "key 1 is not a name"),
        ("binary file as config", ["--config", "binary.yaml"], "not a text file"),
        ("TOML wrong type", ["--config", "type.toml"], "'epochs': 'ten'"),
        ("TOML syntax error", ["--config", "syntax.toml"], "cannot parse config syntax.toml"),
        ("config is a folder", ["--config", "folder.yaml"], "config is not a file"),
        ("missing config file", ["--config", "nowhere.yaml"], "config file not found"),
        ("flag override --size 0", ["--size", "0"], "'size': 0: must be from 16 to 4096"),
        ("flag override --size 200000", ["--size", "200000"], "'size': 200000: must be from 16 to 4096"),
        ("flag override --batch-size -4", ["--batch-size", "-4"], "'batch_size': -4"),
        (
            "model_kwargs: {width: 100000}",
            ["--config", "wide.yaml"],
            "'model_kwargs': {'width': 100000}: model 'ffc-tiny' would have 90,966,470,691 parameters",
        ),
        (
            "model_kwargs: {prior: oracle}",
            ["--config", "no-prior.yaml"],
            "'model_kwargs': {'prior': 'oracle'}: bad settings for model 'ffc-tiny': unknown prior 'oracle'",
        ),
    ]
    for case, args, words in cases:
        shown = cli("configs", case, ["train", *args], 1)
        assert words in shown, shown


def test_out_of_memory_is_one_line(cli, monkeypatch):
    """What no range check can foresee (a machine with less memory): torch's allocator raises a
    RuntimeError, not a MemoryError; it was an "internal error", exit 70."""
    from fillgap import train

    def too_big(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 360000000000 bytes. Error code 12"
        )

    monkeypatch.setattr(train, "train", too_big)
    shown = cli("training", "the allocator runs out of memory (monkeypatched)", ["train", "--max-steps", "1"], 1)
    assert "not enough memory" in shown


def test_nan_loss_keeps_the_last_good_checkpoint(cli, monkeypatch):
    """train.py stops with a FillgapError at a non-finite loss; last.pt stays the last good step."""
    from fillgap.train import losses

    Path("data").mkdir()
    for i in range(4):
        save(f"data/{i}.png", picture(40, 40, seed=i))
    Path("nan.yaml").write_text(
        "model: ffc-tiny\ndata: data\nsize: 32\nbatch_size: 2\nsamples_per_epoch: 8\nval_samples: 2\n"
        "epochs: 3\ncheckpoint_every: 1\nlog_every: 1\ngrid_samples: 1\nprogress: false\nout: run\n"
    )
    real_forward, calls, bad_step = losses.CompositeLoss.forward, [], 3

    def nan_at_step_k(self, pred, target, hole):
        calls.append(1)
        total, parts = real_forward(self, pred, target, hole)
        return (total * float("nan") if len(calls) == bad_step else total), parts

    monkeypatch.setattr(losses.CompositeLoss, "forward", nan_at_step_k)
    shown = cli(
        "training",
        f"loss becomes NaN at step {bad_step} (monkeypatched loss)",
        ["train", "--config", "nan.yaml"],
        1,
        f"run/last.pt is step {bad_step - 1}, every weight finite",
    )
    assert "loss became nan" in shown and "last.pt" in shown
    ckpt = read_checkpoint("run/last.pt")
    assert ckpt["step"] == bad_step - 1  # the last step that finished well
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


# -- 4. full disks and writers that fail or lie -------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif", ".webp"])
def test_disk_full_never_replaces_a_good_output(cli, weights, monkeypatch, suffix):
    save("pic.png", picture(64, 64))
    save("mask.png", hole(64, 64))
    assert main(["fill", "pic.png", "-m", "mask.png", "-o", f"good{suffix}", "--model", weights]) == 0
    good = Path(f"good{suffix}").read_bytes()
    _fail_midway(monkeypatch)
    shown = cli(
        "disk full",
        f"disk full while replacing a good {suffix} output (--overwrite)",
        ["fill", "pic.png", "-m", "mask.png", "-o", f"good{suffix}", "--model", weights, "--overwrite"],
        1,
        "the good output intact, no temp file",
    )
    assert "No space left on device" in shown
    assert Path(f"good{suffix}").read_bytes() == good
    assert sorted(os.listdir()) == sorted(["pic.png", "mask.png", f"good{suffix}"])


def test_a_writer_that_lies_about_its_size_is_caught(cli, weights, monkeypatch):
    """A write() that reports every byte written while only half reaches the file (a broken
    network file system): the size check after fsync refuses it."""
    save("pic.png", picture(32, 32))
    save("mask.png", hole(32, 32))
    real_write = os.write
    monkeypatch.setattr(
        fsutil, "_os_write", lambda fd, data: real_write(fd, bytes(data[: len(data) // 2])) * 0 + len(data)
    )
    shown = cli(
        "disk full",
        "write() reports success but stores half the bytes (injected)",
        ["fill", "pic.png", "-m", "mask.png", "-o", "o.jpg", "--model", weights],
        1,
        "no output, no temp file",
    )
    assert "bytes reached the disk" in shown
    assert sorted(os.listdir()) == ["mask.png", "pic.png"]


def test_every_writer_goes_through_the_checked_write(monkeypatch, tmp_path):
    """Pictures, checkpoints, weights, reports, prepared data and loss curves: each one fails whole."""
    from fillgap.train.curves import write_loss_curve
    from fillgap.data import prepare
    from fillgap.eval.report import _write_text

    tiny = create_model("ffc-tiny")
    writers = {
        "picture": lambda p: imageio.write_image(p / "a.png", picture(16, 16)),
        "copy": lambda p: imageio.copy_file(save(str(p / "src.png"), picture(8, 8)), p / "b.png"),
        "checkpoint": lambda p: save_checkpoint(p / "c.pt", tiny, step=1),
        "weights": lambda p: export_weights(p / "w.safetensors", tiny),
        "report": lambda p: _write_text(p / "r.md", "x" * 10_000),
        "prepared data": lambda p: prepare._atomic_write(p / "d.bin", b"y" * 10_000),
        "loss curve": lambda p: write_loss_curve([{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}], p / "l.png"),
    }
    for name, write in writers.items():
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        with monkeypatch.context() as m:
            _fail_midway(m)
            with pytest.raises(fsutil.WriteError, match="No space left on device") as caught:
                write(folder)
        assert caught.value.disk_full, name
        assert [p.name for p in folder.iterdir() if p.name != "src.png"] == [], name
        write(folder)  # and with a working disk it writes


def _tmpfs(path: Path, size: str) -> Path:
    """A small tmpfs at ``path`` (root only); the test skips where mounting is not allowed."""
    import subprocess

    path.mkdir()
    run = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if run.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip() or run.returncode}")
    return path


@pytest.fixture
def small_disk(tmp_path):
    disk = _tmpfs(tmp_path / "disk", "64k")
    yield Path("disk")  # relative to the test's folder (the current one): short names in the messages
    import subprocess

    subprocess.run(["umount", "-l", str(disk)], check=False)


def dot(h: int, w: int) -> np.ndarray:
    """A 2x2 hole: the fill costs next to nothing, the output is as big as the picture."""
    m = np.zeros((h, w), np.uint8)
    m[h // 2 : h // 2 + 2, w // 2 : w // 2 + 2] = 255
    return m


def test_real_full_disk_single_picture(cli, weights, small_disk):
    save("pic.png", picture(160, 160))  # about 77 kB as PNG: more than the disk holds
    save("mask.png", dot(160, 160))
    save("small.png", picture(16, 16))
    save("smallmask.png", hole(16, 16))
    target = small_disk / "o.png"
    assert main(["fill", "small.png", "-m", "smallmask.png", "-o", str(target), "--model", weights]) == 0
    good = target.read_bytes()
    for suffix in (".png", ".bmp", ".tif"):
        shown = cli(
            "disk full",
            f"64 kB tmpfs, a 160x160 {suffix} output",
            ["fill", "pic.png", "-m", "mask.png", "-o", str(small_disk / f"big{suffix}"), "--model", weights],
            1,
            "no output, no temp file",
        )
        assert "No space left on device" in shown
    shown = cli(
        "disk full",
        "64 kB tmpfs, --overwrite of a good output with a bigger one",
        ["fill", "pic.png", "-m", "mask.png", "-o", str(target), "--model", weights, "--overwrite"],
        1,
        "the good output intact",
    )
    assert target.read_bytes() == good
    assert sorted(p.name for p in small_disk.iterdir()) == ["o.png"]


def test_real_full_disk_folder_run_stops(capsys, record, weights, small_disk):
    Path("in").mkdir()
    Path("masks").mkdir()
    for i in range(12):
        save(f"in/{i:02d}.png", picture(48, 48, seed=i))  # ~7 kB each: about 8 fit
        save(f"masks/{i:02d}.png", dot(48, 48))
    out = small_disk / "out"
    capsys.readouterr()
    code = main(["fill", "in", "--mask-dir", "masks", "-o", str(out), "--model", weights, "--workers", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "Traceback" not in "\n".join(err)
    assert all(line.startswith("fillgap: failed: ") for line in err[:-1])  # printed as they happen
    assert 3 <= len(err) - 1 < 12
    shown = err[-1]
    assert shown.startswith("fillgap: error: stopped: the disk is full") and "run the same command again" in shown
    record.add(
        group="disk full",
        case="folder run onto a 64 kB tmpfs (12 pictures, room for about 8)",
        exit=code,
        shown=shown,
        checked="stops after 3 failed writes in a row (each printed as it happens); every output whole",
    )
    written = [p for p in out.iterdir() if p.suffix == ".png"]
    assert 0 < len(written) < 12
    assert all(imageio.output_is_whole(p) for p in written)
    assert not list(out.glob(fsutil.TEMP_GLOB))


def test_resume_redoes_empty_and_cut_outputs(cli, weights):
    Path("in").mkdir()
    Path("masks").mkdir()
    for i in range(4):
        save(f"in/{i}.png", picture(24, 24, seed=i))
        save(f"masks/{i}.png", hole(24, 24))
    assert main(["fill", "in", "--mask-dir", "masks", "-o", "out", "--model", weights]) == 0
    good = Path("out/2.png").read_bytes()
    Path("out/0.png").write_bytes(b"")  # a 0-byte file
    Path("out/1.png").write_bytes(good[: len(good) // 2])  # a cut PNG (no IEND)
    save("out/3.jpg", picture(24, 24))
    Path("out/3.jpg").write_bytes(Path("out/3.jpg").read_bytes()[:-200])
    shown = cli(
        "disk full",
        "rerun over a 0-byte and a cut output",
        ["fill", "in", "--mask-dir", "masks", "-o", "out", "--model", weights],
        0,
        "both redone, the good ones kept",
    )
    assert "filled 2, already there 2" in shown
    assert all(imageio.output_is_whole(Path(f"out/{i}.png")) for i in range(4))
    assert not imageio.output_is_whole(Path("out/3.jpg"))  # the check itself sees a cut JPEG


# -- 5. training runs and corrupt checkpoints ------------------------------------------------


def _run_config(path: str = "run.yaml", **extra) -> str:
    Path("data").mkdir(exist_ok=True)
    for i in range(4):
        save(f"data/{i}.png", picture(40, 40, seed=i))
    keys = dict(
        model="ffc-tiny",
        data="data",
        size=32,
        batch_size=2,
        samples_per_epoch=4,
        val_samples=2,
        epochs=2,
        checkpoint_every=100,
        log_every=1,
        grid_samples=1,
        progress="false",
        out="run",
    )
    keys.update(extra)
    Path(path).write_text("".join(f"{k}: {v}\n" for k, v in keys.items()))
    return path


def _flip_inside(path: Path, tensor: torch.Tensor, n: int = 64) -> None:
    """Flip ``n`` bytes of ``tensor``'s data where it lies in the file (found by its bytes)."""
    raw = bytearray(path.read_bytes())
    needle = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()[:256]
    at = raw.find(needle)
    assert at > 0, "tensor bytes not found in the file"
    for i in range(at + 16, at + 16 + n):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_corrupt_checkpoints_are_refused(cli, weights):
    save("pic.png", picture(16, 16))
    save("mask.png", hole(16, 16))
    assert main(["train", "--config", _run_config()]) == 0
    ckpt = read_checkpoint("run/last.pt")
    big = max(ckpt["model"].values(), key=lambda t: t.numel())
    _flip_inside(Path("run/last.pt"), big)
    shown = cli(
        "checkpoints",
        "64 flipped bytes inside a weight tensor of last.pt, --resume",
        ["train", "--config", "run.yaml", "--resume", "--epochs", "3"],
        1,
        "refused before training",
    )
    assert "is corrupt" in shown and "'model'" in shown
    shown = cli(
        "checkpoints",
        "the same last.pt given to fill",
        ["fill", "pic.png", "-m", "mask.png", "-o", "o.png", "--model", "run/last.pt"],
        1,
        "no output",
    )
    assert "is corrupt" in shown

    tiny = create_model("ffc-tiny")
    export_weights("w.safetensors", tiny)
    _flip_inside(Path("w.safetensors"), max(tiny.state_dict().values(), key=lambda t: t.numel()))
    shown = cli(
        "checkpoints",
        "64 flipped bytes inside a tensor of a .safetensors file",
        ["fill", "pic.png", "-m", "mask.png", "-o", "o.png", "--model", "w.safetensors"],
        1,
        "no output",
    )
    assert "weights file w.safetensors is corrupt" in shown
    assert not Path("o.png").exists()


def test_checkpoints_without_checksums_still_load(tmp_path):
    """Files written before the checksums (the shipped weights among them) load unchecked."""
    from safetensors.torch import save_file

    from fillgap.checkpoint import load_model

    tiny = create_model("ffc-tiny")
    torch.save({"model_name": "ffc-tiny", "model_kwargs": {}, "model": tiny.state_dict()}, tmp_path / "old.pt")
    save_file(
        {k: v.contiguous() for k, v in tiny.state_dict().items()},
        tmp_path / "old.safetensors",
        metadata={"model_name": "ffc-tiny", "model_kwargs": "{}"},
    )
    for name in ("old.pt", "old.safetensors"):
        assert load_model(tmp_path / name).registry_name == "ffc-tiny"
    assert load_model().registry_name  # the shipped default


@pytest.mark.parametrize("entry", ["optimizer", "torch_rng", "step"])
def test_resume_names_a_missing_entry(cli, entry):
    assert main(["train", "--config", _run_config()]) == 0
    ckpt = read_checkpoint("run/last.pt")
    del ckpt[entry], ckpt["checksums"]
    torch.save(ckpt, "run/last.pt")
    shown = cli(
        "checkpoints",
        f"last.pt without its '{entry}' entry, --resume",
        ["train", "--config", "run.yaml", "--resume", "--epochs", "3"],
        1,
    )
    assert f"has no '{entry}' entry" in shown


def test_training_into_an_existing_run(cli):
    assert main(["train", "--config", _run_config()]) == 0
    before = Path("run/last.pt").read_bytes()
    shown = cli(
        "training",
        "train again into a folder holding a run (no --resume, no --overwrite)",
        ["train", "--config", "run.yaml"],
        1,
        "last.pt untouched",
    )
    assert "already holds a training run" in shown and "--resume" in shown and "--overwrite" in shown
    assert Path("run/last.pt").read_bytes() == before
    cli(
        "training",
        "the same with --overwrite",
        ["train", "--config", "run.yaml", "--overwrite"],
        0,
        "starts over: one log line per step",
    )
    steps = [
        json.loads(line)["step"]
        for line in Path("run/metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    ]
    assert steps == sorted(set(steps))
    assert Path("run/loss-curve.png").exists() and list(Path("run").glob("grid-epoch*.png"))


def test_killed_run_resumes_without_duplicates_or_temp_files(cli):
    """A run killed after its checkpoint: the log lines past the checkpoint are not repeated,
    and the temp file of the cut checkpoint write is removed."""
    assert main(["train", "--config", _run_config(epochs=1)]) == 0
    at_checkpoint = Path("run/last.pt").read_bytes()
    assert main(["train", "--config", "run.yaml", "--resume", "--epochs", "3"]) == 0
    Path("run/last.pt").write_bytes(at_checkpoint)  # as if killed before the later checkpoints
    with open("run/metrics.jsonl", "a") as fh:
        fh.write('{"step": 9, "lo')  # a line cut by the kill
    Path("run/.last.pt.0badf00d.fillgap-tmp").write_bytes(b"half a checkpoint")
    cli(
        "training",
        "resume after a kill (log written past the checkpoint, a temp file left)",
        ["train", "--config", "run.yaml", "--resume", "--epochs", "3"],
        0,
        "no step logged twice; the temp file removed",
    )
    records = [json.loads(line) for line in Path("run/metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 6
    assert not list(Path("run").glob(fsutil.TEMP_GLOB))


# -- 6. folder runs: outputs that are not fillgap's, links out of -o, odd names, manifests --------


def _folder(n: int = 2, size: int = 24, sub: str = "") -> None:
    for d in ("in", "masks"):
        Path(d, sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        save(f"in/{sub}{i}.png", picture(size, size, seed=i))
        save(f"masks/{sub}{i}.png", hole(size, size))


def _folder_run(capsys, args: list) -> tuple[int, str, list[str]]:
    """A folder run through the CLI: (exit code, the summary on stdout, the lines on stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "internal error" not in err, err
    return code, out.strip().splitlines()[-1] if out.strip() else "", err.strip().splitlines()


def test_a_complete_looking_output_that_is_not_ours_is_never_replaced(capsys, record, weights):
    """A picture followed by other bytes decodes fine: it was not written by fillgap (whose writes
    are whole), so a rerun neither skips it silently nor replaces it: it fails, untouched."""
    _folder()
    Path("out").mkdir()
    save("out/0.png", picture(24, 24, seed=9))
    foreign = Path("out/0.png").read_bytes() + b"user data after the picture"
    Path("out/0.png").write_bytes(foreign)
    code, summary, err = _folder_run(capsys, ["fill", "in", "--mask-dir", "masks", "-o", "out", "--model", weights])
    assert code == 3 and "filled 1, already there 0, failed 1" in summary, (summary, err)
    assert Path("out/0.png").read_bytes() == foreign
    assert len(err) == 1 and err[0].startswith("fillgap: failed: ") and "--overwrite" in err[0], err
    record.add(
        group="files",
        case="folder run over an existing output with bytes after the picture's end",
        exit=code,
        shown=err[-1],
        checked="the existing file unchanged; the other picture filled",
    )
    code, summary, err = _folder_run(
        capsys, ["fill", "in", "--mask-dir", "masks", "-o", "out", "--model", weights, "--overwrite"]
    )
    assert code == 0 and Path("out/0.png").read_bytes() != foreign and imageio.output_is_whole(Path("out/0.png"))


def test_folder_runs_never_write_through_a_link_out_of_the_output_folder(capsys, record, weights):
    _folder(sub="sub/")
    Path("out").mkdir()
    Path("elsewhere").mkdir()
    save("elsewhere/0.png", picture(24, 24, seed=9))
    theirs = Path("elsewhere/0.png").read_bytes() + b"x"  # not whole: the old rule redid it
    Path("elsewhere/0.png").write_bytes(theirs)
    os.symlink(Path("elsewhere").resolve(), "out/sub")
    code, summary, err = _folder_run(
        capsys, ["fill", "in", "--mask-dir", "masks", "-o", "out", "--model", weights, "--overwrite"]
    )
    assert code == 3 and "filled 0, already there 0, failed 2" in summary, (summary, err)
    assert Path("elsewhere/0.png").read_bytes() == theirs
    assert sorted(p.name for p in Path("elsewhere").iterdir()) == ["0.png"]  # nothing new there either
    assert all("outside -o" in line for line in err), err
    record.add(
        group="files",
        case="folder run, --overwrite, an output subfolder that is a link out of -o",
        exit=code,
        shown=err[0],
        checked="nothing written or replaced in the linked folder",
    )


def test_file_names_that_are_not_utf8(capsys, record, weights):
    """Names are bytes on Linux: b'bad\\xff.png' reaches Python as 'bad\\udcff.png', which UTF-8
    cannot encode. The failures file and the messages show it escaped; every good picture is filled."""
    _folder(n=20, size=16)
    odd = os.fsdecode(b"odd\xfe.png")  # a good picture, odd name
    save(f"in/{odd}", picture(16, 16, seed=30))
    save(f"masks/{odd}", hole(16, 16))
    bad = os.fsdecode(b"bad\xff.png")  # fails while filling
    Path("in", bad).write_bytes(b"\x89PNG not a picture")
    save(f"masks/{bad}", hole(16, 16))
    save("in/" + os.fsdecode(b"nomask\xff.png"), picture(16, 16))  # fails while planning
    code, summary, err = _folder_run(capsys, ["fill", "in", "--mask-dir", "masks", "-o", "out", "--model", weights])
    assert code == 3 and "filled 21, already there 0, failed 2" in summary, (summary, err)
    assert imageio.output_is_whole(Path("out", odd))
    text = Path("out/fillgap-failures.csv").read_bytes().decode("utf-8")  # valid UTF-8
    assert "in/bad\\xff.png" in text and "in/nomask\\xff.png,no mask" in text, text
    assert any("in/bad\\xff.png" in line for line in err), err
    record.add(
        group="files",
        case="folder run with non-UTF-8 file names (b'bad\\xff.png'), one failing",
        exit=code,
        shown=next(line for line in err if "bad" in line),
        checked="all 21 good pictures filled; the failures file is UTF-8, the names escaped",
    )


def test_two_manifest_rows_with_one_output_are_refused_before_filling(cli, weights):
    """`a.png` and `x/../a.png` are one file: the second row would have been counted "already
    there" on a rerun (never filled), or replaced the first with --overwrite."""
    for name in ("p1", "p2"):
        save(f"{name}.png", picture(16, 16, seed=len(name)))
        save(f"m{name}.png", hole(16, 16))
    Path("list.csv").write_text("picture,mask,output\np1.png,mp1.png,a.png\np2.png,mp2.png,x/../a.png\n")
    for flags in ([], ["--overwrite"]):
        shown = cli(
            "files",
            "manifest rows whose outputs are one file (a.png, x/../a.png)" + (", --overwrite" * bool(flags)),
            ["fill", "list.csv", "-o", "out", "--model", weights, *flags],
            1,
            "nothing written",
        )
        assert "row 1" in shown and "row 2" in shown and "x/../a.png" in shown, shown
        assert not Path("out").exists()
    # Case matters (a case-sensitive file system keeps both), and distinct outputs are fine.
    Path("list.csv").write_text("picture,mask,output\np1.png,mp1.png,a.png\np2.png,mp2.png,A.png\n")
    assert main(["fill", "list.csv", "-o", "out", "--model", weights]) == 0
    assert sorted(p.name for p in Path("out").glob("*.png")) == ["A.png", "a.png"]


def test_non_finite_weights_are_refused(cli, weights):
    """NaN weights with a valid checksum (the file is as written, the training diverged) filled
    holes black, exit 0; every load now names the file and the first bad tensor."""
    from fillgap.checkpoint import export_weights

    save("pic.png", picture(16, 16))
    save("mask.png", hole(16, 16))
    tiny = create_model("ffc-tiny")
    with torch.no_grad():
        tiny.state_dict()["down.0.weight"].view(-1)[5] = float("nan")
    save_checkpoint("nan.pt", tiny, step=1)  # checksums of the NaN weights: they match
    export_weights("nan.safetensors", tiny)
    with torch.no_grad():
        tiny.state_dict()["down.0.weight"].view(-1)[5] = float("inf")
    export_weights("inf.safetensors", tiny)
    for name, bad in (("nan.pt", "NaN"), ("nan.safetensors", "NaN"), ("inf.safetensors", "infinity")):
        shown = cli(
            "checkpoints",
            f"{bad} in a weight of {name} (checksum valid)",
            ["fill", "pic.png", "-m", "mask.png", "-o", "out.png", "--model", name],
            1,
            "no output file",
        )
        assert name in shown and "non-finite" in shown and "'down.0.weight'" in shown and bad in shown, shown
        assert not Path("out.png").exists()
    with pytest.raises(FillgapError, match="non-finite"):  # --resume reads it the same way
        read_checkpoint("nan.pt")


def _grey_fill_graph(path) -> None:
    """A hand-made fillgap ONNX graph (holes filled with the mean of a 64-value weight, 0.5):
    the export cache's checks without torch's slow exporter."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from fillgap.runtime.onnx import FORMAT

    inits = [
        numpy_helper.from_array(np.full((1, 1, 1, 64), 0.5, np.float32), "fill.weight"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["fill.weight"], ["level"], keepdims=1),
        helper.make_node("Sub", ["one", "mask"], ["keep"]),
        helper.make_node("Mul", ["image", "keep"], ["kept"]),
        helper.make_node("Mul", ["mask", "level"], ["grey"]),
        helper.make_node("Add", ["kept", "grey"], ["filled"]),
    ]
    io_ = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", c, "h", "w"])
        for name, c in (("image", 3), ("mask", 1), ("filled", 3))
    ]
    graph = helper.make_graph(nodes, "grey-fill", io_[:2], io_[2:], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    for key, value in dict(
        fillgap_format=FORMAT, model_name="grey-fill", channels="3", size_multiple="4", fixed_size="0"
    ).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def test_a_damaged_cached_onnx_export_is_exported_again(capsys, record, weights, monkeypatch):
    """--runtime onnx caches its exports: 64 bytes overwritten inside a weight of the cached file
    went through (exit 0, wrong pixels); its checksum now sends it back to the exporter."""
    pytest.importorskip("onnxruntime")
    from fillgap.runtime import onnx as ro

    monkeypatch.setenv("FILLGAP_CACHE", "cache")
    exports = []

    def export(model, path, **kwargs):
        exports.append(path)
        _grey_fill_graph(path)

    monkeypatch.setattr(ro, "export_onnx", export)
    save("pic.png", picture(16, 16))
    save("mask.png", hole(16, 16))
    fill = ["fill", "pic.png", "-m", "mask.png", "--model", weights, "--runtime", "onnx", "--threads", "1", "-o"]
    assert main(fill + ["good.png"]) == 0
    (cached,) = Path("cache/onnx").glob("*.onnx")
    raw = bytearray(cached.read_bytes())
    at = raw.find(np.full(64, 0.5, np.float32).tobytes())
    assert at > 0
    raw[at + 64 : at + 128] = bytes(64)  # 16 of the 64 weights become 0
    cached.write_bytes(bytes(raw))
    code, summary, err = _folder_run(capsys, fill + ["again.png"])
    assert code == 0 and len(exports) == 2, err
    assert len(err) == 1 and "does not match its checksum" in err[0] and "exporting it again" in err[0], err
    assert read_rgb("again.png").tobytes() == read_rgb("good.png").tobytes()
    record.add(
        group="checkpoints",
        case="64 bytes overwritten inside a weight of a cached ONNX export (--runtime onnx)",
        exit=code,
        shown=err[0],
        checked="exported again (a notice on stderr); the output equals the one before the damage",
    )
