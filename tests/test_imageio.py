"""Reading and writing pictures: colour profiles, EXIF, grey and 16-bit pictures, PNG settings."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fillgap.models import create_model

from _pictures import picture


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_a_fill_keeps_the_photos_colour_profile_and_exif(tmp_path, suffix):
    """A photographer's file comes back with its ICC profile (a wide-gamut photo shown without it
    has the wrong colours) and its EXIF, less the orientation tag: the pixels are upright now."""
    from PIL import ImageCms
    from fillgap.files import fill_file

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "Canon"  # make
    exif[0x0112] = 6  # orientation: shown turned by 90 degrees
    Image.fromarray(picture(48, 64)).save(tmp_path / "in.jpg", icc_profile=icc, exif=exif.tobytes(), quality=95)
    mask = np.zeros((64, 48), np.uint8)  # the upright picture's size
    mask[20:30, 10:20] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    fill_file(tmp_path / "in.jpg", tmp_path / "m.png", tmp_path / f"out{suffix}", "mean-fill")
    out = Image.open(tmp_path / f"out{suffix}")
    assert out.size == (48, 64)
    assert out.info.get("icc_profile") == icc
    assert out.getexif().get(0x010F) == "Canon" and out.getexif().get(0x0112, 1) == 1


def test_a_greyscale_photo_comes_back_greyscale_with_its_profile(tmp_path):
    """A scanned black-and-white photo: the output is one channel (no colour tint in the hole, where
    the network's three channels differ a little), known pixels identical, its grey profile kept;
    a profile of another colour space than the output's is dropped."""
    from PIL import ImageCms
    from fillgap.files import fill_file

    grey_icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    grey_icc[16:20] = b"GRAY"  # the header's colour-space field: a grey picture's profile
    grey = picture(40, 50)[..., 0]
    Image.fromarray(grey, "L").save(tmp_path / "in.png", icc_profile=bytes(grey_icc))
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 10:20] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    tiny = create_model("ffc-tiny", refine=False)  # random: its three output channels differ
    fill_file(tmp_path / "in.png", tmp_path / "m.png", tmp_path / "out.png", tiny)
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "L" and out.info.get("icc_profile") == bytes(grey_icc)
    assert np.array_equal(np.asarray(out)[mask == 0], grey[mask == 0])
    cmyk_icc = bytearray(grey_icc)
    cmyk_icc[16:20] = b"CMYK"
    Image.fromarray(picture(40, 50)).save(tmp_path / "rgb.png", icc_profile=bytes(cmyk_icc))
    fill_file(tmp_path / "rgb.png", tmp_path / "m.png", tmp_path / "out-rgb.png", "mean-fill")
    assert "icc_profile" not in Image.open(tmp_path / "out-rgb.png").info


def test_the_folder_engine_keeps_the_colour_profile_too(tmp_path):
    from PIL import ImageCms
    from fillgap.engines.local import fill_folder

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(picture(40, 50)).save(tmp_path / "in" / "a.jpg", icc_profile=icc)
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 10:20] = 255
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    assert not fill_folder(tmp_path / "in", tmp_path / "masks", tmp_path / "out", "mean-fill").failed
    assert Image.open(tmp_path / "out" / "a.png").info.get("icc_profile") == icc


def test_metadata_is_rebuilt_for_every_output_format(tmp_path):
    """The review's cases: EXIF read from a WebP (stored without its header) comes out readable in a
    JPEG; only the kept tags travel (no maker note, no orientation, no other IFD0 tags, so no
    thumbnail of the unfilled picture either); an oversized EXIF is left out instead of failing the
    JPEG writer; a greyscale picture with alpha becomes an RGBA BMP and an RGB WebP without its
    grey profile."""
    from PIL import ImageCms
    from fillgap.files import fill_file

    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 10:20] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    exif = Image.Exif()
    exif[0x010F] = "CamMake"
    exif[0x0213] = 1  # YCbCrPositioning: not kept
    exif[0x0112] = 1
    exif.get_ifd(0x8769)[0x9003] = "2020:01:01 10:00:00"
    exif.get_ifd(0x8769)[0x927C] = b"maker" * 10
    Image.fromarray(picture(40, 50)).save(tmp_path / "in.webp", exif=exif.tobytes())
    fill_file(tmp_path / "in.webp", tmp_path / "m.png", tmp_path / "out.jpg", "mean-fill")
    got = Image.open(tmp_path / "out.jpg").getexif()
    assert got.get(0x010F) == "CamMake" and 0x0213 not in got and 0x0112 not in got
    assert dict(got.get_ifd(0x8769)) == {0x9003: "2020:01:01 10:00:00"}

    big = Image.Exif()
    big[0x010E] = "x" * 70_000  # an ImageDescription larger than a JPEG segment
    Image.fromarray(picture(40, 50)).save(tmp_path / "big.png", exif=big.tobytes())
    fill_file(tmp_path / "big.png", tmp_path / "m.png", tmp_path / "big.jpg", "mean-fill")
    assert 0x010E not in Image.open(tmp_path / "big.jpg").getexif()

    grey_icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    grey_icc[16:20] = b"GRAY"
    la = Image.fromarray(picture(40, 50)[..., 0], "L")
    la.putalpha(200)
    la.save(tmp_path / "la.png", icc_profile=bytes(grey_icc))
    fill_file(tmp_path / "la.png", tmp_path / "m.png", tmp_path / "la.bmp", "mean-fill")
    assert Image.open(tmp_path / "la.bmp").mode in ("RGB", "RGBA")  # written (it raised on LA before)
    fill_file(tmp_path / "la.png", tmp_path / "m.png", tmp_path / "la.webp", "mean-fill")
    webp = Image.open(tmp_path / "la.webp")
    assert webp.mode == "RGBA" and "icc_profile" not in webp.info
    fill_file(tmp_path / "la.png", tmp_path / "m.png", tmp_path / "la-out.png", "mean-fill")
    png = Image.open(tmp_path / "la-out.png")
    assert png.mode == "LA" and png.info.get("icc_profile") == bytes(grey_icc)


def test_a_16_bit_picture_keeps_its_profile(tmp_path):
    from PIL import ImageCms
    from fillgap.files import fill_file

    grey_icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    grey_icc[16:20] = b"GRAY"
    Image.fromarray((picture(40, 50)[..., 0].astype(np.uint16) * 257)).save(
        tmp_path / "in16.png", icc_profile=bytes(grey_icc)
    )
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 10:20] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    fill_file(tmp_path / "in16.png", tmp_path / "m.png", tmp_path / "out.png", "mean-fill")
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "L" and out.info.get("icc_profile") == bytes(grey_icc)


def test_pngs_are_written_with_fast_compression_and_exact_pixels(tmp_path):
    """PNG encoding was the slowest step of a 12 MP fill at zlib's default level (bench/png_write.py):
    fillgap writes with the fastest level (the zlib header says so), pixels unchanged."""
    import struct

    from fillgap.imageio import encode_png, read_image, write_image

    rgb = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    rgb[:, :40] = 7  # some redundancy for zlib to find
    for data in (write_image(tmp_path / "a.png", rgb).read_bytes(), encode_png(rgb)):
        pos = 8
        while data[pos + 4 : pos + 8] != b"IDAT":
            pos += 12 + struct.unpack(">I", data[pos : pos + 4])[0]
        cmf, flg = data[pos + 8], data[pos + 9]
        assert cmf & 0x0F == 8 and (cmf * 256 + flg) % 31 == 0  # a zlib stream
        assert flg >> 6 == 0, f"zlib level class {flg >> 6} (0: fastest)"
    assert np.array_equal(read_image(tmp_path / "a.png"), rgb)
