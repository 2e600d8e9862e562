"""Distributed embedding on Ray: `lookalike index SOURCE --engine ray [--ray-address ADDR] [--shards LOCATION]`.

The driver still scans and diffs (cheap); the images to embed are cut into shards of `SHARD_SIZE`. Each shard
is one Ray task that reads, decodes and embeds its images with the *same* mapper as the in-process pipeline
(`indexer.embedded_batches`, so both engines give the same vectors) and produces a Parquet file (relpath,
vector, width, height, error). The driver commits each finished shard to the catalog once, in the order shards
finish, while the others are still in flight.

Faults: a task whose worker or node dies is run again elsewhere by Ray (`max_retries`); a shard's name is a hash
of its files and the model, and a shard is written whole or not at all, so a second attempt (or a re-run after
the driver itself died) finds or rewrites the same shard, and the driver commits each shard id once.

Where shards live: an object-store URL (`s3://bucket/prefix`, any fsspec location) is written by the worker that
computed the shard — one PUT, so all or nothing — and read back by the driver: no shared filesystem anywhere,
and finished shards survive the loss of any machine. A local directory belongs to the driver: workers send the
Parquet bytes back through Ray and the driver writes them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from lookalike.errors import LookalikeError
from lookalike.indexer import Embedded

SHARD_SIZE = 1024
MAX_RETRIES = 3  # per shard, after its worker or node died or its object-store write failed


class ShardStore:
    """Finished shards by id: a local directory (written by the driver) or an fsspec URL (written by workers)."""

    def __init__(self, location: str | os.PathLike) -> None:
        from lookalike.sources import is_remote

        self.location = str(location)
        self.remote = is_remote(self.location)
        if self.remote:
            import fsspec

            self.fs, self.root = fsspec.core.url_to_fs(self.location)
        else:
            Path(self.location).expanduser().mkdir(parents=True, exist_ok=True)

    def path(self, shard_id: str) -> str:
        if self.remote:
            return f"{self.root.rstrip('/')}/{shard_id}.parquet"
        return str(Path(self.location).expanduser() / f"{shard_id}.parquet")

    def exists(self, shard_id: str) -> bool:
        return self.fs.exists(self.path(shard_id)) if self.remote else Path(self.path(shard_id)).exists()

    def write(self, shard_id: str, data: bytes) -> None:
        if self.remote:
            self.fs.pipe_file(self.path(shard_id), data)  # one PUT: the object appears whole or not at all
            return
        target = Path(self.path(shard_id))
        temporary = target.with_suffix(f".tmp{os.getpid()}")
        temporary.write_bytes(data)
        os.replace(temporary, target)  # a shard is there completely or not at all

    def read(self, shard_id: str) -> bytes:
        return self.fs.cat_file(self.path(shard_id)) if self.remote else Path(self.path(shard_id)).read_bytes()


@lru_cache(maxsize=2)
def _embedder(model_id: str, runtime: str):
    """One model per Ray worker process, kept across the shards that process runs, on the driver's runtime."""
    from lookalike.models.registry import load_embedder

    return load_embedder(model_id, runtime)


def embed_shard(source_location: str, model_id: str, runtime: str, relpaths: list[str], shard_id: str,
                shards_location: str | None, batch_size: int) -> bytes | None:
    """Runs on a worker: embed one shard. Writes it to `shards_location` (object storage) and returns None,
    or returns the Parquet bytes for the driver to write (a local shard directory)."""
    from concurrent.futures import ThreadPoolExecutor

    from lookalike.indexer import default_workers, embedded_batches
    from lookalike.sources import open_source

    store = ShardStore(shards_location) if shards_location else None
    if store and store.exists(shard_id):  # an earlier attempt finished it
        return None
    embedder, source = _embedder(model_id, runtime), open_source(source_location)
    with ThreadPoolExecutor(default_workers()) as pool:
        items = [item for batch in embedded_batches(pool, relpaths, embedder, batch_size,
                                                    path_of=source.image_input) for item in batch]
    data = _parquet(items, embedder.dim)
    if store is None:
        return data
    store.write(shard_id, data)
    return None


def _parquet(items: list[Embedded], dim: int) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    zero = np.zeros(dim, np.float32)
    table = pa.table({
        "relpath": [str(item.key) for item in items],
        "vector": [np.asarray(item.vector if item.error is None else zero, np.float32).tobytes() for item in items],
        "width": [int(item.size[0]) for item in items],
        "height": [int(item.size[1]) for item in items],
        "error": [item.error or "" for item in items],
    })
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    return buffer.getvalue().to_pybytes()


class RayEngine:
    """`update_index(..., engine=RayEngine(...))`: shards embedded as Ray tasks, committed here as they finish."""

    def __init__(self, shards: str | os.PathLike, address: str | None = None, shard_size: int = SHARD_SIZE,
                 batch_size: int = 32, cpus_per_shard: float = 1, max_retries: int = MAX_RETRIES,
                 in_flight: int | None = None) -> None:
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            raise LookalikeError("--engine ray needs `pip install 'lookalike[ray]'`") from exc
        self.shards = ShardStore(shards)
        self.address = address
        self.shard_size = shard_size
        self.batch_size = batch_size
        self.cpus_per_shard = cpus_per_shard
        self.max_retries = max_retries
        self.in_flight = in_flight  # shards submitted at once; default: twice the cluster's shard slots
        self.computed_shards = 0  # shards this run had to compute (the rest were finished already)

    def _start(self):
        import ray

        if not ray.is_initialized():
            # no address: a Ray of our own here, even when another cluster runs on this machine
            options = {"address": self.address} if self.address else {"address": "local", "num_cpus": os.cpu_count()}
            ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR", **options)
        return ray

    def _task(self, ray):
        gpus = ray.cluster_resources().get("GPU", 0)
        task = ray.remote(embed_shard).options(
            num_cpus=self.cpus_per_shard, num_gpus=1 if gpus else 0, max_retries=self.max_retries,
            retry_exceptions=[OSError])  # a worker or node that dies is retried by Ray in any case
        slots = int(gpus) or max(1, int(ray.cluster_resources().get("CPU", 1) / self.cpus_per_shard))
        return task, self.in_flight or 2 * slots

    def __call__(self, files: list, source, model_id: str, runtime: str = "auto") -> Iterator[list[Embedded]]:
        by_relpath = {f.relpath: f for f in files}
        todo = []
        for start in range(0, len(files), self.shard_size):
            shard = files[start:start + self.shard_size]
            shard_id = _shard_id(shard, model_id)
            if self.shards.exists(shard_id):
                yield from _batches(self.shards.read(shard_id), by_relpath, self.batch_size)
            else:
                todo.append((shard_id, [f.relpath for f in shard]))
        if todo:
            yield from self._run(todo, source.location, (model_id, runtime), by_relpath)

    def _run(self, todo: list, source_location: str, model: tuple[str, str], by_relpath: dict
             ) -> Iterator[list[Embedded]]:
        ray = self._start()
        task, window = self._task(ray)
        target = self.shards.location if self.shards.remote else None
        running: dict = {}
        committed: set[str] = set()
        while todo or running:
            while todo and len(running) < window:
                shard_id, relpaths = todo.pop(0)
                ref = task.remote(source_location, *model, relpaths, shard_id, target, self.batch_size)
                running[ref] = shard_id
            [ref], _ = ray.wait(list(running), num_returns=1)
            shard_id = running.pop(ref)
            try:
                data = ray.get(ref)
            except ray.exceptions.RayError as exc:
                raise LookalikeError(
                    f"shard {shard_id} failed after {self.max_retries + 1} attempts: {exc}. Run the same command "
                    f"again: the {self.computed_shards} finished shards in {self.shards.location} are kept") from exc
            if data is not None:
                self.shards.write(shard_id, data)
            self.computed_shards += 1
            if shard_id not in committed:  # a shard id is committed once per run, whatever ran it
                committed.add(shard_id)
                yield from _batches(data or self.shards.read(shard_id), by_relpath, self.batch_size)


def _shard_id(shard: list, model_id: str) -> str:
    digest = hashlib.sha1(model_id.encode())
    for file in shard:
        digest.update(f"{file.relpath}\0{file.size}\0{file.mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _batches(parquet: bytes, by_relpath: dict, batch_size: int) -> Iterator[list[Embedded]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(pa.BufferReader(parquet)).to_pydict()
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
