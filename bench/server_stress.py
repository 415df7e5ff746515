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

    nice -n 5 python bench/server_stress.py --attacks

runs the attack cases instead, each against a fresh server, and writes
bench/results/server_attacks.json:
- lock-out: ``--half-open`` connections from one address with 26 bytes of a request head each,
  reopened every 8 s; normal 512x512 fills are timed meanwhile. Then 520 requests in progress
  (bodies stalled) and one more fill: the refusal it gets.
- hang-up: a 2400x2400 flat WebP with an almost-white mask, ``strategy=crop``, against a server
  started with ``--max-side 4096`` (a window filled at native size: a long forward pass); the
  client hangs up after 5 s, and a 64x64 fill sent then measures how long the abandoned fill
  kept the fill slot. The same upload with ``max_side=65536`` (above the server's) is refused.
- deadline: the same fill with a client that waits, against ``--request-timeout`` (``--deadline``)
  shorter than the fill: the answer and when it comes.
- unread answers: 12 clients upload a 6 MP noise picture and never read their PNG answer
  (~18 MB each); the server's memory and open connections until they are dropped.
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
    head = (
        f"POST /api/inpaint HTTP/1.1\r\nHost: {host}\r\nContent-Type: {request.headers['content-type']}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
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
                        s.send(body[offset : offset + 1])
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
    return {
        "connections": count,
        "normal_request": normal,
        "closed_after_s": {
            k: {"median": sorted(v)[len(v) // 2] if v else None, "max": max(v, default=None), "count": len(v)}
            for k, v in closed.items()
        },
        "answers": {k: sorted(v) for k, v in answers.items()},
    }


def _raise_fd_limit(need: int) -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        soft = min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))  # the server inherits it
    return soft


def _raw_head(url: str, files: dict, extra: dict | None = None) -> tuple[bytes, bytes]:
    """A request head and body for raw-socket clients."""
    host = url.removeprefix("http://")
    request = httpx.Request("POST", f"{url}/api/inpaint", files=files, data=extra)
    body = request.read()
    head = (
        f"POST /api/inpaint HTTP/1.1\r\nHost: {host}\r\nContent-Type: {request.headers['content-type']}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head, body


def _connect(url: str):
    import socket

    host, port = url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=30)


def _server_sockets(pid: int) -> int:
    import os

    fd_dir = f"/proc/{pid}/fd"
    count = 0
    for name in os.listdir(fd_dir):
        try:
            count += os.readlink(f"{fd_dir}/{name}").startswith("socket:")
        except OSError:
            pass
    return count - 1  # the listening socket


def lockout(url: str, count: int, files: dict) -> dict:
    """``count`` half-open connections (26 bytes of a head each, reopened every 8 s), normal fills
    timed meanwhile; then 520 requests in progress and the answer one more fill gets."""
    stop = threading.Event()
    conns: list = []
    opened = {"n": 0}

    def hold() -> None:
        while not stop.is_set():
            fresh = []
            for _ in range(count):
                try:
                    s = _connect(url)
                    s.sendall(b"POST /api/inpaint HTTP/1.1")  # 26 bytes
                    fresh.append(s)
                except OSError:
                    pass
            old, conns[:] = list(conns), fresh
            opened["n"] += len(fresh)
            for s in old:
                s.close()
            stop.wait(8)
        for s in conns:
            s.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    while opened["n"] < count and holder.is_alive():
        time.sleep(0.1)
    fills = []
    for _ in range(6):  # over ~30 s: across several reopen rounds
        time.sleep(3)
        t = time.perf_counter()
        try:
            r = httpx.post(f"{url}/api/inpaint", files=files, timeout=60)
            fills.append({"status": r.status_code, "seconds": round(time.perf_counter() - t, 2)})
        except httpx.HTTPError as exc:
            fills.append({"status": type(exc).__name__, "seconds": round(time.perf_counter() - t, 2)})
    stop.set()
    holder.join(60)
    # every slot taken by a request in progress (head sent, body stalled): a fill must be refused
    head, body = _raw_head(url, files)
    busy = []
    for _ in range(520):
        s = _connect(url)
        s.sendall(head + body[:10])
        busy.append(s)
        time.sleep(0.005)  # each head read before the next connects (else it is one without a request)
    time.sleep(1)
    r = httpx.post(f"{url}/api/inpaint", files=files, timeout=60)
    refusal = {
        "status": r.status_code,
        "retry_after": r.headers.get("retry-after"),
        "content_type": r.headers.get("content-type"),
        "body": r.text[:200] if r.status_code != 200 else f"PNG, {len(r.content)} bytes",
    }
    for s in busy:
        s.close()
    return {"half_open": count, "opened_in_all": opened["n"], "fills": fills, "refusal_when_full": refusal}


def hangup_and_deadline(url: str, pid: int, timeout_s: float) -> dict:
    """The flat 2400x2400 WebP with an almost-white mask, filled at native size (--max-side 4096)."""
    flat = np.full((2400, 2400, 3), 200, np.uint8)
    mask = np.full((2400, 2400), 255, np.uint8)
    mask[:8, :8] = 0
    files = {
        "image": ("flat.webp", encoded(flat, "WEBP", lossless=True), "image/webp"),
        "mask": ("mask.png", encoded(mask, "PNG"), "image/png"),
    }
    tiny = {
        "image": ("t.png", encoded(photo_like(64, 64, 2), "PNG"), "image/png"),
        "mask": ("m.png", encoded(np.pad(np.full((16, 16), 255, np.uint8), 24), "PNG"), "image/png"),
    }
    upload = sum(len(f[1]) for f in files.values())
    over = httpx.post(f"{url}/api/inpaint", files=files, data={"strategy": "crop", "max_side": "65536"}, timeout=60)
    # the client hangs up 5 s into the fill; a 64x64 fill then waits for the slot
    head, body = _raw_head(url, files, {"strategy": "crop", "max_side": "4096"})
    s = _connect(url)
    s.sendall(head + body)
    time.sleep(5)
    s.close()
    left = time.perf_counter()
    r = httpx.post(f"{url}/api/inpaint", files=tiny, timeout=600)
    small = {"status": r.status_code, "seconds_after_hang_up": round(time.perf_counter() - left, 2)}
    t0 = httpx.post(f"{url}/api/inpaint", files=tiny, timeout=600)
    t = time.perf_counter()
    httpx.post(f"{url}/api/inpaint", files=tiny, timeout=600)
    small_alone = round(time.perf_counter() - t, 2) if t0.status_code == 200 else None
    # the same fill with a client that waits: the request deadline stops it
    t = time.perf_counter()
    r = httpx.post(f"{url}/api/inpaint", files=files, data={"strategy": "crop", "max_side": "4096"}, timeout=600)
    waited = {
        "status": r.status_code,
        "seconds": round(time.perf_counter() - t, 2),
        "retry_after": r.headers.get("retry-after"),
        "detail": r.json().get("detail") if r.status_code != 200 else None,
    }
    t = time.perf_counter()
    r = httpx.post(f"{url}/api/inpaint", files=tiny, timeout=600)
    after = {"status": r.status_code, "seconds": round(time.perf_counter() - t, 2)}
    return {
        "upload_bytes": upload,
        "above_the_servers_max_side": {"status": over.status_code, "detail": over.json().get("detail")},
        "hang_up_after_s": 5,
        "small_fill_after_hang_up": small,
        "small_fill_alone_s": small_alone,
        "request_timeout_s": timeout_s,
        "client_waits": waited,
        "small_fill_after_deadline": after,
        "rss_peak_mb": proc_memory_mb(pid)["VmHWM"],
    }


def unread_answers(url: str, pid: int, clients: int = 12, timeout_s: float = 120.0) -> dict:
    """``clients`` uploads whose ~18 MB PNG answers are never read; memory and open connections."""
    noise = np.random.default_rng(3).integers(0, 256, (2450, 2450, 3), dtype=np.uint8)
    mask = np.zeros((245, 245), np.uint8)  # scaled to the picture: its pixels barely count in the budget
    mask[100:110, 100:110] = 255
    files = {
        "image": ("noise.png", encoded(noise, "PNG", compress_level=1), "image/png"),
        "mask": ("mask.png", encoded(mask, "PNG"), "image/png"),
    }
    head, body = _raw_head(url, files, {"resize_mask": "true"})
    import socket

    idle, baseline = proc_memory_mb(pid)["VmRSS"], _server_sockets(pid)  # the event loop's own sockets
    socks, started = [], time.monotonic()
    for _ in range(clients):
        s = _connect(url)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(head + body)
        socks.append(s)
    samples = []
    while time.monotonic() - started < timeout_s + 20:
        samples.append(
            {
                "t": round(time.monotonic() - started, 1),
                "rss_mb": proc_memory_mb(pid)["VmRSS"],
                "connections": _server_sockets(pid),
            }
        )
        time.sleep(5)
    for s in socks:
        s.close()
    peak = max(samples, key=lambda x: x["rss_mb"])
    return {
        "clients": clients,
        "answer": "PNG of a 6 MP noise picture",
        "rss_idle_mb": idle,
        "rss_peak_mb": peak["rss_mb"],
        "end": samples[-1],
        "samples": samples,
        "connections_closed_by_s": next((x["t"] for x in samples if x["connections"] <= baseline), None),
        "server_sockets_before": baseline,
    }


def attacks(args) -> None:
    limit = _raise_fd_limit(2 * args.half_open + 1200)
    small, small_mask = photo_like(512, 512, 1), np.zeros((512, 512), np.uint8)
    small_mask[200:300, 150:330] = 255
    files = {
        "image": ("s.png", encoded(small, "PNG"), "image/png"),
        "mask": ("m.png", encoded(small_mask, "PNG"), "image/png"),
    }
    load_start = load_average()
    result = {
        "what": "fillgap serve (default limits) under lock-out, hang-up, deadline and unread-answer attacks",
        "command": "python bench/server_stress.py " + " ".join(sys.argv[1:]),
        "fd_limit": limit,
    }
    proc, url = start_server([])
    try:
        result["lockout"] = lockout(url, args.half_open, files)
        print("lock-out:", result["lockout"], flush=True)
    finally:
        stop_process(proc)
    # a deadline shorter than the native fill takes (about 40 s on 2 idle cores)
    proc, url = start_server(["--max-side", "4096", "--request-timeout", str(args.deadline)])
    try:
        result["hangup_deadline"] = hangup_and_deadline(url, proc.pid, args.deadline)
        print("hang-up and deadline:", result["hangup_deadline"], flush=True)
    finally:
        stop_process(proc)
    proc, url = start_server([])
    try:
        result["unread"] = unread_answers(url, proc.pid)
        print("unread answers:", {k: v for k, v in result["unread"].items() if k != "samples"}, flush=True)
    finally:
        stop_process(proc)
    result["machine"] = machine(load_average_at_start=load_start)
    save_json("server_attacks.json", result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megapixels", type=float, default=36.0)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--fills", type=int, default=60)
    ap.add_argument("--model", default=None, help="checkpoint for --model (default: the shipped one)")
    ap.add_argument("--slow", type=int, default=64)
    ap.add_argument("--out", default="server_stress.json")
    ap.add_argument("--attacks", action="store_true", help="run the attack cases instead (server_attacks.json)")
    ap.add_argument("--half-open", type=int, default=1000)
    ap.add_argument("--deadline", type=float, default=20.0, help="--request-timeout of the hang-up server")
    args = ap.parse_args()
    if args.attacks:
        return attacks(args)

    side = int(round((args.megapixels * 1e6) ** 0.5))
    big = photo_like(side, side)
    jpeg = encoded(big, "JPEG", quality=90)
    del big
    mask = np.zeros((side, side), np.uint8)
    mask[side // 2 - 150 : side // 2 + 150, side // 3 : side // 3 + 400] = 255
    mask_png = encoded(mask, "PNG")
    small, small_mask = photo_like(512, 512, 1), np.zeros((512, 512), np.uint8)
    small_mask[200:300, 150:330] = 255
    small_files = {
        "image": ("s.png", encoded(small, "PNG"), "image/png"),
        "mask": ("m.png", encoded(small_mask, "PNG"), "image/png"),
    }

    load_start = load_average()
    proc, url = start_server(["--model", args.model] if args.model else [])
    try:
        slow = slow_clients(url, args.slow, small_files)
        print(
            f"{args.slow} slow connections: a normal fill answered {slow['normal_request']['status']} in "
            f"{slow['normal_request']['seconds']} s; closed after {slow['closed_after_s']}",
            flush=True,
        )
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
                r = client.post(
                    "/api/inpaint",
                    files={"image": ("big.jpg", jpeg, "image/jpeg"), "mask": ("mask.png", mask_png, "image/png")},
                )
                return {
                    "status": r.status_code,
                    "seconds": round(time.perf_counter() - t, 2),
                    "retry_after": r.headers.get("retry-after"),
                    "bytes": len(r.content),
                }

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
            answers = list(pool.map(upload, range(args.parallel)))
        burst_s = time.perf_counter() - started
        stop.set()
        sampler.join()
        after_burst = proc_memory_mb(proc.pid)
        print(
            f"{args.parallel} x {args.megapixels:g} MP: statuses {[a['status'] for a in answers]}, "
            f"peak RSS {after_burst['VmHWM']} MB (idle {idle['VmRSS']} MB)",
            flush=True,
        )
        # saved now too: the fills below take long on a busy machine
        save(args, side, jpeg, slow, idle, answers, burst_s, after_burst, samples, load_start, None)

        with httpx.Client(base_url=url, timeout=600) as client:
            before_fills = proc_memory_mb(proc.pid)["VmRSS"]
            t = time.perf_counter()
            codes = [client.post("/api/inpaint", files=small_files).status_code for _ in range(args.fills)]
            fills_s = time.perf_counter() - t
            after_fills = proc_memory_mb(proc.pid)["VmRSS"]
        print(f"{args.fills} fills of 512x512: RSS {before_fills} -> {after_fills} MB", flush=True)
        fills = {
            "count": args.fills,
            "size": "512x512",
            "ok": codes.count(200),
            "wall_s": round(fills_s, 2),
            "rss_before_mb": before_fills,
            "rss_after_mb": after_fills,
        }
    finally:
        stop_process(proc)

    save(args, side, jpeg, slow, idle, answers, burst_s, after_burst, samples, load_start, fills)


def save(args, side, jpeg, slow, idle, answers, burst_s, after_burst, samples, load_start, fills) -> None:
    save_json(
        args.out,
        {
            "what": "fillgap serve (default limits) memory: parallel big uploads, then many small fills",
            "command": "python bench/server_stress.py " + " ".join(sys.argv[1:]),
            "model": args.model or "shipped default",
            "slow_clients": slow,
            "burst": {
                "parallel": args.parallel,
                "megapixels": round(side * side / 1e6, 1),
                "side": side,
                "upload_bytes": len(jpeg),
                "wall_s": round(burst_s, 2),
                "answers": answers,
                "ok": sum(a["status"] == 200 for a in answers),
                "busy_503": sum(a["status"] == 503 for a in answers),
                "rss_idle_mb": idle["VmRSS"],
                "rss_peak_mb": after_burst["VmHWM"],
                "rss_sampled_max_mb": max(samples) if samples else None,
                "rss_after_mb": after_burst["VmRSS"],
            },
            "fills": fills,
            "machine": machine(load_average_at_start=load_start),
        },
    )


if __name__ == "__main__":
    main()
