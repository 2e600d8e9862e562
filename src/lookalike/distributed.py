"""Distributed embedding on Ray: `lookalike index SOURCE --engine ray [--ray-address ADDR]`.

The driver still scans and diffs (cheap); the images to embed are cut into shards. Each shard runs as a Ray
Data pipeline — read + decode + batched embedding in an actor pool, one model per actor, a GPU each where
the cluster has them — and is written as a Parquet file (relpath, vector, width, height, error). The driver
then commits the shard to the catalog. A shard whose Parquet file exists is not computed again, so a run that
dies (or is stopped) resumes where it was. The same code runs on `ray.init()` locally and on a cluster
address; workers need lookalike installed and access to the source (a bucket URL rather than a local path).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lookalike.errors import LookalikeError
from lookalike.indexer import Embedded

SHARD_SIZE = 1024


class EmbedActor:
    """One per Ray worker slot: loads the source and the model once, embeds batches of relpaths."""

    def __init__(self, source_location: str, model_id: str) -> None:
        from lookalike.models.registry import load_embedder
        from lookalike.sources import open_source

        self.source = open_source(source_location)
        self.embedder = load_embedder(model_id)

    def __call__(self, batch: dict) -> dict:
        from lookalike.errors import ImageError
        from lookalike.images import load_image

        arrays, widths, heights, errors = [], [], [], []
        for relpath in batch["relpath"]:
            try:
                image = load_image(self.source.image_input(str(relpath)), draft_size=self.embedder.draft_size)
                arrays.append(self.embedder.prepare(image))
                width, height = image.info["original_size"]
                widths.append(width)
                heights.append(height)
                errors.append("")
            except (ImageError, OSError) as exc:
                arrays.append(None)
                widths.append(0)
                heights.append(0)
                errors.append(str(exc) or type(exc).__name__)
        good = [a for a in arrays if a is not None]
        from lookalike.indexer import stack_prepared

        vectors = iter(self.embedder.embed_prepared(stack_prepared(good)) if good else [])
        dim = self.embedder.dim
        out = np.stack([next(vectors) if a is not None else np.zeros(dim, np.float32) for a in arrays])
        return {"relpath": np.asarray(batch["relpath"]), "vector": out.astype(np.float32),
                "width": np.asarray(widths), "height": np.asarray(heights), "error": np.asarray(errors)}


class RayEngine:
    def __init__(self, shards_dir: str | os.PathLike, address: str | None = None, shard_size: int = SHARD_SIZE,
                 actors: int | None = None, batch_size: int = 32) -> None:
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            raise LookalikeError("--engine ray needs `pip install 'lookalike[ray]'`") from exc
        self.shards_dir = Path(shards_dir)
        self.address = address
        self.shard_size = shard_size
        self.actors = actors
        self.batch_size = batch_size
        self.computed_shards = 0  # shards this run had to compute (the rest were on disk already)

    def _start(self):
        import ray

        if not ray.is_initialized():
            options = {"address": self.address} if self.address else {"num_cpus": os.cpu_count()}
            ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR", **options)
        return ray

    def __call__(self, files: list, source, model_id: str) -> Iterator[list[Embedded]]:
        self.shards_dir.mkdir(parents=True, exist_ok=True)
        by_relpath = {f.relpath: f for f in files}
        for start in range(0, len(files), self.shard_size):
            shard = files[start:start + self.shard_size]
            path = self.shards_dir / f"{_shard_id(shard, model_id)}.parquet"
            if not path.exists():
                self._compute(shard, source.location, model_id, path)
                self.computed_shards += 1
            yield from _read_shard(path, by_relpath, self.batch_size)

    def _compute(self, shard: list, source_location: str, model_id: str, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        ray = self._start()
        gpus = ray.cluster_resources().get("GPU", 0)
        actors = self.actors or max(1, int(gpus) or min(2, int(ray.cluster_resources().get("CPU", 1))))
        dataset = ray.data.from_items([{"relpath": f.relpath} for f in shard])
        embedded = dataset.map_batches(
            EmbedActor, fn_constructor_kwargs={"source_location": source_location, "model_id": model_id},
            batch_size=self.batch_size, concurrency=actors, batch_format="numpy", num_gpus=1 if gpus else 0,
        )
        rows = embedded.take_all()
        table = pa.table({
            "relpath": [str(r["relpath"]) for r in rows],
            "vector": [np.asarray(r["vector"], np.float32).tobytes() for r in rows],
            "width": [int(r["width"]) for r in rows],
            "height": [int(r["height"]) for r in rows],
            "error": [str(r["error"]) for r in rows],
        })
        temporary = path.with_suffix(f".tmp{os.getpid()}")
        pq.write_table(table, temporary)
        os.replace(temporary, path)  # a shard is there completely or not at all


def _shard_id(shard: list, model_id: str) -> str:
    digest = hashlib.sha1(model_id.encode())
    for file in shard:
        digest.update(f"{file.relpath}\0{file.size}\0{file.mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _read_shard(path: Path, by_relpath: dict, batch_size: int) -> Iterator[list[Embedded]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path).to_pydict()
    batch = []
    for relpath, vector, width, height, error in zip(table["relpath"], table["vector"], table["width"],
                                                       table["height"], table["error"], strict=True):
        file = by_relpath[relpath]
        batch.append(Embedded(file, None, error=error) if error else
                     Embedded(file, np.frombuffer(vector, np.float32), (width, height)))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
