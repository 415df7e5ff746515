"""Requests per second of ``POST /api/inpaint`` on loopback: 512x512 photo, masks of about 15 %.

    nice -n 15 python bench/server_load.py

Starts ``fillgap serve`` in a subprocess on 127.0.0.1 (a free port), then a bounded client:
``--clients`` threads, each with its own httpx connection, share a fixed number of requests
(after a few warm-up ones). Each request sends a 512x512 PNG (a bundled photo) and one of
eight seeded "medium" stroke masks with 13-17 % holes, and checks the 200 PNG answer.
Runs the server with ``--threads 1`` and with torch's default thread count. Reports requests/s
and latency percentiles per setting, with the machine's load average before and after: the
server shares the cores with whatever else runs, so on a busy machine the figures are a lower
bound. Also reports the server's CPU seconds per request (from /proc), which depends much less
on what else runs, and 1 / that as an estimate of requests/s per idle core.
Writes bench/results/server.json.

Model: ``--model CKPT``, else the shipped default weights when present, else an untrained
ffc-small exported to a temp file (same cost per request as trained weights).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

import fillgap
from fillgap.checkpoint import DEFAULT_WEIGHTS, export_weights
from fillgap.imageio import read_image
from fillgap.masks import MaskGenerator, hole_ratio
from fillgap.models import create_model

from _common import RESULTS, machine, save_json, stop_process

PHOTO = Path(fillgap.__file__).parent / "data" / "bundled" / "test" / "coffee.jpg"


def png(arr: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="PNG")
    return buffer.getvalue()


def workload(size: int) -> tuple[bytes, list[bytes], list[float]]:
    rgb = read_image(PHOTO)
    side = min(rgb.shape[:2])
    top, left = (rgb.shape[0] - side) // 2, (rgb.shape[1] - side) // 2
    crop = Image.fromarray(rgb[top : top + side, left : left + side]).resize((size, size), Image.BICUBIC)
    gen, masks, ratios = MaskGenerator("medium", seed=0), [], []
    for index in range(10_000):
        m = gen(size, size, 0, index)
        if 0.13 <= hole_ratio(m) <= 0.17:
            masks.append(png((m * 255).astype(np.uint8)))
            ratios.append(round(float(hole_ratio(m)), 4))
            if len(masks) == 8:
                break
    return png(np.asarray(crop)), masks, ratios


def start_server(model: Path, threads: str) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "fillgap", "serve", "--model", str(model), "--host", "127.0.0.1", "--port", "0"]
    if threads != "default":
        cmd += ["--threads", threads]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()  # "fillgap: model ...; open http://127.0.0.1:PORT/ ..."
    if "open http://" not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line.strip()} {proc.stdout.read()[:500]}")
    # Keep reading its output so a full pipe never blocks it.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, line.split("open ")[1].split("/ ")[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(url: str, image: bytes, masks: list[bytes], clients: int, count: int, pid: int | None = None) -> dict:
    local = threading.local()

    def one(i: int) -> float:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=3600)  # queued behind others on a busy machine
        t = time.perf_counter()
        r = local.client.post(
            "/api/inpaint",
            files={
                "image": ("photo.png", image, "image/png"),
                "mask": ("mask.png", masks[i % len(masks)], "image/png"),
            },
        )
        if r.status_code != 200 or r.headers["content-type"] != "image/png":
            raise RuntimeError(f"request {i}: {r.status_code} {r.text[:200]}")
        return time.perf_counter() - t

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        cpu0 = cpu_seconds(pid) if pid else 0.0
        start = time.perf_counter()
        latencies = sorted(pool.map(one, range(count)))
        wall = time.perf_counter() - start
        cpu = (cpu_seconds(pid) - cpu0) / count if pid else None
    pct = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 3)  # noqa: E731
    out = {
        "clients": clients,
        "requests": count,
        "wall_s": round(wall, 2),
        "requests_per_s": round(count / wall, 3),
        "latency_s": {"p50": pct(0.5), "p90": pct(0.9), "max": round(latencies[-1], 3)},
    }
    if cpu is not None:
        # What a request costs the server in CPU time, whatever share of the cores it got: on
        # an otherwise idle core the server could do about 1 / this requests per second.
        out["server_cpu_s_per_request"] = round(cpu, 3)
        out["requests_per_s_per_idle_core_estimate"] = round(1 / cpu, 2) if cpu > 0 else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--clients", default="1,3", help="client counts to run, comma-separated")
    ap.add_argument(
        "--threads",
        default="1,default",
        help="server --threads settings to run, comma-separated ('default': torch's choice)",
    )
    ap.add_argument("--requests", type=int, default=9, help="timed requests per setting")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "server.json")
    args = ap.parse_args()

    image, masks, ratios = workload(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        model, source = args.model, str(args.model)
        if model is None and DEFAULT_WEIGHTS.exists():
            model, source = DEFAULT_WEIGHTS, "shipped default weights"
        if model is None:
            model, source = Path(tmp) / "ffc-small.safetensors", "untrained ffc-small (same cost as trained)"
            export_weights(model, create_model("ffc-small"))
        runs, load_before = [], os.getloadavg()
        for threads in args.threads.split(","):
            proc, url = start_server(model, threads)
            try:
                body = httpx.get(f"{url}/api/models").json()
                info = body["loaded"]
                if args.warmup:
                    run(url, image, masks, 1, args.warmup)
                for clients in args.clients.split(","):
                    before = os.getloadavg()[0]
                    r = run(url, image, masks, int(clients), args.requests, proc.pid)
                    runs.append(
                        {
                            "server_threads": f"{threads} ({body['threads']})",
                            **r,
                            "loadavg_1min_before_after": [round(before, 2), round(os.getloadavg()[0], 2)],
                        }
                    )
                    print(
                        f"threads {runs[-1]['server_threads']}, {r['clients']} client(s): "
                        f"{r['requests_per_s']} requests/s, p50 {r['latency_s']['p50']} s, "
                        f"p90 {r['latency_s']['p90']} s, server CPU {r['server_cpu_s_per_request']} s/request",
                        flush=True,
                    )
            finally:
                stop_process(proc)
        load_after = os.getloadavg()

    result = {
        "what": f"POST /api/inpaint, {args.size}x{args.size} PNG photo + stroke mask, over loopback (127.0.0.1)",
        "model": info["name"],
        "model_source": source,
        "parameters": info["parameters"],
        "image_bytes": len(image),
        "mask_hole_ratios": ratios,
        "mask_hole_ratio_mean": round(float(np.mean(ratios)), 4),
        "server": "fillgap serve (one uvicorn worker; fills one at a time, decode/encode overlap)",
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "nice": os.nice(0),
        "loadavg_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "note": (
            f"busy machine (1-min load average {load_before[0]:.1f} on {os.cpu_count()} cores): "
            "the server shared its cores, so these figures are a lower bound"
            if load_before[0] > 0.5 * (os.cpu_count() or 1)
            else "quiet machine"
        ),
        "runs": runs,
    }
    result["machine_info"] = machine()
    save_json(args.out, result)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
