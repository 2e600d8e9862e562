"""A Milvus vector store behind the same search interface as the embedded FAISS one.

    --store milvus://HOST:PORT/COLLECTION          a Milvus server or cluster
    --store milvus-lite:///PATH/FILE.db/COLLECTION  Milvus Lite, embedded (pip install milvus-lite)

The SQLite catalog stays the source of truth (paths, metadata, vectors); Milvus holds a copy of the vectors
keyed by catalog id and is brought up to date before a search: additions are upserted, and after deletions or
replaced vectors (the catalog's epoch moved) ids that are gone are deleted and all vectors upserted again.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import numpy as np

from lookalike.errors import LookalikeError
from lookalike.store.base import Neighbours
from lookalike.store.catalog import Catalog

BATCH = 2000
SYNC_KEY = "milvus_sync"


def parse_store_uri(uri: str) -> tuple[str, str]:
    """→ (pymilvus client uri, collection name)."""
    parts = urlsplit(uri)
    if parts.scheme == "milvus":
        collection = parts.path.strip("/")
        if not parts.hostname or not collection:
            raise LookalikeError(f"{uri}: expected milvus://HOST:PORT/COLLECTION")
        return f"http://{parts.hostname}:{parts.port or 19530}", collection
    if parts.scheme == "milvus-lite":
        path, _, collection = parts.path.rpartition("/")
        if not path.endswith(".db") or not collection:
            raise LookalikeError(f"{uri}: expected milvus-lite:///PATH/FILE.db/COLLECTION")
        return path, collection
    raise LookalikeError(f"unknown store {uri}: use milvus://HOST:PORT/COLLECTION or milvus-lite:///PATH.db/NAME")


def index_params_for(client, count: int, lite: bool):
    """FLAT while exact search is cheap; an ANN index as the collection grows."""
    params = client.prepare_index_params()
    if count < 50_000:
        params.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
    elif lite:
        params.add_index(field_name="vector", index_type="IVF_FLAT", metric_type="IP",
                         params={"nlist": int(4 * np.sqrt(count))})
    else:
        params.add_index(field_name="vector", index_type="HNSW", metric_type="IP",
                         params={"M": 16, "efConstruction": 64})
    return params


class MilvusVectors:
    def __init__(self, uri: str, dim: int) -> None:
        try:
            from pymilvus import MilvusClient
        except ImportError as exc:
            raise LookalikeError("the Milvus store needs `pip install 'lookalike[milvus]'` (pymilvus, "
                                 "milvus-lite)") from exc
        self.uri = uri
        client_uri, self.collection = parse_store_uri(uri)
        self.lite = not client_uri.startswith("http")
        self.client = MilvusClient(client_uri)
        self.dim = dim
        self.generation = -1
        self.loaded = False

    def __len__(self) -> int:
        return int(self.client.get_collection_stats(self.collection)["row_count"])

    def _create(self, count: int) -> None:
        from pymilvus import DataType

        if self.client.has_collection(self.collection):
            self.client.drop_collection(self.collection)
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        params = index_params_for(self.client, count, self.lite)
        self.client.create_collection(self.collection, schema=schema, index_params=params)

    def sync(self, catalog: Catalog) -> None:
        """Bring the collection in line with the catalog (cheap when nothing changed)."""
        generation, epoch = catalog.generation(), catalog.epoch()
        if generation == self.generation:
            return
        state = catalog.get_meta(SYNC_KEY, {}) or {}
        ids, vectors, (generation, epoch) = catalog.all_vectors(self.dim)
        fresh = (state.get("uri") != self.uri or state.get("epoch") != epoch
                 or not self.client.has_collection(self.collection))
        if fresh:
            self._create(len(ids))
            new = np.ones(len(ids), dtype=bool)
        else:
            new = ids > int(state.get("max_id", -1))
        for start in range(0, int(new.sum()), BATCH):
            chosen_ids = ids[new][start:start + BATCH]
            chosen = vectors[new][start:start + BATCH].astype(np.float32)
            self.client.upsert(self.collection, [{"id": int(i), "vector": v.tolist()}
                                                 for i, v in zip(chosen_ids, chosen, strict=True)])
        if hasattr(self.client, "flush"):  # make the upserts visible to the next search
            self.client.flush(self.collection)
        if not self.loaded:  # a collection created by another process starts released
            self.client.load_collection(self.collection)
            self.loaded = True
        with catalog.transaction() as conn:
            catalog.set_meta(conn, **{SYNC_KEY: {"uri": self.uri, "epoch": epoch,
                                                 "max_id": int(ids.max()) if len(ids) else -1}})
        self.generation = catalog.generation()

    def describe(self) -> str:
        return f"Milvus collection {self.collection!r} ({'Milvus Lite' if self.lite else 'server'}: {self.uri})"

    def search(self, queries: np.ndarray, k: int, exact: bool = False, candidates: int | None = None
               ) -> Neighbours:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        params = {"metric_type": "IP", "params": {"ef": candidates or max(2 * k, 128), "nprobe": 64}}
        hits = self.client.search(self.collection, data=queries.tolist(), limit=k, search_params=params,
                                  output_fields=["id"])
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -1.0, dtype=np.float32)
        for row, found in enumerate(hits):
            for column, hit in enumerate(found[:k]):
                ids[row, column] = int(hit["id"])
                scores[row, column] = float(hit["distance"])
        width = max((len(found) for found in hits), default=0)
        return Neighbours(ids[:, :width], np.clip(scores[:, :width], -1, 1), "milvus")
