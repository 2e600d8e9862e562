"""The embedded vector store: FAISS structures cached on disk, derived from the catalog and kept up to date.

- Additions are appended to the cached structure (to the smallest shards) while the collection at most doubles
  since the codebooks were trained; a deletion (rare) or more growth rebuilds it. The catalog stays the truth: a
  missing, stale or corrupt cache is rebuilt from it.
- On disk, the state file (vectors.json) is the commit point: it names the shard and id files of one build, which
  are written under fresh names first, so a crash or a concurrent reader never mixes two builds.
- A folder that cannot be written (read-only media, permissions) still searches: the structure is then rebuilt
  in memory on each open.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lookalike.settings import DEFAULT_SETTINGS, IndexSettings
from lookalike.store.base import Neighbours
from lookalike.store.catalog import Catalog
from lookalike.store.large import IVFPQVectors
from lookalike.store.npy_append import append_rows
from lookalike.store.policy import STRUCTURES, structure_for
from lookalike.store.structures import FaissVectors

BUILD_FILE = re.compile(r"vectors\.[0-9a-f]{12}\.(\d+\.faiss|ids\.npy)")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _appendable(cached: FaissVectors | None, structure: type[FaissVectors], count: int, epoch: int) -> bool:
    """The cache can take the catalog's additions: same structure, nothing deleted or replaced since (epoch), and
    at most twice the collection its codebooks or lists were trained on."""
    return (cached is not None and type(cached) is structure and cached.epoch == epoch and len(cached.ids) <= count
            and (not cached.approximate or count <= 2 * cached.trained_count))


class FaissStore:
    """`VectorStore` over the cached FAISS structure, reloaded when the catalog's generation moves."""

    def __init__(self, directory: Path, dim: int, settings: IndexSettings) -> None:
        self.cache = VectorCache(directory, settings)
        self.dim = dim
        self.current: FaissVectors | None = None

    def sync(self, catalog: Catalog) -> None:
        if self.current is None or self.current.generation != catalog.generation():
            self.current = self.cache.load(catalog, self.dim)

    def search(self, queries: np.ndarray, k: int, exact: bool = False, candidates: int | None = None
               ) -> Neighbours:
        if self.current is None:
            raise RuntimeError("FaissStore.search before sync")
        return self.current.search(queries, k, exact=exact, candidates=candidates)

    def describe(self) -> str:
        return self.cache.describe()


class VectorCache:
    """Keeps the FAISS structure in `directory`, tagged with the catalog generation it reflects."""

    def __init__(self, directory: str | Path, settings: IndexSettings = DEFAULT_SETTINGS) -> None:
        self.directory = Path(directory)
        self.settings = settings
        self.state_file = self.directory / "vectors.json"
        self.rerank_file = self.directory / "vectors.f16.npy"

    def load(self, catalog: Catalog, dim: int) -> FaissVectors:
        identity = catalog.identity()
        cached = self._read() if self._state().get("catalog") == identity else None  # another catalog's: ignore
        if cached is not None and cached.generation == catalog.generation():
            return cached
        if structure_for(catalog.count(), dim, self.settings) is IVFPQVectors:
            if _appendable(cached, IVFPQVectors, catalog.count(), catalog.epoch()):
                assert isinstance(cached, IVFPQVectors)
                self._append_large(cached, catalog, dim)  # only additions since: no 10-minute rebuild at 10M
                built: FaissVectors = cached
            else:
                built = self._build_large_from(catalog, dim)
        else:
            ids, vectors, (generation, epoch) = catalog.all_vectors(dim)
            structure = structure_for(len(ids), dim, self.settings)
            if cached is not None and _appendable(cached, structure, len(ids), epoch):
                new = ~np.isin(ids, cached.ids)  # append the new vectors
                cached.add(ids[new], vectors[new])
                cached.generation = generation
                built = cached
            else:
                built = structure.build(ids, vectors, generation, epoch, self.settings)
        self._write(built, identity)
        return built

    def describe(self) -> str:
        """The cached search structure in words, without loading it ('' before the first search)."""
        state = self._state()
        count, kind, tuning = state.get("count", 0), state.get("kind"), state.get("tuning", {})
        if kind == "ivfpq":
            return (f"IVF-PQ + on-disk float16 re-rank (large-index mode; nprobe {tuning.get('nprobe')}, "
                    f"{tuning.get('candidates')} candidates, tuned), {count:,} vectors")
        if kind == "pq-rerank":
            shards = len(state["shard_files"])
            pool = (f"{tuning['candidates']:,} candidates, tuned" if shards == 1 else
                    f"{tuning['candidates']:,} candidates per shard, tuned; {shards} shards searched in parallel")
            return f"PQ fast-scan + float16 re-rank ({pool}), {count:,} vectors"
        return f"exact float16, {count:,} vectors" if kind == "exact" else ""

    def _state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def index_files(self, state: dict | None = None) -> list[Path]:
        """The FAISS files (one per shard) of the committed cache, or of `state`; [] before the first."""
        return [self.directory / name for name in (state or self._state()).get("shard_files", [])]

    def _build_large_from(self, catalog: Catalog, dim: int) -> IVFPQVectors:
        """Streams the catalog's vectors into the memory-mapped float16 file the index re-ranks from, then
        builds from that file: RAM holds one chunk at a time, never the collection."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(f"{self.rerank_file.name}.tmp*"):  # from a build that crashed
            owner = stale.name.rsplit(".tmp", 1)[-1]
            if owner.isdigit() and not _process_alive(int(owner)):
                stale.unlink(missing_ok=True)
        staging = Path(f"{self.rerank_file}.tmp{os.getpid()}")
        ids, (generation, epoch) = catalog.export_vectors(staging, dim)
        return IVFPQVectors.build(ids, np.load(staging, mmap_mode="r"), generation, epoch, self.settings)

    def _append_large(self, cached: IVFPQVectors, catalog: Catalog, dim: int) -> None:
        """Adds the catalog's rows newer than the cache to the IVF-PQ lists and to the end of the float16 file,
        whose .npy header is rewritten in place (numpy leaves room for a growing shape)."""
        import faiss

        ids, vectors, (generation, _) = catalog.vectors_after(int(cached.ids.max()) if len(cached.ids) else 0, dim)
        if len(ids):
            writable = faiss.read_index(str(self.index_files()[0]))  # not the read-only memory map
            cached.use_shards([writable])
            cached.rerank = append_rows(self.rerank_file, len(cached.ids), np.asarray(vectors, np.float16))
            cached.add(ids, vectors)
        cached.generation = generation

    def _read(self) -> FaissVectors | None:
        import faiss

        def read_index(path: Path):
            try:
                return faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            except RuntimeError:  # index types that cannot be memory-mapped
                return faiss.read_index(str(path))

        state = self._state()
        try:
            structure = STRUCTURES[state["kind"]]
            shards = [read_index(path) for path in self.index_files(state)]
            ids = np.load(self.directory / state["ids_file"])
            extra = {"rerank": np.load(self.rerank_file, mmap_mode="r")} if structure.large else {}
        except (OSError, ValueError, KeyError, RuntimeError):
            return None
        if structure.large:
            if len(extra["rerank"]) < len(ids):
                return None
            extra["rerank"] = extra["rerank"][:len(ids)]  # rows past the count: a crashed append's orphans
        sizes = state["shard_sizes"]
        if [shard.ntotal for shard in shards] != sizes or sum(sizes) != len(ids) or state.get("count") != len(ids):
            return None
        return structure(np.split(ids, np.cumsum(sizes)[:-1]), shards, state["generation"], state["epoch"],
                         state["trained_count"], **extra, **state["tuning"])

    def _write(self, vectors: FaissVectors, catalog_identity: str) -> None:
        """Shards and ids go to files named after this build, then the state file that names them is replaced
        (the commit), then the files of earlier builds are removed: a reader or a crash never mixes two builds."""
        build = uuid.uuid4().hex[:12]
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            state = {**self._write_build(vectors, build), "catalog": catalog_identity}
            suffix = f".tmp{os.getpid()}"
            Path(str(self.state_file) + suffix).write_text(json.dumps(state))
            os.replace(str(self.state_file) + suffix, self.state_file)
        except (OSError, RuntimeError):  # FAISS reports write errors as RuntimeError
            # a read-only index folder still searches; it just rebuilds in memory each time
            self._remove_builds(lambda name: name.startswith(f"vectors.{build}."))  # what this one wrote, if any
            return
        self._remove_builds(lambda name: not name.startswith(f"vectors.{build}."))

    def _write_build(self, vectors: FaissVectors, build: str) -> dict:
        """Writes the shard, id (and float16) files of one build; returns the state that names them."""
        import faiss

        shard_files = [f"vectors.{build}.{n}.faiss" for n in range(len(vectors.shards))]
        for name, shard in zip(shard_files, vectors.shards, strict=True):
            faiss.write_index(shard, str(self.directory / name))
        ids_file = f"vectors.{build}.ids.npy"
        np.save(self.directory / ids_file, vectors.ids)
        if isinstance(vectors, IVFPQVectors):
            self._commit_rerank_file(vectors.rerank)
        return {"generation": vectors.generation, "epoch": vectors.epoch, "count": len(vectors.ids),
                "kind": vectors.kind, "trained_count": vectors.trained_count, "tuning": vectors.tuning,
                "shard_files": shard_files, "shard_sizes": [len(ids) for ids in vectors.shard_ids],
                "ids_file": ids_file}

    def _commit_rerank_file(self, rerank) -> None:
        """The float16 file lives at `rerank_file`: streamed or appended there already, staged, or written now."""
        staging = Path(f"{self.rerank_file}.tmp{os.getpid()}")
        staged = getattr(rerank, "filename", None)
        staged = Path(staged).resolve() if staged else None
        if staged == self.rerank_file.resolve():
            return
        if staged != staging.resolve():
            with open(staging, "wb") as f:
                np.save(f, np.asarray(rerank, dtype=np.float16))
        os.replace(staging, self.rerank_file)

    def _remove_builds(self, which: Callable[[str], bool]) -> None:
        """Removes the shard and id files whose names `which` accepts (a reader that mapped one keeps its pages)."""
        for path in self.directory.glob("vectors.*"):
            if BUILD_FILE.fullmatch(path.name) and which(path.name):
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
