"""Thumbnail request time for a large photo: rebuilt on every request (the old route) vs. the disk cache.

Run: PYTHONPATH=src python benchmarks/thumbnails.py
A 24-megapixel JPEG (skimage's astronaut, upscaled, with noise so it does not compress away) is indexed with
phash; both variants are timed in the same run through the real app (TestClient), so the ratio is what counts.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

import lookalike
from lookalike.server.app import create_app
from lookalike.server.thumbs import render


def _photo(folder: Path) -> Path:
    from skimage import data

    base = Image.fromarray(data.astronaut()).resize((6000, 4000), Image.LANCZOS)
    noisy = np.asarray(base).astype(np.int16) + np.random.default_rng(0).integers(-6, 7, (4000, 6000, 3))
    path = folder / "big.jpg"
    Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(path, quality=92)
    return path


def _time(call, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main(runs: int = 10) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        path = _photo(folder)
        idx = lookalike.open(folder, model="phash")
        idx.update()
        [image_id] = idx.catalog.paths_for(range(5))
        with TestClient(create_app(idx, allowed_hosts=["testserver"])) as client:
            for size in (256, 1600):
                rebuilt = _time(lambda s=size: render(idx.read("big.jpg"), s), runs)  # the old route's work
                first = _time(lambda s=size: client.get(f"/api/thumbnail/{image_id}?size={s}"), 1)[0]
                cached = _time(lambda s=size: client.get(f"/api/thumbnail/{image_id}?size={s}"), runs)
                print(f"size {size}: rebuilt per request {statistics.median(rebuilt):.1f} ms (median of {runs}), "
                      f"first request {first:.1f} ms, cached {statistics.median(cached):.2f} ms "
                      f"-> {statistics.median(rebuilt) / statistics.median(cached):.0f}x "
                      f"({path.stat().st_size / 1e6:.1f} MB JPEG, 6000x4000)")
        idx.close()


if __name__ == "__main__":
    main()
