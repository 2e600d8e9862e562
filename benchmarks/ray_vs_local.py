"""Ray engine (local Ray on this machine) vs the in-process pipeline, same images, same model.

On 2 cores Ray can only add overhead (process start, serialisation, an actor's own model copy); this measures
how much, honestly. The point of the engine is a cluster: see docs/scaling.md for the 100M-image plan.

    python benchmarks/ray_vs_local.py [--images 256] [--model efficientnet-lite0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--model", default="efficientnet-lite0")
    args = parser.parse_args()
    import lookalike
    from lookalike.distributed import RayEngine
    from lookalike.samples import sample_photos

    photos = list(sample_photos().values())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for i in range(args.images):
            photos[i % len(photos)].resize((640, 480)).rotate(i % 11).save(folder / f"{i:04d}.jpg", quality=90)
        lookalike.open(folder, db=Path(tmp) / "warm.db", model=args.model)  # load the model once, untimed
        start = time.perf_counter()
        lookalike.open(folder, db=Path(tmp) / "local.db", model=args.model).update()
        local = time.perf_counter() - start
        start = time.perf_counter()
        engine = RayEngine(Path(tmp) / "shards", shard_size=args.images)
        lookalike.open(folder, db=Path(tmp) / "ray.db", model=args.model).update(engine=engine)
        ray_cold = time.perf_counter() - start
        start = time.perf_counter()
        lookalike.open(folder, db=Path(tmp) / "ray2.db", model=args.model).update(
            engine=RayEngine(Path(tmp) / "shards2", shard_size=args.images))
        ray_warm = time.perf_counter() - start
        print(f"{args.images} images, {args.model}, {os.cpu_count()} cores")
        print(f"  in-process pipeline: {local:6.1f} s  ({args.images / local:6.1f} img/s)  baseline")
        print(f"  Ray, cold start:     {ray_cold:6.1f} s  ({args.images / ray_cold:6.1f} img/s)  "
              f"{ray_cold / local:.2f}x the baseline's time")
        print(f"  Ray, warm cluster:   {ray_warm:6.1f} s  ({args.images / ray_warm:6.1f} img/s)  "
              f"{ray_warm / local:.2f}x the baseline's time")


if __name__ == "__main__":
    main()
