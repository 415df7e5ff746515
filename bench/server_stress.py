"""The web server under stress: slow clients, big parallel uploads, many fills.

    nice -n 5 python bench/server_stress.py

Starts ``fillgap serve`` (defaults: --max-pixels 40,000,000, so 2 x 40 MP of pictures in
progress at once) in a subprocess, then:
0. ``--slow`` connections that stall or trickle 1 byte/s (a third stop in their request head, a
   third stop in their body, a third send their body at 1 byte/s); while they are open, one
   normal 512x512 fill is timed; then how long until the server closes each kind.
1. ``--parallel`` clients upload a ``--megapixels`` MP JPEG photo-like picture with a small
   hole at the same moment; records each answer (200, or 503 + Retry-After at once when the
   server's pixel budget is full) and the server's resident memory: peak (VmHWM) and sampled.
2. ``--fills`` sequential 512x512 fills; resident memory before and after (growth).
Writes bench/results/server_stress.json (with the machine's load average).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import io
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
from PIL import Image

from _common import load_average, machine, proc_memory_mb, save_json, stop_process


def photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth colours plus fine noise: compresses like a photo (a few bits per pixel as JPEG)."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (h // 500 + 2, w // 500 + 2, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), dtype=np.int16)
    big += rng.integers(-12, 13, (h, 1, 1), dtype=np.int16) + rng.integers(-12, 13, (1, w, 1), dtype=np.int16)
    return np.clip(big, 0, 255).astype(np.uint8)


def encoded(arr: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def start_server(extra: list[str]) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "fillgap", "serve", "--host", "127.0.0.1", "--port", "0", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if "open http://" not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line.strip()}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, line.split("open ")[1].split("/ ")[0]


def slow_clients(url: str, count: int, files: dict) -> dict:
    """Open ``count`` slow connections, time one normal request, then wait for the server to
    close them (header timeout, body idle timeout, request deadline)."""
    import socket

    host, port = url.removeprefix("http://").rsplit(":", 1)
    request = httpx.Request("POST", f"{url}/api/inpaint", files=files)
    body = request.read()
    head = (f"POST /api/inpaint HTTP/1.1\r\nHost: {host}\r\nContent-Type: {request.headers['content-type']}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    kinds = ["stalled head", "stalled body", "body at 1 byte/s"]
    conns, started = [], time.monotonic()
    for i in range(count):
        kind = kinds[i % 3]
        s = socket.create_connection((host, int(port)), timeout=300)
        s.sendall(head[:30] if kind == "stalled head" else head + body[:10])
        conns.append((kind, s))
    closed: dict[str, list[float]] = {k: [] for k in kinds}
    answers: dict[str, set] = {k: set() for k in kinds}
    done = threading.Event()

    def watch(kind: str, s) -> None:
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        closed[kind].append(round(time.monotonic() - started, 1))
        answers[kind].add(data.split(b"\r\n", 1)[0].decode("latin-1") or "closed without an answer")

    def trickle() -> None:
        offset = 10
        while not done.is_set() and offset < len(body):
            for kind, s in conns:
                if kind == "body at 1 byte/s":
                    try:
                        s.send(body[offset:offset + 1])
                    except OSError:
                        pass
            offset += 1
            time.sleep(1)

    watchers = [threading.Thread(target=watch, args=c, daemon=True) for c in conns]
    for w in watchers:
        w.start()
    threading.Thread(target=trickle, daemon=True).start()
    t = time.perf_counter()
    r = httpx.post(f"{url}/api/inpaint", files=files, timeout=600)
    normal = {"status": r.status_code, "seconds": round(time.perf_counter() - t, 2)}
    for w in watchers:
        w.join(300)
    done.set()
    for _, s in conns:
        s.close()
    return {"connections": count, "normal_request": normal,
            "closed_after_s": {k: {"median": sorted(v)[len(v) // 2] if v else None, "max": max(v, default=None),
                                   "count": len(v)} for k, v in closed.items()},
            "answers": {k: sorted(v) for k, v in answers.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megapixels", type=float, default=36.0)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--fills", type=int, default=60)
    ap.add_argument("--model", default=None, help="checkpoint for --model (default: the shipped one)")
    ap.add_argument("--slow", type=int, default=64)
    ap.add_argument("--out", default="server_stress.json")
    args = ap.parse_args()

    side = int(round((args.megapixels * 1e6) ** 0.5))
    big = photo_like(side, side)
    jpeg = encoded(big, "JPEG", quality=90)
    del big
    mask = np.zeros((side, side), np.uint8)
    mask[side // 2 - 150: side // 2 + 150, side // 3: side // 3 + 400] = 255
    mask_png = encoded(mask, "PNG")
    small, small_mask = photo_like(512, 512, 1), np.zeros((512, 512), np.uint8)
    small_mask[200:300, 150:330] = 255
    small_files = {"image": ("s.png", encoded(small, "PNG"), "image/png"),
                   "mask": ("m.png", encoded(small_mask, "PNG"), "image/png")}

    load_start = load_average()
    proc, url = start_server(["--model", args.model] if args.model else [])
    try:
        slow = slow_clients(url, args.slow, small_files)
        print(f"{args.slow} slow connections: a normal fill answered {slow['normal_request']['status']} in "
              f"{slow['normal_request']['seconds']} s; closed after {slow['closed_after_s']}", flush=True)
        idle = proc_memory_mb(proc.pid)
        samples, stop = [], threading.Event()

        def sample():
            while not stop.is_set():
                samples.append(proc_memory_mb(proc.pid)["VmRSS"])
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        barrier = threading.Barrier(args.parallel)

        def upload(i: int) -> dict:
            with httpx.Client(base_url=url, timeout=1800) as client:
                barrier.wait()
                t = time.perf_counter()
                r = client.post("/api/inpaint", files={"image": ("big.jpg", jpeg, "image/jpeg"),
                                                       "mask": ("mask.png", mask_png, "image/png")})
                return {"status": r.status_code, "seconds": round(time.perf_counter() - t, 2),
                        "retry_after": r.headers.get("retry-after"), "bytes": len(r.content)}

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
            answers = list(pool.map(upload, range(args.parallel)))
        burst_s = time.perf_counter() - started
        stop.set()
        sampler.join()
        after_burst = proc_memory_mb(proc.pid)
        print(f"{args.parallel} x {args.megapixels:g} MP: statuses {[a['status'] for a in answers]}, "
              f"peak RSS {after_burst['VmHWM']} MB (idle {idle['VmRSS']} MB)", flush=True)
        # saved now too: the fills below take long on a busy machine
        save(args, side, jpeg, slow, idle, answers, burst_s, after_burst, samples, load_start, None)

        with httpx.Client(base_url=url, timeout=600) as client:
            before_fills = proc_memory_mb(proc.pid)["VmRSS"]
            t = time.perf_counter()
            codes = [client.post("/api/inpaint", files=small_files).status_code for _ in range(args.fills)]
            fills_s = time.perf_counter() - t
            after_fills = proc_memory_mb(proc.pid)["VmRSS"]
        print(f"{args.fills} fills of 512x512: RSS {before_fills} -> {after_fills} MB", flush=True)
        fills = {"count": args.fills, "size": "512x512", "ok": codes.count(200), "wall_s": round(fills_s, 2),
                 "rss_before_mb": before_fills, "rss_after_mb": after_fills}
    finally:
        stop_process(proc)

    save(args, side, jpeg, slow, idle, answers, burst_s, after_burst, samples, load_start, fills)


def save(args, side, jpeg, slow, idle, answers, burst_s, after_burst, samples, load_start, fills) -> None:
    save_json(args.out, {
        "what": "fillgap serve (default limits) memory: parallel big uploads, then many small fills",
        "command": "python bench/server_stress.py " + " ".join(sys.argv[1:]),
        "model": args.model or "shipped default",
        "slow_clients": slow,
        "burst": {"parallel": args.parallel, "megapixels": round(side * side / 1e6, 1), "side": side,
                  "upload_bytes": len(jpeg), "wall_s": round(burst_s, 2), "answers": answers,
                  "ok": sum(a["status"] == 200 for a in answers),
                  "busy_503": sum(a["status"] == 503 for a in answers),
                  "rss_idle_mb": idle["VmRSS"], "rss_peak_mb": after_burst["VmHWM"],
                  "rss_sampled_max_mb": max(samples) if samples else None, "rss_after_mb": after_burst["VmRSS"]},
        "fills": fills,
        "machine": machine(load_average_at_start=load_start),
    })


if __name__ == "__main__":
    main()
