"""PNG writing speed and size by zlib level, and a 12 MP JPEG photo filled to PNG end to end.

    python bench/png_write.py [--originals DIR] [--threads 1]   # writes bench/results/png-write.{json,md}

The picture: the 12 MP crop of bench/hires.py (4000 x 3000 centre crop of the `val` photo
Dragonfly_by_Bolly, from the Debian package lomiri-wallpapers-16.04: `apt-get download
lomiri-wallpapers-16.04`, `dpkg-deb -x` into DIR/lomiri-wallpapers-16.04), saved as JPEG quality
92, with hires.py's seeded 5 % blob as the hole.

1. Encoding: the default model's fill of that picture encoded as PNG by
   ``fillgap.imageio.encode_image`` at zlib levels 6 (Pillow's default, fillgap's level before),
   3, 2, 1 (fillgap's ``PNG_COMPRESS_LEVEL`` now) and 0, and by OpenCV's ``cv2.imencode`` at
   levels 3 and 1 for comparison: median seconds of ``--repeats`` runs, and megabytes.
2. End to end: ``fillgap fill big.jpg -m mask.png -o out.png`` as a fresh process (wall time,
   median of ``--repeats``), and the same steps timed one by one in a fresh process (imports,
   JPEG decode, mask read and checks, model load, fill, PNG encode, atomic write) at fillgap's
   level and at level 6.

Every run uses ``--threads`` torch threads (default 1: ``FILLGAP_THREADS`` and ``OMP_NUM_THREADS``);
the load average is recorded before and after (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from _common import load_average, machine, save_json, save_text
from hires import BIG_PHOTO, blob_mask, fit

ROOT = Path(__file__).resolve().parent.parent
LEVELS = (6, 3, 2, 1, 0)


def find_original(given: str | None) -> Path:
    for folder in [given] if given else [os.environ.get("FILLGAP_ORIGINALS"), "/tmp/dscan/x"]:
        if folder and (Path(folder) / BIG_PHOTO[1]).exists():
            return Path(folder) / BIG_PHOTO[1]
    sys.exit(
        "bench/png_write.py: Dragonfly_by_Bolly.jpg not found: apt-get download lomiri-wallpapers-16.04, "
        "dpkg-deb -x it into DIR/lomiri-wallpapers-16.04 and pass --originals DIR"
    )


def child_steps(image: str, mask: str, out: str, level: str) -> None:
    """The steps of ``fillgap fill`` (``fillgap.files.fill_file``) one by one, from a fresh process."""
    t0 = time.perf_counter()
    from fillgap.cli import main  # noqa: F401 - the CLI's own import cost

    t_cli = time.perf_counter()
    import torch  # noqa: F401

    from fillgap.files import load_mask_for
    from fillgap.fill import inpaint
    from fillgap.fsutil import atomic_write
    from fillgap.imageio import check_output, encode_image, read_picture
    from fillgap.methods import get_method
    from fillgap.runtime.threads import set_threads

    set_threads(None)
    steps = {"import fillgap + CLI": t_cli - t0, "import torch + fill": time.perf_counter() - t_cli}

    def step(name, fn):
        t = time.perf_counter()
        value = fn()
        steps[name] = time.perf_counter() - t
        return value

    picture = step("JPEG decode", lambda: read_picture(image))
    hole = step("mask read + checks", lambda: load_mask_for(picture.rgb.shape[:2], Path(mask)))
    method = step("model load", lambda: get_method("fillgap-network"))
    result = step("fill", lambda: inpaint(picture.rgb, hole, method))
    data = step(
        "PNG encode",
        lambda: encode_image(
            result, picture.alpha, "PNG", picture.metadata, picture.grey, png_compress_level=int(level)
        ),
    )
    step("write", lambda: atomic_write(check_output(out, overwrite=True), data, overwrite=True))
    print(
        json.dumps(
            {"level": int(level), "steps": steps, "total_s": time.perf_counter() - t0, "png_mb": len(data) / 1e6}
        )
    )


def child_encode(image: str, mask: str, repeats: str) -> None:
    """PNG seconds and sizes of the shipped network's fill at each level (Pillow) and OpenCV's."""
    import cv2

    from fillgap.fill import inpaint
    from fillgap.imageio import encode_image, read_image, read_mask
    from fillgap.runtime.threads import set_threads

    set_threads(None)
    filled = inpaint(read_image(image), read_mask(mask), "fillgap-network")

    def median_s(fn):
        times = []
        for _ in range(int(repeats)):
            t = time.perf_counter()
            data = fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times), len(data) / 1e6

    rows = []
    for level in LEVELS:
        s, mb = median_s(lambda: encode_image(filled, None, "PNG", png_compress_level=level))
        rows.append({"encoder": "Pillow (fillgap)", "level": level, "seconds": s, "mb": mb})
    bgr = np.ascontiguousarray(filled[..., ::-1])
    for level in (3, 1):
        s, mb = median_s(lambda: cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, level])[1])
        rows.append({"encoder": "OpenCV", "level": level, "seconds": s, "mb": mb})
    print(json.dumps(rows))


def run_child(args: list[str], env: dict) -> object:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--originals", help="folder holding lomiri-wallpapers-16.04/usr/share/backgrounds/...")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from fillgap.imageio import PNG_COMPRESS_LEVEL

    env = dict(
        os.environ,
        FILLGAP_THREADS=str(args.threads),
        OMP_NUM_THREADS=str(args.threads),
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        big = fit(np.asarray(Image.open(find_original(args.originals)).convert("RGB")), 4000, 3000)
        Image.fromarray(big).save(tmp / "big.jpg", quality=92)
        Image.fromarray(blob_mask(np.random.default_rng(7), 3000, 4000, 0.05)).save(tmp / "mask.png")
        image, mask, out = str(tmp / "big.jpg"), str(tmp / "mask.png"), str(tmp / "out.png")
        hole = float((np.asarray(Image.open(mask)) > 0).mean())
        encode = run_child(["--encode", image, mask, str(args.repeats)], env)
        cli = []
        for _ in range(args.repeats):
            Path(out).unlink(missing_ok=True)
            t = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "fillgap", "fill", image, "-m", mask, "-o", out],
                env=env,
                check=True,
                capture_output=True,
            )
            cli.append(time.perf_counter() - t)
        steps = {level: run_child(["--steps", image, mask, out, str(level)], env) for level in (PNG_COMPRESS_LEVEL, 6)}
        jpeg_mb = Path(image).stat().st_size / 1e6
    load_after = load_average()

    base = next(r for r in encode if r["encoder"].startswith("Pillow") and r["level"] == 6)
    lines = [
        "# PNG writing (bench/png_write.py)",
        "",
        f"A 12 MP photo (4000x3000, JPEG {jpeg_mb:.1f} MB) with a {hole * 100:.1f} % blob, filled by the "
        f"default model; {args.threads} torch thread(s); median of {args.repeats}; load average before "
        f"{load_before}, after {load_after}. fillgap's PNG level: {PNG_COMPRESS_LEVEL}.",
        "",
        "| encoder | zlib level | s | MB | speed vs level 6 | size vs level 6 |",
        "|---|---|---|---|---|---|",
    ]
    for r in encode:
        lines.append(
            f"| {r['encoder']} | {r['level']} | {r['seconds']:.2f} | {r['mb']:.1f} | "
            f"{base['seconds'] / r['seconds']:.1f}x | {r['mb'] / base['mb']:.2f}x |"
        )
    lines += [
        "",
        f"`fillgap fill big.jpg -m mask.png -o out.png` (fresh process, wall): "
        f"{statistics.median(cli):.2f} s (runs: {', '.join(f'{s:.2f}' for s in cli)}).",
        "",
        "The same steps one by one (fresh process, s):",
        "",
        "| step | " + " | ".join(f"level {lv}" for lv in steps) + " |",
        "|---|" + "---|" * len(steps),
    ]
    for name in next(iter(steps.values()))["steps"]:
        lines.append(f"| {name} | " + " | ".join(f"{s['steps'][name]:.2f}" for s in steps.values()) + " |")
    lines.append("| total | " + " | ".join(f"{s['total_s']:.2f}" for s in steps.values()) + " |")
    lines.append("| PNG MB | " + " | ".join(f"{s['png_mb']:.1f}" for s in steps.values()) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    save_text("png-write.md", text)
    save_json(
        "png-write.json",
        {
            "encode": encode,
            "cli_s": cli,
            "steps": {str(k): v for k, v in steps.items()},
            "hole": hole,
            "jpeg_mb": jpeg_mb,
            "threads": args.threads,
            "load_before": load_before,
            "load_after": load_after,
            "machine": machine(torch_threads=args.threads),
        },
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--steps"]:
        child_steps(*sys.argv[2:6])
    elif sys.argv[1:2] == ["--encode"]:
        child_encode(*sys.argv[2:5])
    else:
        main()
