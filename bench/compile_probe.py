"""What torch.compile (inductor, C++ on the CPU) would buy the shipped network (fillgap-network), and what it costs.

    python bench/compile_probe.py            # writes bench/results/compile-probe.{json,md}

The question behind it (issue 16): the eager network runs at about 2x its bf16 FLOP bound and
the remaining time is memory-bound element-wise work and FFTs, which only kernel fusion removes.
For each size, a fresh process times the network part (``FFCInpainter.network``: everything after
the prior, which stays eager: unrolled, its ~1,600 small ops take minutes to compile) in the
default runtime's precision (bf16 autocast where the CPU has it), eager and compiled
(``freezing``, shapes static), the first compiled call (compile time), and the largest pixel
difference. Each size runs twice with one inductor cache folder: cold, then warm (a second
process finding the compiled code on disk).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext

from _common import RESULTS, machine, save_json, save_text, timed


def child(size: int, repeats: int) -> dict:
    import torch
    import torch._inductor.config as inductor_config

    from fillgap.methods import get_method, native_bf16
    from fillgap.runtime.threads import set_threads

    set_threads(2)
    net = get_method("fillgap-network").model
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, size, size, generator=g)
    hole = torch.zeros(1, 1, size, size)
    hole[..., size // 4 : size // 2, size // 8 : size - size // 8] = 1
    bf16 = native_bf16("cpu")
    precision = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext

    inductor_config.freezing = True
    compiled = torch.compile(net.network, dynamic=False)
    with torch.no_grad(), precision():
        start = net.prior(image * (1 - hole), hole)
        prior_s = timed(lambda: net.prior(image * (1 - hole), hole), repeats)
        t = time.perf_counter()
        out_compiled = compiled(start, hole)
        first_s = time.perf_counter() - t
        eager_s = timed(lambda: net.network(start, hole), repeats)
        compiled_s = timed(lambda: compiled(start, hole), repeats)
        diff = (net.network(start, hole).float() - out_compiled.float()).abs().max().item()
    return {
        "size": size,
        "precision": "bf16" if bf16 else "fp32",
        "prior_s": prior_s,
        "eager_s": eager_s,
        "compiled_s": compiled_s,
        "first_call_s": first_s,
        "max_abs_diff": diff,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.repeats)))
        return 0
    rows = []
    load_before = os.getloadavg()
    for size in map(int, args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
            for cache_state in ("cold", "warm"):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(size), "--repeats", str(args.repeats)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                row = json.loads(out.stdout.strip().splitlines()[-1]) | {"cache": cache_state}
                print(row, flush=True)
                rows.append(row)
    info = machine(load_before=[round(x, 2) for x in load_before])
    save_json(RESULTS / "compile-probe.json", {"rows": rows, "machine": info})
    lines = [
        f"# torch.compile on the default model's network (2 threads, {rows[0]['precision']})",
        "",
        f"Command: `python bench/compile_probe.py`. Load before {info['load_before']}, after {info['load_average']}.",
        "Seconds are medians of the network part (after the prior, which stays eager) on one picture; "
        "first call = dynamo trace + inductor compile (+ C++ build when the cache is cold).",
        "",
        "| size | inductor cache | prior s (eager) | network s eager | network s compiled | speed-up | first call s | max abs diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['cache']} | {r['prior_s']:.3f} | {r['eager_s']:.3f} | {r['compiled_s']:.3f} | "
            f"{r['eager_s'] / r['compiled_s']:.2f}x | {r['first_call_s']:.1f} | {r['max_abs_diff']:.4f} |"
        )
    save_text(RESULTS / "compile-probe.md", "\n".join(lines) + "\n")
    print("wrote", RESULTS / "compile-probe.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
