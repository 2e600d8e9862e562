"""The Python API that the CLI (and the server) share: open an index, update it, search it, compare images."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.errors import IndexUnusableError, ModalityError
from lookalike.indexer import ProgressCallback, UpdateReport, update_index
from lookalike.models.base import Embedder
from lookalike.models.registry import DEFAULT_MODEL, canonical_model_id, load_embedder
from lookalike.search import Query, make_query, query_vector
from lookalike.settings import IndexSettings, parse_size
from lookalike.sources import is_remote, is_url_list, open_source
from lookalike.store.base import VectorStore
from lookalike.store.catalog import Catalog
from lookalike.store.lock import writer_lock
from lookalike.store.policy import open_store

if TYPE_CHECKING:
    from lookalike.cluster import Clustering
    from lookalike.dupes import DuplicateGroup
    from lookalike.fusion import FusedMatch
    from lookalike.recognize import Recognition

INDEX_DIRNAME = ".lookalike"
DB_FILENAME = "index.db"


@dataclass(frozen=True)
class Match:
    id: int
    path: str  # absolute path (or URL) of the image file
    relative_path: str  # relative to the indexed folder: the catalog's key
    score: float  # cosine similarity in [-1, 1], higher = more similar
    copy_score: float | None = None  # copy lookups: score minus β × the query's second-best (lookalike.copyindex)
    verification: dict | None = None  # with verify=True: {"verified", "inliers", "mirrored", "region", ...}

    @property
    def percent(self) -> float:
        """The (cos + 1) / 2 percentage that tutorials show."""
        return (self.score + 1) * 50

    def as_dict(self) -> dict:
        found = {"id": self.id, "path": self.path, "relative_path": self.relative_path,
                 "score": round(self.score, 6), "percent": round(self.percent, 2)}
        if self.copy_score is not None:
            found["copy_score"] = round(self.copy_score, 6)
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
    settings: dict = field(default_factory=dict)  # IndexSettings, as stored
    models: dict | None = None  # what serves what (search, text, dupes and copy lookups), vectors per model
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


def _locate(folder: str | os.PathLike | None, db: str | os.PathLike | None, create: bool
            ) -> tuple[Path, str | None]:
    """(the index's SQLite file, the folder or remote location to index, if named)."""
    remote = folder is not None and (is_remote(str(folder)) or is_url_list(str(folder)))
    if db is not None:
        db_file = resolve_db(db)
    elif remote:
        raise IndexUnusableError(f"{folder} is not a local folder: name where to keep its index with --db PATH")
    elif folder is not None:
        db_file = Path(folder).expanduser().resolve() / INDEX_DIRNAME / DB_FILENAME
    else:
        found = find_index()
        if found is None:
            raise IndexUnusableError(
                "no lookalike index here or in any parent folder: run `lookalike index PHOTOS_DIR` first, "
                "or pass --db PATH"
            )
        db_file = found
    exists = db_file.is_file()
    if not exists and not create:
        raise IndexUnusableError(f"no index at {db_file}: run `lookalike index PHOTOS_DIR` first")
    if not exists and folder is None:
        raise IndexUnusableError(f"no index at {db_file}: name the folder to index")
    location = None if folder is None else str(folder) if remote else str(Path(folder).expanduser().resolve())
    if not exists and not open_source(location).exists():
        raise IndexUnusableError(f"{folder} is not a folder" + ("" if not remote else " that can be listed"))
    return db_file, location


class Index:
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
    ) -> Index:
        """Open (or create) the index of `folder`, stored in `folder/.lookalike/` unless `db` says otherwise.

        With no folder and no db, the index is found from the current directory upwards. `store` and
        `memory_budget` change the index's stored settings (see `IndexSettings`); left out, they stay as stored.
        """
        db_file, location = _locate(folder, db, create)
        # Load the model before writing anything, so a model that can't load leaves no empty index behind.
        main_model = (model or "").split(",")[0].strip() or None  # `--model clip,sscd`: clip is the main model
        new_embedder = None if db_file.is_file() else load_embedder(main_model or DEFAULT_MODEL)
        if new_embedder is not None:
            assert location is not None  # _locate refuses a new index without a folder
            cls._create_file(db_file, location, new_embedder)
        catalog = Catalog(db_file)
        try:
            index = cls._from_catalog(db_file, location, catalog, new_embedder or main_model)
            if new_embedder is not None and new_embedder.id == index.model_id:
                index._embedder = new_embedder  # created just now: keep the model loaded for it
            index.configure(store=store, memory_budget=memory_budget)
            model = index._add_models(model, copy_extras)
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

    @staticmethod
    def _create_file(db_file: Path, root: str, embedder: Embedder) -> None:
        """A new index appears whole or not at all: written under a temporary name, then linked into place
        (`link` fails if another process created it meanwhile; theirs is used). A `kill -9` between the schema
        and the settings used to leave an index without its model, which the next run filled with the default."""
        staging = db_file.with_name(f"{db_file.name}.creating-{os.getpid()}-{threading.get_ident()}")
        try:
            catalog = Catalog(staging)
            Index._record_identity(catalog, db_file, root, embedder)
            catalog.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            catalog.close()
            try:
                os.link(staging, db_file)
            except FileExistsError:  # created by another process meanwhile: use theirs
                pass
            except OSError:  # a file system without hard links (some network and FUSE mounts)
                if not db_file.exists():
                    os.replace(staging, db_file)
        finally:
            for leftover in staging.parent.glob(staging.name + "*"):
                leftover.unlink(missing_ok=True)

    @staticmethod
    def _record_identity(catalog: Catalog, db_file: Path, root: str, embedder: Embedder) -> None:
        """The folder, model, dimension and preprocessing that make a catalog this index."""
        # A local folder is stored relative to the index, so a folder moved with its .lookalike keeps working.
        remote = is_remote(root) or is_url_list(root)
        stored_root = root if remote else os.path.relpath(root, db_file.parent)
        with catalog.transaction() as conn:
            catalog.set_meta(conn, root=stored_root, model=embedder.id, dim=embedder.dim,
                             preprocessing=embedder.preprocessing(), created_at=time.time())
            catalog.bump(conn)

    @classmethod
    def _create(cls, db_file: Path, root: str, catalog: Catalog, embedder: Embedder) -> Index:
        cls._record_identity(catalog, db_file, root, embedder)
        index = cls(db_file, root, catalog, embedder.id)
        index._embedder = embedder
        return index

    def _reset_model(self, model: str) -> None:
        """--reindex: forget every vector and record the new model; the next update embeds everything."""
        embedder = load_embedder(model)
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

    def _add_models(self, models: str | None, copy_extras: list[str] | None) -> str | None:
        """`--model clip,sscd`: the first is the main model (returned, checked by the caller), the others are
        recorded and embedded by the next update (only them); `copy_extras` (dihedral, regions) likewise."""
        from lookalike.copies import EXTRAS

        names = [n for n in (models or "").split(",") if n.strip()]
        recorded = self.catalog.get_meta("models", [])
        others = [canonical_model_id(n) for n in names[1:]]
        for extra_id in others:
            load_embedder(extra_id)  # refuse a model that can't load before recording it
        wanted = [m for m in others if m != self.model_id and m not in recorded]
        extras = sorted(set(copy_extras or ()))
        if bad := [e for e in extras if e not in EXTRAS]:
            raise IndexUnusableError(f"unknown copy variants {bad}: choose from {', '.join(EXTRAS)}")
        if wanted or (copy_extras is not None and extras != self.catalog.get_meta("copy_extras", [])):
            with self.catalog.transaction() as conn:
                if copy_extras is not None:  # other variants: the copy model's rows are re-made
                    conn.execute("DELETE FROM vectors")
                    self.catalog.set_meta(conn, copy_extras=extras)
                self.catalog.set_meta(conn, models=recorded + wanted)
                self.catalog.bump(conn)
        return names[0] if names else None

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

    @property
    def settings(self) -> IndexSettings:
        """What this index is (memory budget, limits, store), as stored in its catalog."""
        stored = self.catalog.get_meta("settings")
        if stored is None and self.catalog.get_meta("store"):  # indexes made before settings had a home
            stored = {"store": self.catalog.get_meta("store")}
        return IndexSettings.from_dict(stored)

    def configure(self, store: str | None = None, memory_budget: str | int | None = None,
                  exact_limit: int | None = None, shard_min_size: int | None = None) -> IndexSettings:
        """Change the index's stored settings (None: keep as stored); every later open uses them."""
        if store is not None:
            from lookalike.store.milvus import parse_store_uri

            parse_store_uri(store)  # refuse a malformed uri before recording it
        budget = None if memory_budget is None else parse_size(memory_budget)
        settings = self.settings.changed(store=store, memory_budget=budget, exact_limit=exact_limit,
                                         shard_min_size=shard_min_size)
        if settings != self.settings:
            with self.catalog.transaction() as conn:
                self.catalog.set_meta(conn, settings=settings.as_dict())
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

    def similar(self, image_id: int, k: int = 10, min_score: float | None = None,
                exact: bool = False) -> SearchResult:
        """More like this: the images nearest an indexed image (itself first)."""
        vector = self.catalog.vector_of(int(image_id))  # NotFoundError if there is none
        name = self.catalog.paths_for([int(image_id)]).get(int(image_id), f"#{image_id}")
        return self.search_vectors(vector[None], [name], k=k, min_score=min_score, exact=exact)[0]

    def duplicates(self, threshold: float | None = None, group_min_score: float | None = None, k: int = 20,
                   keep: Sequence[str] | None = None, verify: bool = False, progress=None) -> list[DuplicateGroup]:
        """Groups of exact and near duplicates, largest first, each with a suggested keeper and the reason it was
        chosen (see `dupes`); `progress(done, total, what)` follows verification and keeper choice."""
        from lookalike.dupes import find_duplicates
        from lookalike.keeper import DEFAULT_KEEP

        return find_duplicates(self, threshold=threshold, group_min_score=group_min_score, k=k,
                               keep=DEFAULT_KEEP if keep is None else keep, verify=verify, progress=progress)

    def clusters(self, k: int | None = None, method: str = "kmeans", min_cluster_size: int = 5,
                 seed: int = 0) -> Clustering:
        """The collection clustered (KMeans with k, automatic k, or HDBSCAN); see `lookalike.cluster`."""
        from lookalike.cluster import cluster_vectors

        ids, matrix, _ = self.catalog.all_vectors(self.dim)
        return cluster_vectors(ids, matrix, k=k, method=method, min_cluster_size=min_cluster_size, seed=seed)

    def recognize(self, images: list[str | os.PathLike], categories: str | os.PathLike,
                  threshold: float | None = None) -> list[Recognition]:
        """Which category (a folder of example folders, or a prompts YAML) each image belongs to, or unknown."""
        from lookalike.recognize import load_categories

        return load_categories(categories, self.embedder).recognize(list(images), threshold)

    def fused_search(self, query: str | Query | None = None, *, image=None, text=None,
                     labels: str | os.PathLike | dict[int, str] | None = None, image_weight: float = 0.5,
                     k: int = 10) -> list[FusedMatch]:
        """Catalogue search: image similarity fused with the similarity of each image's name (file name, or a
        CSV `path,label`) to the query, both standardised per query."""
        from lookalike.fusion import fused_search, load_labels

        names = labels if isinstance(labels, dict) else load_labels(self, labels)
        return fused_search(self, make_query(image=image, text=text, query=query), names,
                            image_weight=image_weight, k=k)

    def find_copies(self, images: list, k: int = 10, min_score: float | None = None) -> list[SearchResult]:
        """Originals of edited copies: the copy model (sscd, pdq, …) with flips, turns and stored variants."""
        from lookalike.copyindex import find_copies

        return find_copies(self, images, k=k, min_score=min_score)

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
        from lookalike.store.faiss_store import VectorCache

        settings = self.settings
        files = [*self.db_file.parent.glob(f"{self.db_file.name}*"), *self._cache_dir().glob("*")]
        size = sum(p.stat().st_size for p in files if p.is_file())
        return IndexInfo(
            root=self.source.location, db=str(self.db_file), model=self.model_id, dim=self.dim,
            images=self.catalog.count(), skipped=len(self.catalog.skipped()), size_bytes=size,
            created_at=self.catalog.get_meta("created_at"), updated_at=self.catalog.get_meta("updated_at"),
            preprocessing=self.catalog.get_meta("preprocessing", {}),
            store=settings.store or IndexInfo.store, settings=settings.describe(), models=self._models_info(),
            search_structure="" if settings.store else VectorCache(self._cache_dir(), settings).describe(),
            threshold=self.threshold().as_dict(),
        )

    def _models_info(self) -> dict:
        from lookalike.copyindex import roles
        from lookalike.store.extra import counts

        return {"serves": roles(self), "vectors": counts(self.catalog)}

    def threshold(self):
        """The near-duplicate threshold in use: the model's default or a calibrated one (`ThresholdInfo`)."""
        from lookalike.thresholds import threshold_info

        return threshold_info(self.model_id, self.catalog)


def open(folder: str | os.PathLike | None = None, db: str | os.PathLike | None = None,  # noqa: A001
         model: str | None = None, create: bool = True, store: str | None = None,
         memory_budget: str | int | None = None) -> Index:
    """`lookalike.open("PHOTOS_DIR")`: see `Index.open`."""
    return Index.open(folder, db=db, model=model, create=create, store=store, memory_budget=memory_budget)


def compare(a, b, model: str = DEFAULT_MODEL, verify: bool = False):
    """Similarity of two images under a model, beside the classic hash answers (see `lookalike.compare`);
    `verify=True` adds the local-feature check and where one image sits in the other."""
    from lookalike.compare import compare_images

    return compare_images(a, b, load_embedder(model), verify=verify)
