"""The Python API that the CLI (and the server) share: open an index, update it, search it, compare images."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lookalike.errors import IndexUnusableError, ModalityError
from lookalike.indexer import ProgressCallback, UpdateReport, update_index
from lookalike.models.base import Embedder
from lookalike.models.registry import DEFAULT_MODEL, canonical_model_id, load_embedder
from lookalike.search import Query, make_query, query_vector
from lookalike.sources import is_remote, is_url_list, open_source
from lookalike.store.catalog import Catalog
from lookalike.store.vectors import VectorCache, VectorIndex

INDEX_DIRNAME = ".lookalike"
DB_FILENAME = "index.db"


@dataclass(frozen=True)
class Match:
    id: int
    path: str  # absolute path (or URL) of the image file
    relative_path: str  # relative to the indexed folder: the catalog's key
    score: float  # cosine similarity in [-1, 1], higher = more similar
    verification: dict | None = None  # with verify=True: {"verified", "inliers", "mirrored", "region", ...}

    @property
    def percent(self) -> float:
        """The (cos + 1) / 2 percentage that tutorials show."""
        return (self.score + 1) * 50

    def as_dict(self) -> dict:
        found = {"id": self.id, "path": self.path, "relative_path": self.relative_path,
                 "score": round(self.score, 6), "percent": round(self.percent, 2)}
        if self.verification is not None:
            found["verification"] = self.verification
        return found


@dataclass(frozen=True)
class SearchResult:
    query: str
    matches: list[Match]
    method: str  # "exact" or the ANN structure used

    def as_dict(self) -> dict:
        return {"query": self.query, "method": self.method, "results": [m.as_dict() for m in self.matches]}


@dataclass(frozen=True)
class IndexInfo:
    root: str
    db: str
    model: str
    dim: int
    images: int
    skipped: int
    size_bytes: int
    created_at: float | None
    updated_at: float | None
    preprocessing: dict
    store: str = "embedded (SQLite + FAISS)"
    search_structure: str = ""  # as of the last search ('' before the first)
    threshold: dict | None = None  # the near-duplicate threshold in use and its source (see thresholds.py)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def find_index(start: str | os.PathLike = ".") -> Path | None:
    """The nearest `.lookalike/index.db` at or above `start`, the way git finds `.git`."""
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        candidate = folder / INDEX_DIRNAME / DB_FILENAME
        if candidate.is_file():
            return candidate
    return None


def resolve_db(db: str | os.PathLike | None) -> Path:
    """`--db` names either the SQLite file or a folder to keep `index.db` in."""
    path = Path(db).expanduser()
    if path.suffix in (".db", ".sqlite", ".sqlite3") or path.is_file():
        return path.resolve()
    if not (path / DB_FILENAME).is_file() and (path / INDEX_DIRNAME / DB_FILENAME).is_file():
        return (path / INDEX_DIRNAME / DB_FILENAME).resolve()  # --db PHOTOS_DIR: the index inside it
    return (path / DB_FILENAME).resolve()


class Index:
    """A folder of images and its persistent index. Thread-safe for concurrent searches."""

    def __init__(self, db_file: Path, location: str, catalog: Catalog, model_id: str) -> None:
        self.db_file = db_file
        self.source = open_source(location)  # a local folder, an fsspec URL or a URL list
        self.root = self.source.root if self.source.is_local else None  # local folders only
        self.catalog = catalog
        self.model_id = model_id
        self._embedder: Embedder | None = None
        self._vectors: VectorIndex | None = None
        self._lock = threading.RLock()

    # -- opening -----------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        folder: str | os.PathLike | None = None,
        db: str | os.PathLike | None = None,
        model: str | None = None,
        create: bool = True,
        reindex: bool = False,
        store: str | None = None,
    ) -> Index:
        """Open (or create) the index of `folder`, stored in `folder/.lookalike/` unless `db` says otherwise.

        With no folder and no db, the index is found from the current directory upwards.
        """
        remote = folder is not None and (is_remote(str(folder)) or is_url_list(str(folder)))
        if db is not None:
            db_file = resolve_db(db)
        elif remote:
            raise IndexUnusableError(f"{folder} is not a local folder: name where to keep its index with --db PATH")
        elif folder is not None:
            db_file = Path(folder).expanduser().resolve() / INDEX_DIRNAME / DB_FILENAME
        else:
            db_file = find_index()
            if db_file is None:
                raise IndexUnusableError(
                    "no lookalike index here or in any parent folder: run `lookalike index PHOTOS_DIR` first, "
                    "or pass --db PATH"
                )
        exists = db_file.is_file()
        if not exists and not create:
            raise IndexUnusableError(f"no index at {db_file}: run `lookalike index PHOTOS_DIR` first")
        if not exists and folder is None:
            raise IndexUnusableError(f"no index at {db_file}: name the folder to index")
        location = None if folder is None else str(folder) if remote else str(Path(folder).expanduser().resolve())
        if not exists and not open_source(location).exists():
            raise IndexUnusableError(f"{folder} is not a folder" + ("" if not remote else " that can be listed"))
        # Load the model before writing anything, so a model that can't load leaves no empty index behind.
        new_embedder = None if exists else load_embedder(model or DEFAULT_MODEL)
        catalog = Catalog(db_file)
        stored_root = catalog.get_meta("root")
        if stored_root is None:
            if folder is None:
                raise IndexUnusableError(f"{db_file} is not a lookalike index (no folder recorded)")
            embedder = new_embedder or load_embedder(model or DEFAULT_MODEL)
            index = cls._create(db_file, location, catalog, embedder)
            if store is not None:
                index.use_store(store)
            return index
        stored_remote = is_remote(stored_root) or is_url_list(stored_root)
        root = stored_root if stored_remote else str((db_file.parent / stored_root).resolve())
        if location is not None and location != root:
            raise IndexUnusableError(
                f"the index at {db_file} belongs to {root}, not {location}; use another --db for this folder"
            )
        index = cls(db_file, root, catalog, catalog.get_meta("model"))
        if store is not None:
            index.use_store(store)
        if model is not None and canonical_model_id(model) != index.model_id:
            if not reindex:
                raise IndexUnusableError(
                    f"this index was built with model {index.model_id}, not {canonical_model_id(model)}. "
                    f"To re-index with the new model run `lookalike index {root} --model {model} --reindex` "
                    "(or keep both with --db OTHER_PATH); to use this index, drop --model."
                )
            index._reset_model(model)
        return index

    @classmethod
    def _create(cls, db_file: Path, root: str, catalog: Catalog, embedder: Embedder) -> Index:
        # A local folder is stored relative to the index, so a folder moved with its .lookalike keeps working.
        remote = is_remote(root) or is_url_list(root)
        stored_root = root if remote else os.path.relpath(root, db_file.parent)
        with catalog.transaction() as conn:
            catalog.set_meta(conn, root=stored_root, model=embedder.id, dim=embedder.dim,
                             preprocessing=embedder.preprocessing(), created_at=time.time())
            catalog.bump(conn)
        index = cls(db_file, root, catalog, embedder.id)
        index._embedder = embedder
        return index

    def _reset_model(self, model: str) -> None:
        """--reindex: forget every vector and record the new model; the next update embeds everything."""
        embedder = load_embedder(model)
        with self.catalog.transaction() as conn:
            conn.execute("DELETE FROM images")
            conn.execute("DELETE FROM skipped")
            self.catalog.set_meta(conn, model=embedder.id, dim=embedder.dim, preprocessing=embedder.preprocessing(),
                                  thresholds={}, calibration={})  # a calibration belongs to the old vectors
            self.catalog.bump(conn)
        self.model_id = embedder.id
        self._embedder = embedder
        self._vectors = None

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- model and vectors ---------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = load_embedder(self.model_id)
        return self._embedder

    @property
    def dim(self) -> int:
        return int(self.catalog.get_meta("dim"))

    def use_store(self, uri: str) -> None:
        """Keep the vectors in an external store (e.g. milvus://host:port/collection) from now on."""
        from lookalike.store.milvus import parse_store_uri

        parse_store_uri(uri)  # refuse a malformed uri before recording it
        with self.catalog.transaction() as conn:
            self.catalog.set_meta(conn, store=uri)
        self._vectors = None

    def vectors(self):
        """The search structure, reloaded when another process (or `update`) changed the catalog: the
        embedded FAISS index, or the external store named at index time (`--store`)."""
        store = self.catalog.get_meta("store")
        if store:
            from lookalike.store.milvus import MilvusVectors

            with self._lock:
                if not isinstance(self._vectors, MilvusVectors) or self._vectors.uri != store:
                    self._vectors = MilvusVectors(store, self.dim)
                self._vectors.sync(self.catalog)
                return self._vectors
        with self._lock:
            stale = not isinstance(self._vectors, VectorIndex)
            if stale or self._vectors.generation != self.catalog.generation():
                self._vectors = VectorCache(self._cache_dir()).load(self.catalog, self.dim)
            return self._vectors

    def _cache_dir(self) -> Path:
        return self.db_file.parent / f"{self.db_file.stem}.cache"

    # -- verbs -------------------------------------------------------------------------------------
    def update(
        self, progress: ProgressCallback | None = None, include_hidden: bool = False, batch_size: int = 32,
        engine=None,
    ) -> UpdateReport:
        """Embed new and changed files, reuse vectors of moved ones, drop deleted ones.

        `engine` embeds elsewhere (e.g. `lookalike.distributed.RayEngine`); by default, in this process."""
        if not self.source.exists():
            raise IndexUnusableError(f"the indexed folder {self.source.location} is missing; nothing was changed")
        with self._lock:
            return update_index(self.catalog, self.source, lambda: self.embedder, batch_size=batch_size,
                                include_hidden=include_hidden, progress=progress, engine=engine)

    def search(self, query: str | Query | None = None, *, image=None, text=None, k: int = 10,
               min_score: float | None = None, exact: bool = False, verify: bool = False) -> SearchResult:
        """Top-k images for a query: an image (path, URL, bytes, PIL), a text, or a query expression.

        Large collections are searched approximately (PQ fast-scan + float16 re-ranking); `exact=True` forces an
        exhaustive search. `verify=True` checks a wider pool with local features and puts proven copies of the
        query image first (see `lookalike.rerank`)."""
        query = make_query(image=image, text=text, query=query)
        return self.search_many([query], k=k, min_score=min_score, exact=exact, verify=verify)[0]

    def search_many(self, queries: list[Query], k: int = 10, min_score: float | None = None,
                    exact: bool = False, verify: bool = False) -> list[SearchResult]:
        import numpy as np

        from lookalike.errors import QueryError

        if k < 1:
            raise QueryError(f"k must be at least 1 (got {k})")
        if verify:
            return [self._verified_search(query, k, min_score, exact) for query in queries]

        for query in queries:
            if "text" in query.modalities and "text" not in self.embedder.modalities:
                raise ModalityError(
                    f"this index uses {self.model_id}, which embeds images only, so it cannot search by text "
                    f"({query.label!r}). Re-index with a text-capable model: "
                    f"`lookalike index {self.source.location} --model clip --reindex`."
                )
        vectors = np.stack([query_vector(self.embedder, query) for query in queries])
        return self.search_vectors(vectors, [q.label for q in queries], k=k, min_score=min_score, exact=exact)

    def search_vectors(self, vectors, labels: list[str], k: int = 10, min_score: float | None = None,
                       exact: bool = False) -> list[SearchResult]:
        neighbours = self.vectors().search(vectors, k, exact=exact)
        paths = self.catalog.paths_for({int(i) for i in neighbours.ids.ravel() if i >= 0})
        results = []
        for label, ids, scores in zip(labels, neighbours.ids, neighbours.scores, strict=True):
            matches = [
                Match(int(i), self.source.full_path(paths[int(i)]), paths[int(i)], float(s))
                for i, s in zip(ids, scores, strict=True)
                if i >= 0 and int(i) in paths and (min_score is None or s >= min_score)
            ]
            results.append(SearchResult(label, matches, neighbours.method))
        return results

    def _verified_search(self, query: Query, k: int, min_score: float | None, exact: bool) -> SearchResult:
        from lookalike.errors import QueryError
        from lookalike.rerank import pool_size, query_image_of, verify_matches

        image = query_image_of(query)
        if image is None:
            raise QueryError(f"--verify needs a query with exactly one image ({query.label!r} has none or several)")
        [found] = self.search_many([query], k=pool_size(k), min_score=min_score, exact=exact)
        return SearchResult(found.query, verify_matches(self, image, found.matches, k), found.method + "+verify")

    def read(self, relative_path: str):
        """What `load_image` needs to read an indexed image: a local path, or its bytes from a remote source."""
        return self.source.image_input(relative_path)

    def info(self) -> IndexInfo:
        files = [*self.db_file.parent.glob(f"{self.db_file.name}*"), *self._cache_dir().glob("*")]
        size = sum(p.stat().st_size for p in files if p.is_file())
        return IndexInfo(
            root=self.source.location, db=str(self.db_file), model=self.model_id, dim=self.dim,
            images=self.catalog.count(), skipped=len(self.catalog.skipped()), size_bytes=size,
            created_at=self.catalog.get_meta("created_at"), updated_at=self.catalog.get_meta("updated_at"),
            preprocessing=self.catalog.get_meta("preprocessing", {}),
            store=self.catalog.get_meta("store") or IndexInfo.store,
            search_structure=VectorCache(self._cache_dir()).describe(), threshold=self.threshold().as_dict(),
        )

    def threshold(self):
        """The near-duplicate threshold in use: the model's default or a calibrated one (`ThresholdInfo`)."""
        from lookalike.thresholds import threshold_info

        return threshold_info(self.model_id, self.catalog)


def open(folder: str | os.PathLike | None = None, db: str | os.PathLike | None = None,  # noqa: A001
         model: str | None = None, create: bool = True) -> Index:
    """`lookalike.open("PHOTOS_DIR")`: see `Index.open`."""
    return Index.open(folder, db=db, model=model, create=create)


def compare(a, b, model: str = DEFAULT_MODEL, verify: bool = False):
    """Similarity of two images under a model, beside the classic hash answers (see `lookalike.compare`);
    `verify=True` adds the local-feature check and where one image sits in the other."""
    from lookalike.compare import compare_images

    return compare_images(a, b, load_embedder(model), verify=verify)
