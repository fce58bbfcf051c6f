"""A bounded load test of ``fgvc serve`` on loopback: requests/s, latency percentiles, errors, memory.

Starts ``fgvc serve`` (a subprocess on a free 127.0.0.1 port) with the model of
``benchmarks/predict.py`` (the synthetic Dynamic MLP-C config with random weights, or
``--checkpoint``), then ``--clients`` threads each POST photos of the synthetic set (JPEGs with EXIF
GPS and date) to ``/v1/predict`` one after the other, for at most ``--duration`` seconds and
``--max-requests`` requests in all, and print requests/s, p50/p95/p99 latency, errors and the
server's resident memory at start and end. The baseline, measured first in the same run: a plain
PyTorch loop in this process over the same photos — torchvision decode, the evaluation transform,
the forward pass on one image at a time (what a naive server does per request, without HTTP). Only
loopback addresses are used; the test stops by itself.

    python benchmarks/serve.py [--clients 8] [--duration 30] [--max-requests 5000] [--images 200]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict import random_checkpoint, write_photos  # noqa: E402 - the sibling benchmark's helpers

from fgvc.deploy.exif import read_photo  # noqa: E402
from fgvc.deploy.model import load_inference_model  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(checkpoint: str, port: int) -> tuple:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "fgvc", "-q", "serve", "--checkpoint", checkpoint, "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("fgvc serve did not start within 180 s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def baseline(model, photos: list[bytes], seconds: float) -> float:
    """Images/s of decode + transform + forward, one image at a time, for about ``seconds``."""
    meta = torch.zeros(1, model.meta_dim)
    start, done = time.perf_counter(), 0
    with torch.inference_mode():
        while time.perf_counter() - start < seconds:
            pixels, _ = read_photo(photos[done % len(photos)])
            model.forward(model.preprocess(pixels)[None], meta).softmax(1).topk(5)
            done += 1
    return done / (time.perf_counter() - start)


def load(url: str, photos: list[bytes], clients: int, duration: float, max_requests: int) -> dict:
    latencies, errors, lock = [], [], threading.Lock()
    budget = iter(range(max_requests))
    stop_at = time.perf_counter() + duration

    def client(k: int) -> None:
        with httpx.Client(timeout=60) as session:
            while time.perf_counter() < stop_at:
                with lock:
                    n = next(budget, None)
                if n is None:
                    return
                start = time.perf_counter()
                try:
                    answer = session.post(url + "/v1/predict", files={"image": ("p.jpg", photos[n % len(photos)])})
                    ok = answer.status_code == 200 and answer.json()["top"]
                except httpx.HTTPError as exc:
                    ok, answer = False, exc
                with lock:
                    (latencies if ok else errors).append(time.perf_counter() - start if ok else str(answer))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {"requests": len(latencies), "errors": errors, "elapsed": elapsed, "latencies": sorted(latencies)}


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))] if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30, help="seconds of load at most")
    parser.add_argument("--max-requests", type=int, default=5000, help="requests in all at most")
    parser.add_argument("--images", type=int, default=200, help="distinct photos the clients cycle through")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--checkpoint")
    args = parser.parse_args()
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="fgvc-bench-serve-") as tmp:
        tmp = Path(tmp)
        paths, classes = write_photos(tmp, args.images, args.size)
        checkpoint = args.checkpoint or str(tmp / "model.pt")
        if not args.checkpoint:
            random_checkpoint(tmp / "model.pt", classes)
        photos = [Path(p).read_bytes() for p in paths]
        model = load_inference_model(checkpoint)
        base = baseline(model, photos, min(10.0, args.duration))
        del model
        process, url = start_server(checkpoint, free_port())
        try:
            load(url, photos, 2, 3, 50)  # warm-up
            memory_start = rss_mb(process.pid)
            result = load(url, photos, args.clients, args.duration, args.max_requests)
            memory_end = rss_mb(process.pid)
        finally:
            process.terminate()
            process.wait(30)
    rate = result["requests"] / result["elapsed"]
    lat = result["latencies"]
    print(f"{args.clients} clients, {result['requests']} requests in {result['elapsed']:.1f} s "
          f"(bounds: {args.duration:g} s, {args.max_requests} requests); photos of {args.size} px with EXIF")
    print("\n| | requests/s | p50 ms | p95 ms | p99 ms | errors | server RSS start -> end |\n|---|---|---|---|---|---|---|")
    print(f"| fgvc serve | {rate:.1f} | {1000 * percentile(lat, 50):.0f} | {1000 * percentile(lat, 95):.0f} | "
          f"{1000 * percentile(lat, 99):.0f} | {len(result['errors'])} | {memory_start:.0f} -> {memory_end:.0f} MB |")
    print(f"| plain loop, one image at a time, no HTTP | {base:.1f} | | | | | |")
    print(f"\nfgvc serve / plain loop: {rate / base:.2f}x; mean latency {1000 * statistics.mean(lat):.0f} ms"
          if lat else "\nno request succeeded")
    for error in result["errors"][:5]:
        print(f"error: {error}")
    print(f"load average (1 min) at end: {os.getloadavg()[0]:.2f}")
    return 0 if lat and not result["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
