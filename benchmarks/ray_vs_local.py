"""Ray engine vs the in-process pipeline, same images, same model: local Ray on this machine, then a 3-node Ray
cluster on this machine (a head with no task CPUs, as on KubeRay, and two worker nodes with one CPU each), then
the same cluster with a worker node killed while shards are in flight.

On 2 cores Ray can only add overhead (process start, serialisation, a model copy per worker process); this
measures how much, honestly, and what a lost node costs. The point of the engine is a real cluster: see
docs/scaling.md.

    python benchmarks/ray_vs_local.py [--images 256] [--model efficientnet-lite0] [--shard-size 32] \
        | grep -v -e state-dump -e '(raylet)'   # the cluster's raylets also log to this terminal
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every Ray node on 127.0.0.1 (one machine)


def _timed(action) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def _line(label: str, seconds: float, images: int, baseline: float) -> str:
    return (f"  {label:<44} {seconds:6.1f} s  ({images / seconds:6.1f} img/s)  "
            f"{seconds / baseline:.2f}x the baseline's time")


def _check(idx, local) -> str:
    """Lost / duplicated images and the worst vector disagreement against the in-process index."""
    ours = {path: idx.catalog.vector_of(row.id) for path, row in idx.catalog.rows().items()}
    theirs = {path: local.catalog.vector_of(row.id) for path, row in local.catalog.rows().items()}
    lost = len(theirs.keys() - ours.keys())
    duplicated = idx.catalog.count() - len(ours)
    worst = min(float(ours[p] @ theirs[p]) for p in ours.keys() & theirs.keys())
    return f"lost {lost}, duplicated {duplicated}, min cosine to in-process {worst:.5f}"


def _cluster_runs(folder: Path, tmp: Path, model: str, shard_size: int, local, baseline: float) -> list[str]:
    import ray
    from ray.cluster_utils import Cluster

    import lookalike
    from lookalike.distributed import RayEngine

    ray.shutdown()
    images = local.catalog.count()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False,
        "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    lines = []
    try:
        for run in ("cold", "warm"):  # cold: worker processes start and load the model
            engine = RayEngine(tmp / f"{run}-shards", shard_size=shard_size)
            idx = lookalike.open(folder, db=tmp / f"{run}.db", model=model)
            seconds, _ = _timed(lambda: idx.update(engine=engine))  # noqa: B023 - called right here
            lines += [_line(f"3-node cluster (2 workers × 1 CPU), {run}:", seconds, images, baseline),
                      f"    {_check(idx, local)}"]

        engine = RayEngine(tmp / "killed-shards", shard_size=shard_size)
        killed = []

        def kill_after_first_shard() -> None:
            while engine.computed_shards < 1:
                time.sleep(0.01)
            killed.append(engine.computed_shards)
            cluster.remove_node(workers[0], allow_graceful=False)

        threading.Thread(target=kill_after_first_shard, daemon=True).start()
        idx = lookalike.open(folder, db=tmp / "killed.db", model=model)
        seconds, report = _timed(lambda: idx.update(engine=engine))
        lines += [_line("same, warm, a worker node killed:", seconds, images, baseline),
                  f"    killed after {killed[0]} of {engine.computed_shards} shards; added {report.added}; "
                  f"{_check(idx, local)}"]
    finally:
        ray.shutdown()
        cluster.shutdown()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--shard-size", type=int, default=32)
    args = parser.parse_args()
    import lookalike
    from lookalike.distributed import RayEngine
    from lookalike.samples import sample_photos

    photos = list(sample_photos().values())
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        folder = tmp / "photos"
        folder.mkdir()
        for i in range(args.images):
            photos[i % len(photos)].resize((640, 480)).rotate(i % 11).save(folder / f"{i:04d}.jpg", quality=90)
        lookalike.open(folder, db=tmp / "warm.db", model=args.model)  # load the model once, untimed
        local = lookalike.open(folder, db=tmp / "local.db", model=args.model)
        baseline, _ = _timed(local.update)
        cold, _ = _timed(lambda: lookalike.open(folder, db=tmp / "ray.db", model=args.model).update(
            engine=RayEngine(tmp / "shards", shard_size=args.shard_size)))
        warm, _ = _timed(lambda: lookalike.open(folder, db=tmp / "ray2.db", model=args.model).update(
            engine=RayEngine(tmp / "shards2", shard_size=args.shard_size)))
        print(f"{args.images} images, {args.model}, {os.cpu_count()} cores, shards of {args.shard_size}")
        print(f"  {'in-process pipeline:':<44} {baseline:6.1f} s  ({args.images / baseline:6.1f} img/s)  baseline")
        print(_line("local Ray, cold start:", cold, args.images, baseline))
        print(_line("local Ray, warm:", warm, args.images, baseline))
        for line in _cluster_runs(folder, tmp, args.model, args.shard_size, local, baseline):
            print(line, flush=True)
        again, _ = _timed(lambda: lookalike.open(folder, db=tmp / "local2.db", model=args.model).update())
        print(_line("in-process again (noise check):", again, args.images, baseline))


if __name__ == "__main__":
    main()
