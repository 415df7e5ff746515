"""Lower precision for the network: speed against hole-PSNR cost.

    python bench/precision.py [--model runs/x/last.pt]   # writes bench/results/precision.{json,md}

Variants of one trained FFC model, each through the real fill path (``fillgap.inpaint``):
- torch fp32 (reference), torch bf16 (``--runtime torch-bf16``: ``torch.autocast``; the Fourier units stay fp32);
- onnx fp32 (``--runtime onnx``), onnx int8 (onnxruntime's dynamic quantisation of the
  exported graph: int8 weights, activations quantised per call).
Quality: hole PSNR against the original pictures on the bundled test photos (256x256 centre
crops, thin/medium/thick/box masks), and the variant's PSNR against the fp32 fill (how far
the numbers moved). Speed: median seconds per 512x512 fill (thick strokes), same process,
``--threads`` threads, load recorded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from fillgap.checkpoint import DEFAULT_WEIGHTS
from fillgap.data import bundled_photos
from fillgap.fill import inpaint
from fillgap.masks import MaskGenerator
from fillgap.methods import get_method, native_bf16
from fillgap.runtime.threads import set_threads

RESULTS = Path(__file__).with_name("results")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def int8(onnx_method, out_dir: Path):
    """onnxruntime dynamic quantisation of the exported graph (fillgap's metadata carried over)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from fillgap.runtime.onnx import OnnxNetwork

    src = onnx_method.path
    dst = out_dir / f"{src.stem}-int8.onnx"
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    proto = onnx.load(str(dst))
    have = {p.key for p in proto.metadata_props}
    for p in onnx.load(str(src), load_external_data=False).metadata_props:
        if p.key not in have:
            proto.metadata_props.add(key=p.key, value=p.value)
    onnx.save(proto, str(dst))
    return OnnxNetwork(dst, name=f"{onnx_method.name} int8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", default=str(DEFAULT_WEIGHTS), help="A trained FFC checkpoint (default: the shipped one)."
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS / "precision")
    args = ap.parse_args()
    threads = set_threads(args.threads)
    load_before = Path("/proc/loadavg").read_text().strip()
    work = Path(tempfile.mkdtemp(prefix="fillgap-precision-"))
    fp32 = get_method(args.model, runtime="torch")
    onnx32 = get_method(args.model, runtime="onnx")
    variants = {
        "torch fp32": fp32,
        "torch bf16 (--runtime torch-bf16)": get_method(args.model, runtime="torch-bf16"),
        "onnx fp32": onnx32,
    }
    try:
        variants["onnx int8 (dynamic)"] = int8(onnx32, work)
    except Exception as exc:  # noqa: BLE001 - reported, the other rows still run
        print(f"int8: {type(exc).__name__}: {exc}")
    cases = []
    for i, photo in enumerate(bundled_photos("test")):
        h, w = photo.shape[:2]
        s = min(h, w)
        crop = photo[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        img = cv2.resize(crop, (256, 256), interpolation=cv2.INTER_AREA)
        for kind in ("thin", "medium", "thick", "box"):
            cases.append((img, MaskGenerator(kind, seed=100 + i)(256, 256, 0, 0)))
    refs = [inpaint(img, mask, fp32) for img, mask in cases]
    big = cv2.resize(bundled_photos("test")[0], (512, 512), interpolation=cv2.INTER_AREA)
    big_mask = MaskGenerator("thick", seed=5)(512, 512, 0, 0)
    rows = []
    for name, method in variants.items():
        outs = [inpaint(img, mask, method) for img, mask in cases]
        hole_psnr = statistics.mean(psnr(o[m > 0], img[m > 0]) for o, (img, m) in zip(outs, cases))
        vs_fp32 = statistics.mean(psnr(o[m > 0], r[m > 0]) for o, r, (_, m) in zip(outs, refs, cases))
        inpaint(big, big_mask, method)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            inpaint(big, big_mask, method)
            times.append(time.perf_counter() - t)
        rows.append(
            {
                "variant": name,
                "hole_psnr": hole_psnr,
                "psnr_vs_fp32_fill": vs_fp32,
                "seconds_512": statistics.median(times),
            }
        )
        print(rows[-1], flush=True)
    meta = {
        "model": args.model,
        "threads": threads,
        "cases": len(cases),
        "loadavg_before": load_before,
        "loadavg_after": Path("/proc/loadavg").read_text().strip(),
        "cpu_bf16": native_bf16("cpu"),
    }
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    base = rows[0]
    lines = [
        f"Model {args.model}, {threads} threads, {len(cases)} fills (3 bundled test photos x 4 mask kinds, "
        f"256x256) for quality, 512x512 thick strokes for speed. Load before: {load_before}; after: "
        f"{meta['loadavg_after']}.",
        "",
        "| variant | hole PSNR dB | change | PSNR vs fp32 fill (hole) | s @ 512 | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['hole_psnr']:.2f} | {r['hole_psnr'] - base['hole_psnr']:+.2f} | "
            f"{r['psnr_vs_fp32_fill']:.1f} | {r['seconds_512']:.3f} | "
            f"{base['seconds_512'] / r['seconds_512']:.2f}x |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
