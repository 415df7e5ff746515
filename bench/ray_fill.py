"""Folder filling with the Ray engine vs the local engine on this machine, and scaling on paper.

    nice -n 5 python bench/ray_fill.py            # needs the ray extra: pip install 'fillgap[ray]'

A folder of --count PNG pictures (--size px, cut from the bundled photos) with mixture-stroke masks,
filled by the shipped network, fillgap-network (an untrained ffc-small when absent: same cost) with
- the local engine (fill_folder: threads, batched network calls),
- the Ray engine on a local Ray with 2 CPUs (started once, its start timed apart), 1 and 2 actors.
Each engine also fills a 1-picture folder: its fixed cost per run (for Ray: starting the actors,
each importing torch and loading the model); the marginal cost is (t(N) - t(1)) / (N - 1).
Rounds are interleaved (--repeats), medians reported.

Then the per-picture costs of the steps, measured in this process with 1 thread: decode (picture
+ mask), network (the fill), encode (PNG into memory) and the bytes each picture moves (picture,
mask and output files), from which the "scaling on paper" section of the README is computed: N
nodes of C cores fill about N * C / (CPU seconds per picture) pictures/s until the shared
storage's bandwidth (bytes per picture) or the driver's per-picture bookkeeping caps it.
Writes bench/results/ray_fill.json and prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fillgap.checkpoint import DEFAULT_WEIGHTS
from fillgap.data import bundled_photos
from fillgap.data.datasets import random_patch
from fillgap.engines.local import fill_folder
from fillgap.fill import inpaint
from fillgap.imageio import encode_png, read_image_rgba, read_mask, write_image
from fillgap.masks import MaskGenerator
from fillgap.methods import get_method
from fillgap.models import create_model

RESULTS = Path(__file__).with_name("results")


def make_folder(root: Path, count: int, size: int) -> None:
    photos, strokes, rng = bundled_photos("train"), MaskGenerator("mixture", 0), np.random.default_rng(0)
    for sub in ("images", "masks", "one/images", "one/masks"):
        (root / sub).mkdir(parents=True)
    for i in range(count):
        name = f"{i:05d}.png"
        write_image(root / "images" / name, random_patch(rng, photos[i % len(photos)], size, (0.3, 1.0)))
        m = (strokes(size, size, 0, i) * 255).astype(np.uint8)
        write_image(root / "masks" / name, np.repeat(m[..., None], 3, axis=2))
    for sub in ("images", "masks"):
        shutil.copy(root / sub / "00000.png", root / "one" / sub / "00000.png")


def step_costs(root: Path, spec, count: int) -> dict:
    """Median CPU seconds per picture of each step, 1 thread, in this process (CPU time: what a
    loaded machine distorts least)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    method = get_method(spec)
    decode, network, encode, sizes = [], [], [], []
    for path in sorted((root / "images").iterdir())[:count]:
        mask_path = root / "masks" / path.name
        t = time.process_time()
        rgb, alpha = read_image_rgba(path)
        mask = read_mask(mask_path)
        t1 = time.process_time()
        out = inpaint(rgb, mask, method)
        t2 = time.process_time()
        data = encode_png(out)  # write_image's PNG level
        t3 = time.process_time()
        decode.append(t1 - t), network.append(t2 - t1), encode.append(t3 - t2)
        sizes.append(path.stat().st_size + mask_path.stat().st_size + len(data))
    torch.set_num_threads(before)
    med = statistics.median
    return {
        "decode_s": round(med(decode), 4),
        "network_s": round(med(network), 4),
        "encode_s": round(med(encode), 4),
        "bytes_moved": int(med(sizes)),
        "cpu_s": round(med(decode) + med(network) + med(encode), 4),
    }


def paper(costs: dict, bandwidth_gbit: float, cores: int = 16) -> dict:
    """Scaling on paper: N nodes of ``cores`` cores, one 1-thread actor per core, are CPU-bound
    at N * cores / (CPU s per picture) until the shared storage's bandwidth caps them."""
    storage_cap = bandwidth_gbit * 1e9 / 8 / costs["bytes_moved"]
    rows = []
    for nodes in (1, 4, 16, 64):
        cpu_bound = nodes * cores / costs["cpu_s"]
        rows.append(
            {
                "nodes": nodes,
                "cores_per_node": cores,
                "cpu_bound_pictures_per_s": round(cpu_bound, 1),
                "storage_cap_pictures_per_s": round(storage_cap, 1),
                "expected_pictures_per_s": round(min(cpu_bound, storage_cap), 1),
            }
        )
    return {"bandwidth_gbit": bandwidth_gbit, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--bandwidth-gbit", type=float, default=10.0, help="shared storage link, for the paper part")
    ap.add_argument("--repaper", type=Path, help="only recompute the paper part of an existing result file")
    args = ap.parse_args()
    if args.repaper:
        result = json.loads(args.repaper.read_text())
        result["paper"] = paper(result["per_picture"], args.bandwidth_gbit)
        args.repaper.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["paper"]))
        return
    import ray

    from fillgap.engines.ray import connect, fill_ray

    load_start = os.getloadavg()
    shipped = DEFAULT_WEIGHTS.exists()
    spec = "fillgap-network" if shipped else create_model("ffc-small").eval()  # untrained: timing only
    model_name = "fillgap-network (ffc-small)" if shipped else "ffc-small (untrained)"
    t = time.perf_counter()
    connect(None, num_cpus=2)
    ray_start_s = time.perf_counter() - t
    settings = [("local", 0), ("ray", 1), ("ray", 2)]
    times: dict[tuple, dict[str, list[float]]] = {s: {"one": [], "all": []} for s in settings}
    with tempfile.TemporaryDirectory(prefix="fillgap-rayfill-") as tmp:
        root = Path(tmp)
        make_folder(root, args.count, args.size)
        costs = step_costs(root, spec, min(args.count, 16))
        method = get_method(spec)
        for _ in range(args.repeats):
            for engine, actors in settings:
                for which, src in (("one", root / "one"), ("all", root)):
                    out = root / "out"
                    t = time.perf_counter()
                    if engine == "local":
                        report = fill_folder(src / "images", src / "masks", out, method, workers=2, batch_size=8)
                    else:
                        report = fill_ray(src / "images", src / "masks", out, spec, actors=actors, batch_size=4)
                    times[(engine, actors)][which].append(time.perf_counter() - t)
                    n = 1 if which == "one" else args.count
                    assert len(report.written) == n and not report.failed, report.failed[:3]
                    shutil.rmtree(out)
                print(
                    engine,
                    actors,
                    {k: [round(v, 2) for v in vs] for k, vs in times[(engine, actors)].items()},
                    flush=True,
                )
    ray.shutdown()
    rows = []
    for (engine, actors), ts in times.items():
        one, full = statistics.median(ts["one"]), statistics.median(ts["all"])
        # None when the noise of the fixed cost swamps the difference (a loaded machine)
        marginal = (args.count - 1) / (full - one) if full > one * 1.05 else None
        rows.append(
            {
                "engine": engine,
                "actors": actors or None,
                "wall_s_all": [round(v, 2) for v in ts["all"]],
                "wall_s_one": [round(v, 2) for v in ts["one"]],
                "pictures_per_s": round(args.count / full, 2),
                "fixed_s": round(one, 2),
                "marginal_pictures_per_s": marginal and round(marginal, 2),
            }
        )
    local = rows[0]
    for row in rows[1:]:
        row["ratio_to_local"] = round(row["pictures_per_s"] / local["pictures_per_s"], 2)
        if row["marginal_pictures_per_s"] and local["marginal_pictures_per_s"]:
            row["marginal_ratio_to_local"] = round(row["marginal_pictures_per_s"] / local["marginal_pictures_per_s"], 2)
    # What 1 actor's marginal wall time per picture has beyond the steps' own time: Ray's
    # bookkeeping plus, on a loaded machine, waiting for a core (an upper bound of the former).
    ray1 = rows[1]["marginal_pictures_per_s"]
    overhead = max(0.0, 1 / ray1 - costs["cpu_s"]) if ray1 else 0.0
    result = {
        "what": f"fill {args.count} pictures {args.size}x{args.size} (PNG in, PNG out, mixture strokes), pictures/s",
        "model": model_name,
        "ray": ray.__version__,
        "ray_start_s": round(ray_start_s, 2),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": load_start,
            "load_average_at_end": os.getloadavg(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "note": "2-core machine shared with other jobs: see the load averages; compare rows of one run. "
        "Ray: local instance with 2 CPUs, 1 CPU and 1 torch thread per actor; local engine: "
        "2 reader/writer threads, batch 8, torch's default threads.",
        "rows": rows,
        "per_picture": costs,
        "ray_extra_wall_per_picture_s": round(overhead, 4),
        "paper": paper(costs, args.bandwidth_gbit),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ray_fill.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"| engine | pictures/s (all {args.count}) | fixed s per run | marginal pictures/s | ratio to local |")
    print("|---|---|---|---|---|")
    for row in rows:
        name = "local" if row["engine"] == "local" else f"ray, {row['actors']} actor(s)"
        print(
            f"| {name} | {row['pictures_per_s']} | {row['fixed_s']} | {row['marginal_pictures_per_s']} | "
            f"{row.get('ratio_to_local', 1.0)} / {row.get('marginal_ratio_to_local', 1.0)} |"
        )
    print(json.dumps(costs), f"ray extra wall {overhead:.4f} s/picture, ray start {ray_start_s:.1f} s")
    print(f"wrote {RESULTS / 'ray_fill.json'}")


if __name__ == "__main__":
    main()
