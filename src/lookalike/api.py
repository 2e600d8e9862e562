"""The Python API that the CLI (and the server) share: open an index, update it, search it, compare images."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from lookalike.creation import create_index_file, record_identity
from lookalike.errors import IndexUnusableError, ModalityError
from lookalike.indexer import ProgressCallback, UpdateReport, update_index
from lookalike.location import find_index, locate, resolve_db
from lookalike.models.base import Embedder
from lookalike.models.registry import DEFAULT_MODEL, canonical_model_id, load_embedder
from lookalike.records import IndexInfo, Match, SearchResult
from lookalike.search import Query, make_query, query_vector
from lookalike.settings import IndexSettings, parse_size
from lookalike.sources import is_remote, is_url_list, open_source
from lookalike.store.base import VectorStore
from lookalike.store.catalog import Catalog
from lookalike.store.lock import writer_lock
from lookalike.store.policy import open_store
from lookalike.verbs import CollectionVerbs

__all__ = ["Index", "IndexInfo", "Match", "SearchResult", "compare", "find_index", "open", "resolve_db"]


class Index(CollectionVerbs):
    """A folder of images and its persistent index. Thread-safe for concurrent searches."""

    def __init__(self, db_file: Path, location: str, catalog: Catalog, model_id: str) -> None:
        self.db_file = db_file
        self.source = open_source(location)  # a local folder, an fsspec URL or a URL list
        self.root = self.source.root if self.source.is_local else None  # local folders only
        self.catalog = catalog
        self.model_id = model_id
        self._embedder: Embedder | None = None
        self._store: VectorStore | None = None
        self._store_settings: IndexSettings | None = None
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
        memory_budget: str | int | None = None,
        copy_extras: list[str] | None = None,
        runtime: str | None = None,
    ) -> Index:
        """Open (or create) the index of `folder`, stored in `folder/.lookalike/` unless `db` says otherwise.

        With no folder and no db, the index is found from the current directory upwards. `store`,
        `memory_budget`, `runtime`, the models after the first of `model` ('clip,sscd') and `copy_extras` change
        the index's stored settings (see `IndexSettings`); left out, they stay as stored.
        """
        db_file, location = locate(folder, db, create)
        # Load the model before writing anything, so a model that can't load leaves no empty index behind.
        main_model = (model or "").split(",")[0].strip() or None  # `--model clip,sscd`: clip is the main model
        new_embedder = None if db_file.is_file() else load_embedder(main_model or DEFAULT_MODEL, runtime)
        if new_embedder is not None:
            assert location is not None  # _locate refuses a new index without a folder
            create_index_file(db_file, location, new_embedder)
        catalog = Catalog(db_file)
        try:
            index = cls._from_catalog(db_file, location, catalog, new_embedder or main_model)
            if new_embedder is not None and new_embedder.id == index.model_id:
                index._embedder = new_embedder  # created just now: keep the model loaded for it
            index.configure(store=store, memory_budget=memory_budget, runtime=runtime)
            from lookalike.copyindex import add_models

            model = add_models(index, model, copy_extras)
            if model is not None and canonical_model_id(model) != index.model_id:
                if not reindex:
                    raise IndexUnusableError(
                        f"this index was built with model {index.model_id}, not {canonical_model_id(model)}. "
                        f"To re-index with the new model run `lookalike index {index.source.location} --model "
                        f"{model} --reindex` (or keep both with --db OTHER_PATH); to use this index, drop --model."
                    )
                index._reset_model(model)
            return index
        except BaseException:
            catalog.close()  # a refused open leaves no connection behind
            raise

    @classmethod
    def _from_catalog(cls, db_file: Path, location: str | None, catalog: Catalog,
                      embedder: Embedder | str | None) -> Index:
        """The index a catalog holds, or a new one (with `embedder`, or the model it names) if it is empty."""
        stored_root = catalog.get_meta("root")
        if stored_root is None:
            if location is None:
                raise IndexUnusableError(f"{db_file} is not a lookalike index (no folder recorded)")
            if not isinstance(embedder, Embedder):
                embedder = load_embedder(embedder or DEFAULT_MODEL)
            return cls._create(db_file, location, catalog, embedder)
        stored_remote = is_remote(stored_root) or is_url_list(stored_root)
        root = stored_root if stored_remote else str((db_file.parent / stored_root).resolve())
        if location is not None and location != root:
            raise IndexUnusableError(
                f"the index at {db_file} belongs to {root}, not {location}; use another --db for this folder"
            )
        return cls(db_file, root, catalog, catalog.get_meta("model"))

    @classmethod
    def _create(cls, db_file: Path, root: str, catalog: Catalog, embedder: Embedder) -> Index:
        record_identity(catalog, db_file, root, embedder)
        index = cls(db_file, root, catalog, embedder.id)
        index._embedder = embedder
        return index

    def _reset_model(self, model: str) -> None:
        """--reindex: forget every vector and record the new model; the next update embeds everything."""
        embedder = load_embedder(model, self.settings.runtime)
        with writer_lock(self.db_file), self.catalog.transaction() as conn:
            conn.execute("DELETE FROM vectors")
            conn.execute("DELETE FROM images")
            conn.execute("DELETE FROM skipped")
            self.catalog.set_meta(conn, model=embedder.id, dim=embedder.dim, preprocessing=embedder.preprocessing(),
                                  thresholds={}, calibration={})  # a calibration belongs to the old vectors
            self.catalog.bump(conn)
        self.model_id = embedder.id
        self._embedder = embedder
        self._store = None

    def handle(self) -> Index:
        """Another handle on this index with a connection of its own (and this one's loaded model), for work in
        another thread that must not wait for this handle's lock. Close it when done."""
        other = Index(self.db_file, self.source.location, Catalog(self.db_file), self.model_id)
        other._embedder = self._embedder
        return other

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
            self._embedder = load_embedder(self.model_id, self.settings.runtime)
        return self._embedder

    @property
    def dim(self) -> int:
        return int(self.catalog.get_meta("dim"))

    @property
    def settings(self) -> IndexSettings:
        """What this index is (memory budget, limits, store, runtime, extra models), as stored in its catalog."""
        stored = self.catalog.get_meta("settings")
        if stored is None:  # indexes made before settings had a home kept these beside the others
            stored = {key: value for key, value in (("store", self.catalog.get_meta("store")),
                                                    ("models", self.catalog.get_meta("models")),
                                                    ("copy_variants", self.catalog.get_meta("copy_extras")))
                      if value}
        return IndexSettings.from_dict(stored)

    def configure(self, store: str | None = None, memory_budget: str | int | None = None,
                  exact_limit: int | None = None, shard_min_size: int | None = None,
                  runtime: str | None = None) -> IndexSettings:
        """Change the index's stored settings (None: keep as stored); every later open uses them. Models and
        copy variants change through `Index.open(model="clip,sscd", copy_extras=[...])`: they need vectors."""
        if store is not None:
            from lookalike.store.milvus import parse_store_uri

            parse_store_uri(store)  # refuse a malformed uri before recording it
        budget = None if memory_budget is None else parse_size(memory_budget)
        stored = self.settings
        settings = stored.changed(store=store, memory_budget=budget, exact_limit=exact_limit,
                                  shard_min_size=shard_min_size, runtime=runtime)
        if settings != stored:
            with self.catalog.transaction() as conn:
                self.catalog.set_meta(conn, settings=settings.as_dict())
            if settings.runtime != stored.runtime:
                self._embedder = None  # the next use loads the model on the runtime now stored
        return settings

    def vectors(self) -> VectorStore:
        """The vector store, synced with the catalog (another process or `update` may have changed it): the
        embedded FAISS structure, or the external store named in the index's settings."""
        settings = self.settings
        with self._lock:
            if self._store is None or self._store_settings != settings:
                self._store = open_store(settings, self._cache_dir(), self.dim)
                self._store_settings = settings
            self._store.sync(self.catalog)
            return self._store

    def _cache_dir(self) -> Path:
        return self.db_file.parent / f"{self.db_file.stem}.cache"

    # -- verbs -------------------------------------------------------------------------------------
    def update(
        self, progress: ProgressCallback | None = None, include_hidden: bool = False, batch_size: int = 32,
        engine=None, wait: bool = True, on_wait: Callable[[str], None] | None = None,
    ) -> UpdateReport:
        """Embed new and changed files, reuse vectors of moved ones, drop deleted ones.

        `engine` embeds elsewhere (e.g. `lookalike.distributed.RayEngine`); by default, in this process.
        One writer at a time: while another process updates this index, `on_wait(who)` is called and this one
        waits (or, with `wait=False`, raises IndexBusyError)."""
        if not self.source.exists():
            raise IndexUnusableError(f"the indexed folder {self.source.location} is missing; nothing was changed")
        from lookalike.copyindex import copy_extras, copy_model, fill, index_models

        with self._lock, writer_lock(self.db_file, wait=wait, on_wait=on_wait):
            report = update_index(self.catalog, self.source, lambda: self.embedder, batch_size=batch_size,
                                  include_hidden=include_hidden, progress=progress, engine=engine)
            for model_id in index_models(self)[1:]:
                report.embedded += fill(self, model_id, progress)
            if copy_model(self) == self.model_id and (copy_extras(self) or self.model_id == "pdq"):
                fill(self, self.model_id, progress)  # files the indexer reused (copies) get their variants
            return report

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

    def read(self, relative_path: str):
        """What `load_image` needs to read an indexed image: a local path, or its bytes from a remote source."""
        return self.source.image_input(relative_path)

    def info(self) -> IndexInfo:
        from lookalike.describe import index_info

        return index_info(self)


def open(folder: str | os.PathLike | None = None, db: str | os.PathLike | None = None,  # noqa: A001
         model: str | None = None, create: bool = True, store: str | None = None,
         memory_budget: str | int | None = None, runtime: str | None = None) -> Index:
    """`lookalike.open("PHOTOS_DIR")`: see `Index.open`."""
    return Index.open(folder, db=db, model=model, create=create, store=store, memory_budget=memory_budget,
                      runtime=runtime)


def compare(a, b, model: str = DEFAULT_MODEL, verify: bool = False):
    """Similarity of two images under a model, beside the classic hash answers (see `lookalike.compare`);
    `verify=True` adds the local-feature check and where one image sits in the other."""
    from lookalike.compare import compare_images

    return compare_images(a, b, load_embedder(model), verify=verify)
