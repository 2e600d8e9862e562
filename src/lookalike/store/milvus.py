"""A Milvus vector store behind the same search interface as the embedded FAISS one.

    --store milvus://HOST:PORT/COLLECTION          a Milvus server or cluster
    --store milvus-lite:///PATH/FILE.db/COLLECTION  Milvus Lite, embedded (pip install milvus-lite)

The SQLite catalog stays the source of truth (paths, metadata, vectors); Milvus holds a copy of the vectors
keyed by catalog id, each with a 64-bit digest of its vector, and is brought up to date before a search:
- nothing but additions since the last sync (the catalog's epoch did not move): the new ids are upserted;
- deletions or replaced vectors (the epoch moved), or a collection whose size disagrees with the catalog (a
  server that lost writes, someone else's deletes): the collection is reconciled against the catalog — ids
  Milvus has but the catalog lacks are deleted, ids it lacks, holds twice, or holds with another digest are
  upserted. The collection is never dropped for this, so searches keep working while it catches up.
Every step is idempotent and the sync state is recorded in the catalog only after Milvus acknowledged it, so a
server that dies mid-sync leaves the catalog as it was and the next sync converges: nothing lost, nothing twice.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import numpy as np

from lookalike.errors import LookalikeError
from lookalike.store.base import Neighbours
from lookalike.store.catalog import Catalog

BATCH = 2000
SYNC_KEY = "milvus_sync"
ANN_FROM = 50_000  # vectors; below this an exact FLAT search is fast enough, and exact
TIMEOUT = 120.0  # seconds per sync call, retries included: a server that is down fails the sync, not hangs it


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


def index_type_for(count: int, lite: bool) -> str:
    """FLAT while exact search is cheap; an ANN index as the collection grows (HNSW on a server)."""
    if count < ANN_FROM:
        return "FLAT"
    return "IVF_FLAT" if lite else "HNSW"


def index_params_for(client, count: int, lite: bool):
    params = client.prepare_index_params()
    kind = index_type_for(count, lite)
    options = {"IVF_FLAT": {"nlist": int(4 * np.sqrt(count))}, "HNSW": {"M": 16, "efConstruction": 64}}
    params.add_index(field_name="vector", index_type=kind, metric_type="IP", params=options.get(kind, {}))
    return params


def digests(vectors: np.ndarray) -> np.ndarray:
    """A 64-bit fingerprint per stored (float16) vector: tells a replaced vector from the one Milvus holds."""
    words = np.ascontiguousarray(vectors, np.float16).view(np.uint16).astype(np.uint64)
    weights = np.random.default_rng(16).integers(1, 2**63, size=words.shape[1], dtype=np.uint64) | np.uint64(1)
    with np.errstate(over="ignore"):  # a random linear hash modulo 2**64, vectorised
        return (words * weights).sum(axis=1, dtype=np.uint64).view(np.int64)


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

    def __len__(self) -> int:
        return self._count()

    def _count(self) -> int:
        [row] = self.client.query(self.collection, filter="", output_fields=["count(*)"],
                                  consistency_level="Strong", timeout=TIMEOUT)
        return int(row["count(*)"])

    def _fits(self) -> bool:
        """The collection exists with this store's schema (id, digest, vector of this dimension)."""
        if not self.client.has_collection(self.collection, timeout=TIMEOUT):
            return False
        fields = {f["name"]: f for f in self.client.describe_collection(self.collection, timeout=TIMEOUT)["fields"]}
        return "digest" in fields and int(fields.get("vector", {}).get("params", {}).get("dim", -1)) == self.dim

    def _create(self, count: int) -> None:
        from pymilvus import DataType

        if self.client.has_collection(self.collection):  # another schema: rebuilt from the catalog
            self.client.drop_collection(self.collection)
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("digest", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        params = index_params_for(self.client, count, self.lite)
        # Strong: a search right after a sync sees everything the sync wrote
        self.client.create_collection(self.collection, schema=schema, index_params=params,
                                      consistency_level="Strong")

    def sync(self, catalog: Catalog) -> None:
        """Bring the collection in line with the catalog (cheap when nothing changed)."""
        if catalog.generation() == self.generation:
            return
        import grpc
        from pymilvus.exceptions import MilvusException

        try:
            self.generation = self._sync(catalog)
        except (MilvusException, grpc.RpcError) as exc:
            raise LookalikeError(
                f"Milvus at {self.uri} failed during a sync: {exc}. The catalog is unchanged: check the server "
                f"and run again (any search or `lookalike index`); the next sync picks up where this one "
                f"stopped.") from exc

    def _sync(self, catalog: Catalog) -> int:
        """→ the catalog generation the collection now matches."""
        state = catalog.get_meta(SYNC_KEY, {}) or {}
        if not self._fits():
            self._create(catalog.count())
            state = {}
        self.client.load_collection(self.collection, timeout=TIMEOUT)  # a restarted server may hold it released
        wrote = 0
        if state.get("uri") == self.uri and state.get("epoch") == catalog.epoch():
            ids, vectors, (generation, epoch) = catalog.vectors_after(int(state["max_id"]), self.dim)
            wrote = self._upsert(ids, vectors)
            max_id = max(int(state["max_id"]), int(ids.max()) if len(ids) else -1)
            consistent = self._count() == catalog.count()
        else:
            consistent = False
        if not consistent:  # the epoch moved, or Milvus disagrees with the catalog: reconcile
            ids, vectors, (generation, epoch) = catalog.all_vectors(self.dim)
            wrote += self._reconcile(ids, vectors)
            max_id = int(ids.max()) if len(ids) else -1
        if wrote:
            self.client.flush(self.collection, timeout=TIMEOUT)  # seal the new rows so the server indexes them
        self._ensure_index(catalog.count())
        with catalog.transaction() as conn:
            catalog.set_meta(conn, **{SYNC_KEY: {"uri": self.uri, "epoch": epoch, "max_id": max_id}})
        return generation

    def _upsert(self, ids: np.ndarray, vectors: np.ndarray) -> int:
        marks = digests(vectors)
        for start in range(0, len(ids), BATCH):
            rows = vectors[start:start + BATCH].astype(np.float32)
            self.client.upsert(self.collection, [
                {"id": int(i), "digest": int(d), "vector": v.tolist()}
                for i, d, v in zip(ids[start:start + BATCH], marks[start:start + BATCH], rows, strict=True)],
                timeout=TIMEOUT)
        return len(ids)

    def _held(self) -> tuple[dict[int, int], set[int]]:
        """(id → digest of every row Milvus holds, ids it holds more than once)."""
        held, twice = {}, set()
        rows = self.client.query_iterator(self.collection, batch_size=BATCH, filter="id >= 0",
                                          output_fields=["id", "digest"], consistency_level="Strong",
                                          timeout=TIMEOUT)
        while batch := rows.next():
            for row in batch:
                if row["id"] in held:
                    twice.add(row["id"])
                held[row["id"]] = row["digest"]
        rows.close()
        return held, twice

    def _reconcile(self, ids: np.ndarray, vectors: np.ndarray) -> int:
        held, twice = self._held()
        gone = sorted(set(held) - set(ids.tolist()))
        for start in range(0, len(gone), BATCH):
            self.client.delete(self.collection, ids=gone[start:start + BATCH], timeout=TIMEOUT)
        marks = digests(vectors)
        stale = np.asarray([held.get(int(i)) != int(d) or int(i) in twice for i, d in zip(ids, marks, strict=True)],
                           dtype=bool)
        return self._upsert(ids[stale], vectors[stale]) + len(gone)

    def _ensure_index(self, count: int) -> None:
        """Switch the index type when the collection grew past (or shrank below) `ANN_FROM`."""
        wanted = index_type_for(count, self.lite)
        if self.client.describe_index(self.collection, "vector", timeout=TIMEOUT).get("index_type") != wanted:
            self.client.release_collection(self.collection, timeout=TIMEOUT)
            self.client.drop_index(self.collection, "vector", timeout=TIMEOUT)
            self.client.create_index(self.collection, index_params_for(self.client, count, self.lite),
                                     timeout=TIMEOUT)
            self.client.load_collection(self.collection, timeout=TIMEOUT)

    def describe(self) -> str:
        return f"Milvus collection {self.collection!r} ({'Milvus Lite' if self.lite else 'server'}: {self.uri})"

    def search(self, queries: np.ndarray, k: int, exact: bool = False, candidates: int | None = None
               ) -> Neighbours:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        params = {"metric_type": "IP", "params": {"ef": candidates or max(2 * k, 128), "nprobe": 64}}
        hits = self._search(queries, k, params)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -1.0, dtype=np.float32)
        for row, found in enumerate(hits):
            for column, hit in enumerate(found[:k]):
                ids[row, column] = int(hit["id"])
                scores[row, column] = float(hit["distance"])
        width = max((len(found) for found in hits), default=0)
        return Neighbours(ids[:, :width], np.clip(scores[:, :width], -1, 1), "milvus")

    def _search(self, queries: np.ndarray, k: int, params: dict) -> list:
        """A restarted server holds the collection released until someone loads it: load it, search again."""
        from pymilvus.exceptions import MilvusException

        def search() -> list:
            return self.client.search(self.collection, data=queries.tolist(), limit=k, search_params=params,
                                      output_fields=["id"], timeout=TIMEOUT)

        try:
            return search()
        except MilvusException as exc:
            if "not loaded" not in str(exc):
                raise LookalikeError(f"Milvus at {self.uri} failed to search: {exc}. Check the server; the "
                                     f"catalog is intact") from exc
            self.client.load_collection(self.collection, timeout=TIMEOUT)
            return search()
