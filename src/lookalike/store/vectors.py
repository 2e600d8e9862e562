"""The search structure: a FAISS index over the catalog's vectors, cached on disk and kept up to date.

- Small collections (≤ `EXACT_LIMIT` images): exact inner-product search over float16 vectors
  (IndexScalarQuantizer QT_fp16, 1 KB per 512-d image).
- Larger ones: an HNSW graph over the same float16 vectors (IndexHNSWSQ, M=16: ~1.15 KB per 512-d image).
  Its storage is the exact float16 index, so `exact=True` still answers exactly from the same memory.
- Additions are appended to the cached structure; a deletion (rare) rebuilds it. The catalog stays the truth:
  a missing, stale or corrupt cache is rebuilt from it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.store.catalog import Catalog

EXACT_LIMIT = int(os.environ.get("LOOKALIKE_EXACT_LIMIT", 50_000))
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 40
HNSW_BYTES_PER_DIM = 2.3  # float16 vectors plus the graph: ~1,168 bytes per 512-d image
TRAINING_SAMPLE = 200_000


def memory_budget() -> int | None:
    """LOOKALIKE_MEMORY_BUDGET (bytes, or with a G/M suffix): past it, large-index mode (IVF-PQ) is used."""
    value = os.environ.get("LOOKALIKE_MEMORY_BUDGET", "").strip().upper()
    if not value:
        return None
    scale = {"G": 2**30, "M": 2**20, "K": 2**10}.get(value[-1], 1)
    return int(float(value.rstrip("GMK")) * scale)


def large_index_layout(count: int, dim: int, budget: int) -> tuple[int, int]:
    """(nlist, PQ bytes per vector) that fit `budget` in RAM, autofaiss-style: the PQ codes take what the
    budget leaves after the coarse centroids; the float16 vectors for re-ranking stay on disk (memory-mapped)."""
    nlist = int(min(65536, max(64, 4 * np.sqrt(count))))
    available = budget - nlist * dim * 4
    per_vector = available / max(count, 1)
    for m in (128, 96, 64, 48, 32, 24, 16, 8):
        if dim % m == 0 and m + 16 <= per_vector:  # + ids and list overhead
            return nlist, m
    raise ValueError(f"a memory budget of {budget:,} bytes cannot hold {count:,} vectors even at 8 bytes each")


def build_large_index(vectors, dim: int, budget: int, chunk: int = 500_000):
    """IVF-PQ trained on a sample; `vectors` is an array or a callable(start, stop) producing rows, so 10M
    vectors never need to be in RAM at once. Candidates are re-ranked with the exact float16 vectors, which
    stay on disk (a memory-mapped .npy next to the index)."""
    import faiss

    count = len(vectors) if not callable(vectors) else vectors.count
    nlist, m = large_index_layout(count, dim, budget)
    rows = vectors if not callable(vectors) else None
    sample = (rows[:TRAINING_SAMPLE] if rows is not None else vectors(0, min(count, TRAINING_SAMPLE)))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    for start in range(0, count, chunk):
        block = rows[start:start + chunk] if rows is not None else vectors(start, min(count, start + chunk))
        index.add(np.ascontiguousarray(block, dtype=np.float32))
    return index


@dataclass
class Neighbours:
    ids: np.ndarray  # (queries, k) catalog ids, -1 where fewer than k images exist
    scores: np.ndarray  # (queries, k) cosine similarities, best first
    method: str  # "exact" or "hnsw(ef=…)"


def _new_faiss_index(dim: int, approximate: bool):
    import faiss

    if approximate:
        index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.train(np.zeros((1, dim), np.float32))  # fp16 needs no statistics
        return index
    return faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)


class VectorIndex:
    def __init__(self, ids: np.ndarray, index, generation: int, epoch: int = 0, rerank=None) -> None:
        self.ids = ids
        self.index = index
        self.generation = generation
        self.epoch = epoch
        self.rerank = rerank  # large-index mode: exact float16 vectors by position (memory-mapped when loaded)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def approximate(self) -> bool:
        return hasattr(self.index, "hnsw") or self.large

    @property
    def large(self) -> bool:
        return self.rerank is not None

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, generation: int, epoch: int = 0,
              exact_limit: int | None = None) -> VectorIndex:
        limit = EXACT_LIMIT if exact_limit is None else exact_limit
        budget = memory_budget()
        dim = vectors.shape[1]
        if budget is not None and len(ids) > limit and len(ids) * dim * HNSW_BYTES_PER_DIM > budget:
            return cls(np.asarray(ids, dtype=np.int64), build_large_index(vectors, dim, budget), generation, epoch,
                       rerank=np.asarray(vectors, dtype=np.float16))
        index = _new_faiss_index(dim, approximate=len(ids) > limit)
        built = cls(np.zeros(0, np.int64), index, generation, epoch)
        built.add(np.asarray(ids, dtype=np.int64), vectors)
        return built

    def add(self, ids: np.ndarray, vectors: np.ndarray, chunk: int = 65536) -> None:
        for start in range(0, len(ids), chunk):
            self.index.add(np.ascontiguousarray(vectors[start:start + chunk], dtype=np.float32))
        self.ids = np.concatenate([self.ids, np.asarray(ids, dtype=np.int64)])

    def search(self, queries: np.ndarray, k: int, exact: bool = False, ef: int | None = None) -> Neighbours:
        """Top-k by inner product; `ef` widens the HNSW search (recall up, speed down)."""
        import faiss

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self.ids))) if len(self.ids) else 0
        if k == 0:
            empty = np.zeros((len(queries), 0))
            return Neighbours(empty.astype(np.int64), empty.astype(np.float32), "exact")
        if self.large:
            scores, positions, method = self._search_large(queries, k, exact)
        elif self.approximate and not exact:
            ef = ef or max(2 * k, 256 if len(self.ids) < 500_000 else 512)  # keeps recall@10 ≥ ~0.95
            params = faiss.SearchParametersHNSW(efSearch=ef)
            scores, positions = self.index.search(queries, k, params=params)
            method = f"hnsw(ef={ef})"
        else:
            flat = faiss.downcast_index(self.index.storage) if self.approximate else self.index
            scores, positions = flat.search(queries, k)
            method = "exact"
        ids = np.where(positions >= 0, self.ids[np.maximum(positions, 0)], -1)
        return Neighbours(ids, np.clip(scores, -1.0, 1.0), method)


    def _search_large(self, queries: np.ndarray, k: int, exact: bool):
        """IVF-PQ proposes 8·k candidates; their float16 vectors (read from disk) decide the order."""
        import faiss

        if exact:  # stream the memory-mapped vectors
            best_scores = np.full((len(queries), k), -np.inf, np.float32)
            best = np.zeros((len(queries), k), np.int64)
            for start in range(0, len(self.rerank), 262_144):
                block = np.asarray(self.rerank[start:start + 262_144], dtype=np.float32) @ queries.T
                scores = np.concatenate([best_scores, block.T], axis=1)
                positions = np.concatenate([best, np.arange(start, start + len(block))[None].repeat(len(queries), 0)],
                                           axis=1)
                order = np.argsort(-scores, axis=1)[:, :k]
                best_scores, best = np.take_along_axis(scores, order, 1), np.take_along_axis(positions, order, 1)
            return best_scores, best, "exact"
        nprobe = min(self.index.nlist, max(64, self.index.nlist // 5))  # embeddings spread: probe a fifth
        self.index.use_precomputed_table = -1  # its nlist×m×256 float table would break the memory budget
        _, candidates = self.index.search(queries, 8 * k, params=faiss.SearchParametersIVF(nprobe=nprobe))
        scores = np.full((len(queries), k), -np.inf, np.float32)
        positions = np.full((len(queries), k), -1, np.int64)
        for row, found in enumerate(candidates):
            found = np.unique(found[found >= 0])
            exact_scores = np.asarray(self.rerank[found], dtype=np.float32) @ queries[row]
            order = np.argsort(-exact_scores)[:k]
            scores[row, :len(order)], positions[row, :len(order)] = exact_scores[order], found[order]
        return scores, positions, f"ivfpq(nprobe={nprobe}, rerank=fp16)"


class VectorCache:
    """Keeps the FAISS index in `directory`, tagged with the catalog generation it reflects."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.index_file = self.directory / "vectors.faiss"
        self.ids_file = self.directory / "vectors.ids.npy"
        self.state_file = self.directory / "vectors.json"
        self.rerank_file = self.directory / "vectors.f16.npy"

    def load(self, catalog: Catalog, dim: int) -> VectorIndex:
        generation = catalog.generation()
        cached = self._read()
        if cached is not None and cached.generation == generation:
            return cached
        ids, vectors, (generation, epoch) = catalog.all_vectors(dim)
        appendable = (cached is not None and cached.epoch == epoch and len(cached.ids) <= len(ids)
                      and not cached.large and cached.approximate == (len(ids) > EXACT_LIMIT))
        if appendable:  # nothing deleted or replaced since: append the new vectors
            new = ~np.isin(ids, cached.ids)
            cached.add(ids[new], vectors[new])
            cached.generation = generation
            self._write(cached)
            return cached
        built = VectorIndex.build(ids, vectors, generation, epoch)
        self._write(built)
        return built

    def _read(self) -> VectorIndex | None:
        import faiss

        try:
            state = json.loads(self.state_file.read_text())
            try:
                index = faiss.read_index(str(self.index_file), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            except RuntimeError:  # index types that cannot be memory-mapped
                index = faiss.read_index(str(self.index_file))
            ids = np.load(self.ids_file)
            rerank = np.load(self.rerank_file, mmap_mode="r") if state.get("large") else None
        except (OSError, ValueError, KeyError, RuntimeError):
            return None
        if index.ntotal != len(ids) or state.get("count") != len(ids):
            return None
        return VectorIndex(ids, index, state["generation"], state.get("epoch", 0), rerank)

    def _write(self, vectors: VectorIndex) -> None:
        """Write-then-rename, so a reader or a crash never sees a half-written cache."""
        import faiss

        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            suffix = f".tmp{os.getpid()}"
            faiss.write_index(vectors.index, str(self.index_file) + suffix)
            with open(str(self.ids_file) + suffix, "wb") as f:
                np.save(f, vectors.ids)
            if vectors.large:
                with open(str(self.rerank_file) + suffix, "wb") as f:
                    np.save(f, np.asarray(vectors.rerank, dtype=np.float16))
                os.replace(str(self.rerank_file) + suffix, self.rerank_file)
            state = {"generation": vectors.generation, "epoch": vectors.epoch, "count": len(vectors.ids),
                     "large": vectors.large}
            Path(str(self.state_file) + suffix).write_text(json.dumps(state))
            os.replace(str(self.index_file) + suffix, self.index_file)
            os.replace(str(self.ids_file) + suffix, self.ids_file)
            os.replace(str(self.state_file) + suffix, self.state_file)
        except OSError:
            pass  # a read-only index folder still searches; it just rebuilds in memory each time
