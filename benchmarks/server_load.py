"""Load test of `lookalike serve`: N concurrent clients for a bounded time against a local server.

Mixed mode: per client loop an upload search (the model runs), a "more like this" search, a thumbnail. Reports
requests/s, p50/p99 latency and errors, with 1 client as the baseline measured in the same run.
Upload mode (`--uploads 50`): that many clients only upload, while a probe asks /api/health every 50 ms;
reports upload throughput against 1 upload client, /api/health p50/p99 under load, and errors (goals: 0 errors,
health p99 <= 50 ms, throughput >= 1.5x one client). `--baseline-src DIR` runs the same scenarios, in the same
run, against a server started from another source tree (e.g. `git archive <commit> src | tar -x -C /tmp/base`).
Traffic goes to 127.0.0.1 only, and every loop is bounded in time.

    python benchmarks/server_load.py [--clients 8] [--seconds 20] [--uploads 50] [--baseline-src /tmp/base/src]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import httpx
import numpy as np


def start_server(folder: Path, src: str | None = None) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if src:
        env["PYTHONPATH"] = src
    subprocess.run([sys.executable, "-m", "lookalike.cli", "index", str(folder), "--model", "efficientnet-lite0"],
                   check=True, capture_output=True, env=env)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "lookalike.cli", "serve", "--port", str(port)], cwd=folder,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            urllib.request.urlopen(url + "/api/health", timeout=1)
            return process, url
        except OSError:
            time.sleep(0.25)
    raise TimeoutError("server did not start")


def client_loop(url: str, upload: bytes, ids: list[int], deadline: float, latencies: list, errors: list) -> None:
    rng = np.random.default_rng(threading.get_ident() % 2**32)
    with httpx.Client(base_url=url, timeout=60) as client:
        while time.time() < deadline:
            for request in ("upload", "similar", "thumbnail"):
                start = time.perf_counter()
                try:
                    if request == "upload":
                        response = client.post("/api/search/image", files={"file": ("q.jpg", upload)},
                                               data={"k": "10"})
                    elif request == "similar":
                        response = client.get(f"/api/search/similar/{rng.choice(ids)}?k=10")
                    else:
                        response = client.get(f"/api/thumbnail/{rng.choice(ids)}?size=128")
                    ok = response.status_code == 200
                except httpx.HTTPError as exc:
                    ok, response = False, exc
                latencies.append((request, time.perf_counter() - start))
                if not ok:
                    errors.append(str(response))


def run(url: str, clients: int, seconds: float, upload: bytes, ids: list[int]) -> dict:
    latencies, errors = [], []
    deadline = time.time() + seconds
    threads = [threading.Thread(target=client_loop, args=(url, upload, ids, deadline, latencies, errors))
               for _ in range(clients)]
    start = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.time() - start
    times = np.array([t for _, t in latencies]) * 1000
    per_kind = {kind: np.percentile([t * 1000 for k, t in latencies if k == kind], 50)
                for kind in ("upload", "similar", "thumbnail")}
    result = {"clients": clients, "requests": len(latencies), "rps": len(latencies) / elapsed,
              "p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
              "errors": len(errors), **{f"p50_{k}_ms": v for k, v in per_kind.items()}}
    print(f"  {clients:>2} clients: {result['requests']:5d} requests, {result['rps']:6.1f} req/s, "
          f"p50 {result['p50_ms']:6.1f} ms, p99 {result['p99_ms']:7.1f} ms, errors {result['errors']}  "
          f"(p50 upload {per_kind['upload']:.0f} ms, similar {per_kind['similar']:.0f} ms, "
          f"thumbnail {per_kind['thumbnail']:.0f} ms)", flush=True)
    return result


async def _upload_client(http, upload: bytes, deadline: float, done: list, errors: list) -> None:
    while time.time() < deadline:
        start = time.perf_counter()
        try:
            response = await http.post("/api/search/image", files={"file": ("q.jpg", upload)}, data={"k": "10"})
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.text[:100]}")
        except httpx.HTTPError as exc:
            errors.append(repr(exc))
        done.append(time.perf_counter() - start)


async def _probe(http, deadline: float, latencies: list, errors: list) -> None:
    import asyncio

    while time.time() < deadline:
        start = time.perf_counter()
        try:
            if (await http.get("/api/health")).status_code != 200:
                errors.append("health")
        except httpx.HTTPError as exc:
            errors.append(repr(exc))
        latencies.append(time.perf_counter() - start)
        await asyncio.sleep(0.05)


def run_uploads(url: str, clients: int, seconds: float, upload: bytes) -> dict:
    """`clients` upload-only clients (asyncio, one connection each) plus a /api/health probe on its own
    connection."""
    import asyncio

    async def main():
        done, health, errors = [], [], []
        deadline = time.time() + seconds
        limits = httpx.Limits(max_connections=clients + 1, max_keepalive_connections=clients + 1)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http, \
                httpx.AsyncClient(base_url=url, timeout=120) as probe:
            start = time.time()
            await asyncio.gather(_probe(probe, deadline, health, errors),
                                 *(_upload_client(http, upload, deadline, done, errors) for _ in range(clients)))
            elapsed = time.time() - start
        return done, health, errors, elapsed

    done, health, errors, elapsed = asyncio.run(main())
    result = {"clients": clients, "uploads": len(done), "uploads_per_s": len(done) / elapsed,
              "upload_p50_ms": float(np.percentile(done, 50) * 1000) if done else None,
              "health_p50_ms": float(np.percentile(health, 50) * 1000),
              "health_p99_ms": float(np.percentile(health, 99) * 1000), "errors": len(errors)}
    print(f"  {clients:>2} upload clients: {result['uploads']:5d} uploads, {result['uploads_per_s']:6.1f} /s, "
          f"upload p50 {result['upload_p50_ms']:7.1f} ms; /api/health p50 {result['health_p50_ms']:6.1f} ms, "
          f"p99 {result['health_p99_ms']:7.1f} ms; errors {result['errors']}"
          + (f" (first: {errors[0]})" if errors else ""), flush=True)
    return result


def scenario(folder: Path, src: str | None, args, upload: bytes) -> None:
    process, url = start_server(folder, src)
    try:
        ids = [r["id"] for r in httpx.get(url + "/api/search/similar/1?k=31").json()["results"]]
        print(f"server from {src or 'this checkout'} at {url}, {len(ids)} images, {args.seconds:.0f} s per run")
        if args.uploads:
            one = run_uploads(url, 1, args.seconds, upload)
            many = run_uploads(url, args.uploads, args.seconds, upload)
            print(f"  upload throughput {args.uploads} clients / 1 client: "
                  f"{many['uploads_per_s'] / one['uploads_per_s']:.2f}")
        if args.clients:
            baseline = run(url, 1, args.seconds, upload, ids)
            loaded = run(url, args.clients, args.seconds, upload, ids)
            print(f"  throughput ratio {args.clients} clients / 1 client: {loaded['rps'] / baseline['rps']:.2f}; "
                  f"errors {loaded['errors'] + baseline['errors']}")
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8, help="mixed-mode clients (0: skip)")
    parser.add_argument("--uploads", type=int, default=0, help="upload-mode clients (0: skip)")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--baseline-src", help="also run against a server from this source tree, first")
    args = parser.parse_args()
    from lookalike.samples import sample_photos, write_sample_folder

    with tempfile.TemporaryDirectory() as tmp:
        photos = sample_photos()
        buffer = io.BytesIO()
        photos["chelsea"].resize((640, 426)).save(buffer, "JPEG", quality=85)
        for number, src in enumerate([args.baseline_src, None] if args.baseline_src else [None]):
            folder = Path(tmp) / f"photos{number}"
            write_sample_folder(folder, photos)
            scenario(folder, src, args, buffer.getvalue())


if __name__ == "__main__":
    main()
