"""Seconds per image on this machine's CPU, parameters and FLOPs for every model and classical peer,
the shipped network's time breakdown, and its network part against the machine's FLOP bound.

    python bench/speed.py                 # writes bench/results/speed.{json,md}
    python bench/speed.py --onnx-model /path/to/weights.safetensors   # the onnx row for those weights

Each method fills the same photo with the same thick-stroke mask through the real path users
get (``fillgap.inpaint`` with a ``fillgap.methods`` method), after one warm-up call; the figure
is the median of ``--repeats`` runs, all in one process with ``--threads`` threads, so the rows
compare as ratios even on a machine that other work keeps busy (load recorded).

Rows for the shipped network (``fillgap-network``): torch fp32, the default runtime ``auto`` (bf16
where the CPU computes it natively), onnxruntime; and the default method, ``fillgap-texture``.
Breakdown (the network, torch fp32 and auto): decode (PNG bytes -> pixels), prior (the classical start the
network refines), network (the rest of the forward pass), pipeline + composite (windows,
padding, blending: the fill minus the forward pass), encode (pixels -> PNG). FLOPs: PyTorch's
FlopCounterMode (convolutions and matrix products; the torch path's FFTs are not counted).
FLOP bound: network GFLOPs / the matrix-product rate (fp32, or bf16 for the bf16 path) measured
here with the same threads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import cv2
import torch
from torch.utils.flop_counter import FlopCounterMode

from fillgap.checkpoint import DEFAULT_WEIGHTS
from fillgap.data import bundled_photos
from fillgap.fill import inpaint
from fillgap.imageio import encode_png, read_image_bytes
from fillgap.masks import MaskGenerator, hole_ratio
from fillgap.methods import classical_names, get_method, native_bf16
from fillgap.models import create_model
from fillgap.runtime.threads import set_threads

from _common import RESULTS, timed


def peak_gflops(seconds: float = 1.0, n: int = 1024, dtype: torch.dtype = torch.float32) -> float:
    """Matrix-product rate in ``dtype`` with the current threads: the best of repeated n x n products."""
    a, b = torch.rand(n, n, dtype=dtype), torch.rand(n, n, dtype=dtype)
    best, end = 0.0, time.perf_counter() + seconds
    torch.mm(a, b)
    while time.perf_counter() < end:
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best / 1e9


def forward_flops(model, x, m) -> tuple[int, int]:
    """(whole forward, prior alone) FLOPs on these inputs."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, m)
    total = counter.get_total_flops()
    prior = 0
    if getattr(model, "prior", None) is not None and getattr(model, "refine", False):
        hole = (m > 0).float()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model.prior(x * (1 - hole), hole)
        prior = counter.get_total_flops()
    return total, prior


class Probe:
    """Wraps a torch method's forward pass and its model's prior with timers (and grabs their inputs)."""

    def __init__(self, method):
        self.method, self.forward_s, self.prior_s, self.inputs = method, 0.0, 0.0, []
        model = method.model
        self._forward, self._prior = method._forward, getattr(model, "prior", None)

        def forward(x, m):
            self.inputs.append((x, m))
            t = time.perf_counter()
            out = self._forward(x, m)
            self.forward_s += time.perf_counter() - t
            return out

        method._forward = forward
        if self._prior is not None and getattr(model, "refine", False):
            prior = self._prior

            def timed_prior(*a):
                t = time.perf_counter()
                out = prior(*a)
                self.prior_s += time.perf_counter() - t
                return out

            model.prior = _Wrapped(prior, timed_prior)

    def reset(self):
        self.forward_s, self.prior_s, self.inputs = 0.0, 0.0, []

    def remove(self):
        del self.method._forward
        if self._prior is not None and isinstance(self.method.model.prior, _Wrapped):
            self.method.model.prior = self._prior


class _Wrapped(torch.nn.Module):
    def __init__(self, inner, fn):
        super().__init__()
        self.inner, self.fn = inner, fn

    def forward(self, *a):
        return self.fn(*a)


def breakdown(method, img, mask, repeats: int, peak: float) -> dict:
    png = encode_png(img)
    decode = timed(lambda: read_image_bytes(png), repeats)
    probe = Probe(method)
    try:
        inpaint(img, mask, method)  # warm-up
        parts = []
        for _ in range(repeats):
            probe.reset()
            t = time.perf_counter()
            out = inpaint(img, mask, method)
            total = time.perf_counter() - t
            parts.append((total, probe.forward_s, probe.prior_s))
        inputs = probe.inputs
    finally:
        probe.remove()
    total, fwd, prior = (statistics.median(p[i] for p in parts) for i in range(3))
    encode = timed(lambda: encode_png(out), repeats)
    flops = [forward_flops(method.model, x, m) for x, m in inputs]
    net_gflops = sum(f - p for f, p in flops) / 1e9
    network = fwd - prior
    return {
        "decode_s": decode,
        "prior_s": prior,
        "network_s": network,
        "pipeline_composite_s": total - fwd,
        "encode_s": encode,
        "fill_s": total,
        "windows": [list(x.shape[-2:]) for x, _ in inputs],
        "network_gflops": net_gflops,
        "prior_gflops": sum(p for _, p in flops) / 1e9,
        "flop_bound_s": net_gflops / peak,
        "network_vs_bound": network / (net_gflops / peak),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--onnx-model",
        default=None,
        help="Weights for the onnx-runtime rows (default: the shipped model, when it exports).",
    )
    ap.add_argument("--skip-slow", action="store_true", help="Leave out ffc-base and opencv-fsr.")
    ap.add_argument("--out", type=Path, default=RESULTS / "speed")
    args = ap.parse_args()
    threads = set_threads(args.threads)
    load_before = Path("/proc/loadavg").read_text().strip()
    peak = {"fp32": peak_gflops(), "bf16": peak_gflops(dtype=torch.bfloat16)}
    photo = bundled_photos("test")[0]
    shipped = DEFAULT_WEIGHTS.exists()
    spec = "fillgap-network" if shipped else create_model("ffc-small").eval()  # untrained: timing only
    default = get_method(spec, runtime="torch")
    auto = get_method(spec)  # the default runtime: bf16 where the CPU computes it natively
    auto_bf16 = native_bf16("cpu")
    runtime_label = f"auto: {'bf16' if auto_bf16 else 'fp32'} here"
    label = "fillgap-network" if shipped else "ffc-small (untrained)"
    methods = {f"{label} (torch fp32)": default, f"{label} ({runtime_label})": auto}
    if shipped:  # the default method: the network's fill with the texture stage (fillgap.texture) on top
        methods["fillgap-texture (the default)"] = get_method("fillgap-texture")
    onnx_spec = args.onnx_model
    onnx_error = None
    try:
        methods[f"{label} (onnx runtime)" if onnx_spec is None else f"{Path(onnx_spec).stem} (onnx runtime)"] = (
            get_method(onnx_spec or spec, runtime="onnx")
        )
        if onnx_spec is not None:
            methods[f"{Path(onnx_spec).stem} (torch)"] = get_method(onnx_spec, runtime="torch")
    except Exception as exc:  # noqa: BLE001 - reported in the results, the torch rows still run
        onnx_error = f"{type(exc).__name__}: {exc}"[:300]
    if not args.skip_slow:
        methods["ffc-base (untrained)"] = get_method("ffc-base", allow_untrained=True)
    methods["seed-color-ae (untrained)"] = get_method("seed-color-ae", allow_untrained=True)
    for name in classical_names():
        if not (args.skip_slow and name == "opencv-fsr"):
            methods[name] = get_method(name)
    rows, breakdowns = [], {}
    for size in args.sizes:
        img = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA)
        mask = MaskGenerator("thick", seed=5)(size, size, 0, 0)
        for name, method in methods.items():
            reps = 1 if name in ("skimage-biharmonic", "opencv-fsr") else args.repeats
            row = {
                "method": name,
                "size": size,
                "seconds": timed(lambda: inpaint(img, mask, method), reps),
                "params": method.parameters_count(),
                "hole": hole_ratio(mask),
                "gflops": None,
            }
            if hasattr(method, "model") and isinstance(method.model, torch.nn.Module):
                n = method.fixed_size or size
                x, m = torch.rand(1, method.channels, n, n), torch.zeros(1, 1, n, n)
                m[..., : n // 4, : n // 4] = 1
                row["gflops"] = forward_flops(method.model, x, m)[0] / 1e9
            rows.append(row)
            print(f"{size} {name}: {row['seconds']:.3f} s", flush=True)
        breakdowns[f"{size} torch fp32"] = breakdown(default, img, mask, args.repeats, peak["fp32"])
        breakdowns[f"{size} {runtime_label}"] = breakdown(
            auto, img, mask, args.repeats, peak["bf16" if auto_bf16 else "fp32"]
        )
    meta = {
        "threads": threads,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "matmul_gflops": peak,
        "loadavg_before": load_before,
        "loadavg_after": Path("/proc/loadavg").read_text().strip(),
        "onnx_error": onnx_error,
        "default": default.source,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "rows": rows, "breakdown": breakdowns}, indent=1) + "\n"
    )
    lines = [
        f"CPU, {threads} threads, hole {rows[0]['hole'] * 100:.0f} % (thick strokes); median seconds per "
        f"image through the real fill path. Load before: {load_before}; after: {meta['loadavg_after']}. "
        f"Matrix products here: {peak['fp32']:.0f} GFLOP/s fp32, {peak['bf16']:.0f} GFLOP/s bf16.",
        "",
        "| method | params | " + " | ".join(f"s @ {s}x{s} | GFLOPs @ {s}" for s in args.sizes) + " |",
        "|---|---|" + "---|---|" * len(args.sizes),
    ]
    for name in dict.fromkeys(r["method"] for r in rows):
        cells = []
        for s in args.sizes:
            r = next(r for r in rows if r["method"] == name and r["size"] == s)
            cells += [f"{r['seconds']:.3f}", "-" if r["gflops"] is None else f"{r['gflops']:.1f}"]
        params = next(r["params"] for r in rows if r["method"] == name)
        lines.append(f"| {name} | {params / 1e6:.2f} M | " + " | ".join(cells) + " |")
    if onnx_error:
        lines += ["", f"onnx runtime row missing: {onnx_error}"]
    if breakdowns:
        lines += [
            "",
            "fillgap-network, seconds per fill by part; network against the FLOP bound (the matrix-product "
            "rate of the precision it runs in):",
            "",
            "| size, runtime | decode | prior | network | pipeline + composite | encode | fill (no I/O) | "
            "network GFLOPs | FLOP bound s | network / bound |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s, b in breakdowns.items():
            lines.append(
                f"| {s} | {b['decode_s']:.3f} | {b['prior_s']:.3f} | {b['network_s']:.3f} | "
                f"{b['pipeline_composite_s']:.3f} | {b['encode_s']:.3f} | {b['fill_s']:.3f} | "
                f"{b['network_gflops']:.1f} | {b['flop_bound_s']:.3f} | {b['network_vs_bound']:.2f}x |"
            )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
