"""The one place that decides which vector store and which search structure an index uses, from its settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lookalike.settings import DEFAULT_SETTINGS, IndexSettings
from lookalike.store.base import VectorStore
from lookalike.store.large import IVFPQVectors
from lookalike.store.structures import ExactVectors, FaissVectors, PQRerankVectors

BYTES_PER_DIM = 2.15  # default structure: float16 vectors, 4-bit PQ codes and ids (~1,100 bytes per 512-d image)
STRUCTURES: dict[str, type[FaissVectors]] = {cls.kind: cls for cls in (ExactVectors, PQRerankVectors, IVFPQVectors)}


def structure_for(count: int, dim: int, settings: IndexSettings) -> type[FaissVectors]:
    """Exact up to the exact limit; past it PQ re-rank, or IVF-PQ on disk when that would not fit the budget."""
    if count <= settings.exact_limit:
        return ExactVectors
    if settings.memory_budget is not None and count * dim * BYTES_PER_DIM > settings.memory_budget:
        return IVFPQVectors
    return PQRerankVectors


def build_structure(ids: np.ndarray, vectors, generation: int, epoch: int = 0,
                    settings: IndexSettings = DEFAULT_SETTINGS) -> FaissVectors:
    return structure_for(len(ids), vectors.shape[1], settings).build(ids, vectors, generation, epoch, settings)


def open_store(settings: IndexSettings, cache_dir: Path, dim: int) -> VectorStore:
    """The index's vector store: a Milvus collection when its settings name one, else the embedded FAISS cache."""
    if settings.store:
        from lookalike.store.milvus import MilvusVectors

        return MilvusVectors(settings.store, dim)
    from lookalike.store.faiss_store import FaissStore

    return FaissStore(cache_dir, dim, settings)
