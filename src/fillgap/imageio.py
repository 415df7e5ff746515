"""Reading and writing pictures and masks.

The image convention of fillgap, stated once:
- inside: RGB float32 in [0, 1], tensors N x C x H x W (masks N x 1 x H x W, 1 = hole);
- only here, at the file boundary: uint8 H x W x C arrays.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import FillgapError
from .fsutil import atomic_write


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
# The decoders fillgap lets Pillow use; others (EPS hands the bytes to Ghostscript, and a dozen
# rarely used formats) are refused as "not an image". (The JPEG opener also reads MPO, the JPEG
# flavour many cameras write.)
DECODERS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")
# Decompression-bomb guard: refuse pictures above this many pixels (about 12k x 8k).
MAX_PIXELS = 100_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageTooLargeError(FillgapError):
    """A picture above a pixel limit (the web server answers 413 to it, not 422)."""


def _reason(exc: BaseException) -> str:
    """An exception as a short phrase for a one-line message."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[0][:120] if text and text[0] else type(exc).__name__


def _too_large(
    label: object, max_pixels: int, width: int | None = None, height: int | None = None, detail: str = ""
) -> ImageTooLargeError:
    if width is None:  # Pillow's own guard fired: its message holds the pixel count
        found = re.search(r"\((\d+) pixels\)", detail)
        size = f"has {int(found.group(1)):,} pixels" if found else "has too many pixels"
    else:
        size = f"is {width}x{height}"
    return ImageTooLargeError(f"image too large: {label} {size}, the limit is {max_pixels:,} pixels")


def _decode(source, label: object, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode a path or binary file object; ``label`` names it in errors.

    Every failure of a decoder on hostile or damaged bytes (Pillow raises OSError,
    SyntaxError, EOFError, struct.error, ValueError, ... depending on the format) becomes
    one FillgapError; pictures above ``max_pixels`` raise ImageTooLargeError before a
    single pixel is decoded.
    """
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    try:
        # Pillow's own bomb guard (MAX_IMAGE_PIXELS) warns, then raises, inside Image.open:
        # make the warning an error too, so neither escapes as a warning or a traceback.
        # Decoders also warn about damaged metadata ("Corrupt EXIF data"...) while the pixels
        # are fine: silenced, the CLI's output stays one line.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=DECODERS) as img:
                # The header gives the size before any pixel is decoded: refuse bombs cheaply.
                if img.width * img.height > max_pixels:
                    raise _too_large(label, max_pixels, img.width, img.height)
                nbytes = _claims_more_than_it_holds(img, source)
                if nbytes:
                    raise FillgapError(
                        f"corrupt or truncated image: {label} (its header claims {img.width}x"
                        f"{img.height} pixels, more than {nbytes:,} bytes of {img.format} can hold)"
                    )
                img.load()
                return _canonical(_upright(img))
    except FillgapError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_large(label, max_pixels, detail=str(exc)) from None
    except UnidentifiedImageError:
        raise FillgapError(f"not an image (unknown or damaged format): {label}") from None
    except MemoryError:
        raise FillgapError(f"not enough memory to decode {label}") from None
    except Exception as exc:  # noqa: BLE001 - see the docstring
        raise FillgapError(f"corrupt or truncated image: {label} ({_reason(exc)})") from None


# The most pixels one byte of a complete file can hold, with a wide margin: deflate (PNG)
# packs at most 1032 bytes into one, i.e. 8,256 one-bit pixels; a Huffman-coded JPEG spends
# at least one bit per 8x8 block, i.e. 512 pixels per byte.
_PIXELS_PER_BYTE = {"PNG": 20_000, "JPEG": 2_000}


def _claims_more_than_it_holds(img: Image.Image, source) -> int:
    """The file's size when its header claims more pixels than its bytes could hold, else 0.

    A truncated or forged header (a few hundred bytes claiming 30 megapixels) would make the
    decoder allocate the full size and fill it with grey (Pillow accepts some such JPEGs):
    refused before decoding instead.
    """
    ratio = _PIXELS_PER_BYTE.get(img.format or "")
    if ratio is None:
        return 0
    if isinstance(source, (str, os.PathLike)):
        nbytes = os.stat(source).st_size
    elif hasattr(source, "getbuffer"):
        nbytes = source.getbuffer().nbytes
    else:
        return 0
    if img.width * img.height <= nbytes * ratio:
        return 0
    if img.format == "JPEG":  # at most 50 kB here: read it whole to see how it is coded
        data = Path(source).read_bytes() if isinstance(source, (str, os.PathLike)) else bytes(source.getbuffer())
        if not _huffman_jpeg(data):
            return 0  # arithmetic coding can beat one bit per block
    return nbytes


def _huffman_jpeg(data: bytes) -> bool:
    """True if the JPEG's frame header (SOF) is one of the Huffman-coded DCT kinds."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xC0, 0xC1, 0xC2):
            return True
        if (0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xDA:
            return False  # lossless, arithmetic-coded, or the scan began before any frame header
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return False


def _upright(img: Image.Image) -> Image.Image:
    """A decoded copy in the orientation the user sees, not the one the sensor stored."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - damaged EXIF: the orientation is unknown, keep the pixels as stored
        return img.copy()


def _open(path: str | os.PathLike) -> Image.Image:
    path = Path(path)
    if not path.exists():
        raise FillgapError(f"file not found: {path}")
    if path.is_dir():
        raise FillgapError(f"expected a file, got a folder: {path}")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise FillgapError(f"not a regular file: {path}")
    if path.stat().st_size == 0:
        raise FillgapError(f"empty file (0 bytes): {path}")
    return _decode(path, path)


def _open_bytes(data: bytes, name: str, max_pixels: int) -> Image.Image:
    if not data:
        raise FillgapError(f"empty file (0 bytes): {name}")
    return _decode(io.BytesIO(data), name, min(max_pixels, MAX_PIXELS))


def _canonical(img: Image.Image) -> Image.Image:
    """The picture in one of four modes: L, LA, RGB or RGBA (8 bits per channel).

    16-bit and float greyscale are scaled, not clipped; palette, CMYK, YCbCr, LAB, HSV,
    premultiplied alpha and colour-key transparency are converted by Pillow.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max(initial=0.0))
        if img.mode.startswith("I;16"):
            scale = 255.0 / 65535.0
        elif img.mode == "F" and top <= 1.0:  # float data is usually 0-1
            scale = 255.0
        else:  # 32-bit int (or float) holding 8- or 16-bit data
            scale = 255.0 / 65535.0 if top > 255 else 1.0
        grey = Image.fromarray(np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8), "L")
        grey.info = dict(img.info)  # the colour profile and EXIF stay with the picture (picture_metadata)
        return grey
    if img.mode in ("L", "LA", "RGB", "RGBA"):
        return img
    if img.mode == "La":  # premultiplied grey + alpha
        return img.convert("LA")
    if img.has_transparency_data:
        return img.convert("RGBA")
    return img.convert("RGB")


def _to_rgb_uint8(img: Image.Image) -> np.ndarray:
    # np.array copies: the caller gets a writable array (torch warns on read-only ones);
    # no convert() for RGB, one full-size copy fewer on a big photo.
    return np.array(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read any picture as RGB uint8 H x W x 3 (alpha, if any, is dropped: see read_image_rgba)."""
    return _to_rgb_uint8(_open(path))


def read_image_rgba(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a picture as RGB uint8 plus its alpha channel (H x W uint8) when it has one."""
    return _split_alpha(_open(path))


class Picture(NamedTuple):
    rgb: np.ndarray  # uint8 H x W x 3, upright
    alpha: np.ndarray | None  # uint8 H x W, when the file has transparency
    metadata: dict[str, bytes]  # what ``write_image`` carries over (see ``picture_metadata``)
    grey: bool  # a greyscale file: its filled copy is written greyscale too


def _picture(img: Image.Image) -> Picture:
    return Picture(*_split_alpha(img), picture_metadata(img), img.mode in ("L", "LA"))


def read_picture(path: str | os.PathLike) -> Picture:
    """Read a picture to be filled and written back: pixels, alpha and the metadata worth keeping."""
    return _picture(_open(path))


# EXIF carried into a filled copy: who and what made the photo, when and where (the Exif and GPS
# sub-directories), rebuilt tag by tag, so that none of the original's thumbnail (IFD1: a preview
# that still shows what was removed), orientation, maker notes (offsets into the old file) or a
# TIFF's own structure tags comes along, and the block is well formed for every output format.
EXIF_TAGS = (
    0x010E,
    0x010F,
    0x0110,
    0x0131,
    0x0132,
    0x013B,
    0x8298,
)  # description, make, model, software, date, artist, copyright
EXIF_SUB_IFDS = (0x8769, 0x8825)  # Exif, GPS
EXIF_DROP = (0x927C, 0xA005)  # maker note, interoperability pointer
EXIF_MAX_BYTES = 60_000  # a JPEG segment holds 64 KB


def _kept_exif(img: Image.Image) -> bytes | None:
    try:
        exif = img.getexif()
        kept = Image.Exif()
        for tag in EXIF_TAGS:
            if tag in exif:
                kept[tag] = exif[tag]
        for ifd in EXIF_SUB_IFDS:
            entries = {k: v for k, v in exif.get_ifd(ifd).items() if k not in EXIF_DROP and not isinstance(v, dict)}
            if entries:
                kept.get_ifd(ifd).update(entries)
        if not len(kept) and not any(kept.get_ifd(ifd) for ifd in EXIF_SUB_IFDS):
            return None
        data = kept.tobytes()
    except Exception:  # noqa: BLE001 - damaged EXIF: the fill goes on without it
        return None
    return data if len(data) <= EXIF_MAX_BYTES else None


def picture_metadata(img: Image.Image) -> dict[str, bytes]:
    """The colour profile (ICC) and EXIF of a decoded picture, to be written into its filled copy:
    without the profile, a wide-gamut photo (Adobe RGB, Display P3) is shown in the wrong colours.
    The EXIF is rebuilt from the tags worth keeping (``EXIF_TAGS``; no thumbnail, no orientation:
    the pixels were turned upright on reading). ``encode_image`` writes the profile only where its
    colour space (RGB or grey) is the output's."""
    out = {}
    icc = img.info.get("icc_profile")
    if isinstance(icc, bytes) and icc[16:20] in (b"RGB ", b"GRAY"):  # the header's colour-space field
        out["icc_profile"] = icc
    exif = _kept_exif(img)
    if exif:
        out["exif"] = exif
    return out


def _split_alpha(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    alpha = np.array(img.getchannel("A"), dtype=np.uint8) if img.mode in ("LA", "RGBA") else None
    return _to_rgb_uint8(img), alpha


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask of any mode as float32 H x W in [0, 1]: white = hole, grey = partial.

    A mask with an alpha channel counts a transparent pixel as "keep".
    """
    return _mask_from(_open(path))


def _mask_from(img: Image.Image) -> np.ndarray:
    if img.mode in ("RGBA", "LA"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        grey = rgba[..., :3].mean(axis=2) * rgba[..., 3]
        return grey.astype(np.float32)
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def read_image_bytes(
    data: bytes,
    name: str = "upload",
    max_pixels: int = MAX_PIXELS,
) -> tuple[np.ndarray, np.ndarray | None]:
    """An uploaded picture (file contents) as RGB uint8 plus its alpha, like ``read_image_rgba``.

    Same checks and one-line errors as reading a file; pictures above ``max_pixels`` raise
    ``ImageTooLargeError`` before their pixels are decoded.
    """
    return _split_alpha(_open_bytes(data, name, max_pixels))


def read_picture_bytes(data: bytes, name: str = "upload", max_pixels: int = MAX_PIXELS) -> Picture:
    """``read_picture`` of file contents (same checks as ``read_image_bytes``)."""
    return _picture(_open_bytes(data, name, max_pixels))


def read_mask_bytes(data: bytes, name: str = "mask", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An uploaded mask (file contents) as float32 H x W in [0, 1], like ``read_mask``."""
    return _mask_from(_open_bytes(data, name, max_pixels))


# zlib level of every PNG fillgap writes. 1 rather than Pillow's default 6: on a 12 MP photo about
# 5x faster to encode (0.7 s instead of 3.3 s, the slowest step of a fill) for a file about a fifth
# larger (bench/png_write.py); a person waits for each fill, disk space is cheap.
PNG_COMPRESS_LEVEL = 1


def encode_png(
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    compress_level: int = PNG_COMPRESS_LEVEL,
    metadata: dict[str, bytes] | None = None,
    grey: bool = False,
) -> bytes:
    """uint8 H x W x 3 (plus optional H x W alpha) as PNG file contents, in memory (see ``encode_image``)."""
    return bytes(encode_image(rgb, alpha, "PNG", metadata, grey, png_compress_level=compress_level))


OUTPUT_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


def check_output(
    path: str | os.PathLike, overwrite: bool = False, alpha: bool = False, inputs: tuple[str | os.PathLike, ...] = ()
) -> Path:
    """Refuse an output that cannot or must not be written, before any work is spent on it.

    ``inputs``: files the output must not be (also through a link); ``alpha``: the picture
    has transparency, which a JPEG cannot hold.
    """
    path = Path(path)
    if path.is_dir():
        raise FillgapError(f"output is a folder: {path} (give a file name)")
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise FillgapError(f"unknown output format '{path.suffix}' for {path} (use .png, .jpg, .webp, .bmp, .tif)")
    for src in inputs:
        if path.exists() and Path(src).exists() and os.path.samefile(path, src):
            raise FillgapError(f"output {path} is an input file: choose another output path")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise FillgapError(f"output exists: {path} (pass --overwrite to replace it)")
    if alpha and fmt == "JPEG":
        raise FillgapError(f"the input has transparency, which JPEG cannot store: write {path.with_suffix('.png')}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise FillgapError(f"cannot write {path}: {parent} is a file, not a folder")
    return path


# Formats whose files hold a colour profile and EXIF (Pillow writes both for these)
METADATA_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF")
GREY_FORMATS = {"PNG": True, "TIFF": True, "JPEG": False, "BMP": False}  # grey they store: True = with alpha too


def encode_image(
    rgb: np.ndarray,
    alpha: np.ndarray | None,
    fmt: str,
    metadata: dict[str, bytes] | None = None,
    grey: bool = False,
    png_compress_level: int = PNG_COMPRESS_LEVEL,
) -> bytes:
    """uint8 H x W x 3 (plus optional H x W alpha) as the contents of a ``fmt`` file, in memory,
    with ``metadata`` (``picture_metadata``) where the format holds it. ``grey``: one channel, the
    mean of the three (a greyscale picture's fill comes back without a colour tint), where the
    format stores grey (WebP does not; BMP and JPEG not with alpha)."""
    grey = grey and fmt in GREY_FORMATS and (alpha is None or GREY_FORMATS[fmt])
    if grey:
        img = Image.fromarray(rgb.mean(axis=2, dtype=np.float32).round().astype(np.uint8), "L")
    else:
        img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    if alpha is not None:
        img.putalpha(Image.fromarray(np.ascontiguousarray(alpha, dtype=np.uint8), "L"))
    options = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}, "PNG": {"compress_level": png_compress_level}}.get(
        fmt, {}
    )
    if metadata and fmt in METADATA_FORMATS:
        options.update(metadata)
        icc = metadata.get("icc_profile")
        if icc is not None and icc[16:20] != (b"GRAY" if grey else b"RGB "):  # a profile must fit the pixels
            del options["icc_profile"]
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getbuffer()


def write_image(
    path: str | os.PathLike,
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    overwrite: bool = False,
    metadata: dict[str, bytes] | None = None,
    grey: bool = False,
) -> Path:
    """Write uint8 H x W x 3 (plus an optional H x W alpha, ``metadata``: see ``picture_metadata``,
    and ``grey``: see ``encode_image``) atomically.

    The file is encoded in memory first, then written whole or not at all
    (``fillgap.fsutil.atomic_write``): a full disk is an error, never a cut picture, and an
    existing file is only replaced when ``overwrite`` is set.
    """
    path = check_output(path, overwrite, alpha=alpha is not None)
    return atomic_write(path, encode_image(rgb, alpha, OUTPUT_FORMATS[path.suffix.lower()], metadata, grey), overwrite)


def copy_file(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False) -> Path:
    """Copy a file byte for byte, atomically, with the same refusals as ``write_image``."""
    src, dst = Path(src), check_output(dst, overwrite, inputs=(src,))
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise FillgapError(f"cannot read {src}: {_reason(exc)}") from None
    return atomic_write(dst, data, overwrite)


# How each output format starts: a file that starts so and does not decode is a cut write.
_SIGNATURES = (b"\x89PNG", b"\xff\xd8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


def output_state(path: str | os.PathLike) -> tuple[str, str]:
    """What a folder run finds at one of its outputs, as (state, why):

    - ``missing``: nothing there;
    - ``whole``: a complete picture that ends where its data ends: a rerun skips it as done;
    - ``cut``: 0 bytes, or a picture file that does not decode (a write cut short by a crash or a
      full disk, by another tool or an older fillgap): a rerun redoes it;
    - ``foreign``: anything else (a complete picture followed by other bytes, a file that is not
      a picture, a link, a folder). fillgap writes whole files only, so this is not one of its
      outputs: never replaced without ``--overwrite``; ``why`` says what it is.

    Cheap for the common formats (a resumed run checks thousands of outputs): a JPEG that ends
    with its end-of-image marker and a PNG that ends with its IEND chunk are whole; other files
    are decoded.
    """
    path = Path(path)
    if path.is_symlink():
        return "foreign", "a link"  # fillgap writes files, never links
    try:
        size = path.stat().st_size
        if path.is_dir():
            return "foreign", "a folder"
        if size == 0:
            return "cut", "empty"
        with open(path, "rb") as fh:
            head = fh.read(8)
            fh.seek(max(0, size - 12))
            tail = fh.read()
    except FileNotFoundError:
        return "missing", ""
    except OSError as exc:
        return "foreign", f"unreadable: {_reason(exc)}"
    png, jpeg = head.startswith(b"\x89PNG"), head.startswith(b"\xff\xd8")
    if png and tail[4:8] == b"IEND":
        return "whole", ""
    if jpeg and tail.rstrip(b"\x00").endswith(b"\xff\xd9"):  # some writers pad after EOI
        return "whole", ""
    try:
        _decode(path, path)
    except FillgapError:
        if head.startswith(_SIGNATURES):
            return "cut", "a picture that does not decode"
        return "foreign", "not a picture"
    if png or jpeg:  # decodes, yet does not end where the picture ends
        return "foreign", "a picture followed by other bytes"
    return "whole", ""


def output_is_whole(path: str | os.PathLike) -> bool:
    """True if ``path`` holds a complete picture (see ``output_state``)."""
    return output_state(path)[0] == "whole"


def list_images(folder: str | os.PathLike) -> list[Path]:
    """All pictures under a folder, recursively, sorted (hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FillgapError(f"not a folder: {folder}")
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )
