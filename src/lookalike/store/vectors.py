"""The search structure: a FAISS index over the catalog's vectors, cached on disk and rebuilt when stale.

Vectors are kept as float16 inside FAISS (IndexScalarQuantizer QT_fp16): exact inner-product search at
half the memory of float32 (1 KB per 512-d image).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.store.catalog import Catalog


@dataclass
class Neighbours:
    ids: np.ndarray  # (queries, k) catalog ids, -1 where fewer than k images exist
    scores: np.ndarray  # (queries, k) cosine similarities, best first
    method: str  # "exact" (flat) — the ANN variants report their own name


class VectorIndex:
    def __init__(self, ids: np.ndarray, index, generation: int) -> None:
        self.ids = ids
        self.index = index
        self.generation = generation

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, generation: int) -> VectorIndex:
        import faiss

        dim = vectors.shape[1]
        index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        if len(vectors):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(np.asarray(ids, dtype=np.int64), index, generation)

    def search(self, queries: np.ndarray, k: int) -> Neighbours:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self.ids))) if len(self.ids) else 0
        if k == 0:
            empty = np.zeros((len(queries), 0))
            return Neighbours(empty.astype(np.int64), empty.astype(np.float32), "exact")
        scores, positions = self.index.search(queries, k)
        ids = np.where(positions >= 0, self.ids[np.maximum(positions, 0)], -1)
        return Neighbours(ids, np.clip(scores, -1.0, 1.0), "exact")


class VectorCache:
    """Keeps the FAISS index in `directory`, tagged with the catalog generation it was built from."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.index_file = self.directory / "vectors.faiss"
        self.ids_file = self.directory / "vectors.ids.npy"
        self.state_file = self.directory / "vectors.json"

    def load(self, catalog: Catalog, dim: int) -> VectorIndex:
        generation = catalog.generation()
        cached = self._read(generation)
        if cached is not None:
            return cached
        ids, vectors, generation = catalog.all_vectors(dim)
        built = VectorIndex.build(ids, vectors, generation)
        self._write(built)
        return built

    def _read(self, generation: int) -> VectorIndex | None:
        import faiss

        try:
            state = json.loads(self.state_file.read_text())
            if state["generation"] != generation:
                return None
            index = faiss.read_index(str(self.index_file), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            ids = np.load(self.ids_file)
        except (OSError, ValueError, KeyError, RuntimeError):
            return None
        if index.ntotal != len(ids):
            return None
        return VectorIndex(ids, index, generation)

    def _write(self, vectors: VectorIndex) -> None:
        """Write-then-rename, so a reader or a crash never sees a half-written cache."""
        import faiss

        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            suffix = f".tmp{os.getpid()}"
            faiss.write_index(vectors.index, str(self.index_file) + suffix)
            with open(str(self.ids_file) + suffix, "wb") as f:
                np.save(f, vectors.ids)
            Path(str(self.state_file) + suffix).write_text(json.dumps({"generation": vectors.generation}))
            os.replace(str(self.index_file) + suffix, self.index_file)
            os.replace(str(self.ids_file) + suffix, self.ids_file)
            os.replace(str(self.state_file) + suffix, self.state_file)
        except OSError:
            pass  # a read-only index folder still searches; it just rebuilds in memory each time
