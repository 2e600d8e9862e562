"""Re-running `lookalike index` on an unchanged folder of 10,000 small images (goal: ≤ 2 s).

Baseline, measured in the same run: what a tool without a catalog does on every run, hashing every file
to find what changed. The lookalike figure is the whole CLI process (start-up, imports, scan, diff).

    python benchmarks/reindex_noop.py [--files 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_folder(folder: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        sub = folder / f"album{i // 500:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(sub / f"img{i:05d}.png")


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        make_folder(folder, args.files)
        cli = [sys.executable, "-m", "lookalike.cli", "index", str(folder)]
        first = timed([*cli, "--model", "phash"])
        print(f"first index of {args.files:,} images (phash): {first:.1f} s")
        runs = [timed(cli) for _ in range(3)]
        start = time.perf_counter()
        for path in sorted(folder.rglob("*.png")):
            hashlib.md5(path.read_bytes()).hexdigest()
        rehash = time.perf_counter() - start
        startup = timed([sys.executable, "-m", "lookalike.cli", "--help"])
        print(f"no-op re-index: best {min(runs):.2f} s, median {sorted(runs)[1]:.2f} s (CLI start-up alone "
              f"{startup:.2f} s); baseline re-hash of every file: {rehash:.2f} s; "
              f"ratio lookalike/baseline {min(runs) / rehash:.2f}")


if __name__ == "__main__":
    main()
