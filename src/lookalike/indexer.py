"""The incremental indexing pipeline: scan → diff against the catalog → decode in threads (or worker processes,
`lookalike.preparing`) → embed in batches.

Only new or changed files are embedded. A changed (mtime, size) is confirmed by a content hash, so a
touched file keeps its vector and a moved, renamed or copied file reuses the vector it already has.
Each batch is committed on its own: killing the run loses at most one batch, and the next run resumes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from lookalike.images import ScannedFile
from lookalike.memory import return_large_buffers_to_the_os
from lookalike.models.base import Embedder
from lookalike.models.runtime import runtime_of
from lookalike.preparing import (
    Prepared,
    bounded_map,
    concurrent_calls,
    prepare_batches,
    stack_prepared,
    worker_processes,
)
from lookalike.sources import LocalSource, open_source
from lookalike.store.catalog import Catalog, NewImage

Item = TypeVar("Item")

ProgressCallback = Callable[[int, int], None]  # (done, total) of the files that need work


@dataclass
class UpdateReport:
    added: int = 0  # embedded for the first time
    updated: int = 0  # same path, new content, re-embedded
    moved: int = 0  # same content at a new path: vector reused
    reused: int = 0  # a copy of an already indexed file: vector reused
    removed: int = 0  # gone from the folder
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    embedded: int = 0  # how many images went through the model in this run

    def as_dict(self) -> dict:
        return {
            "added": self.added, "updated": self.updated, "moved": self.moved, "reused": self.reused,
            "removed": self.removed, "unchanged": self.unchanged, "embedded": self.embedded,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
        }


@dataclass
class Embedded(Generic[Item]):
    """One file after the model: its vector, or why it has none."""

    key: Item  # whatever the caller tracks the image by (a ScannedFile, a path)
    vector: np.ndarray | None
    size: tuple[int, int] = (0, 0)
    error: str | None = None
    variants: dict | None = None  # copy variants the model made on the way (PDQ's turns): kind → vector


def default_workers() -> int:
    return min(8, (os.cpu_count() or 2) + 2)


def update_index(
    catalog: Catalog,
    root,
    embedder: Embedder | Callable[[], Embedder],
    batch_size: int = 32,
    include_hidden: bool = False,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
    engine=None,
) -> UpdateReport:
    """`root` is a folder, a URL, or a source from `lookalike.sources.open_source`."""
    source = root if hasattr(root, "scan") else open_source(root)
    report = UpdateReport()
    scanned = source.scan(include_hidden=include_hidden)
    report.skipped.extend(scanned.problems)
    known = catalog.rows()
    skipped_before = catalog.skipped()
    present = {f.relpath for f in scanned.files}
    unreadable = {path for path, _ in scanned.problems}

    candidates = _changed_files(scanned.files, known, skipped_before, report)
    gone = {path: row for path, row in known.items() if path not in present and path not in unreadable}

    with ThreadPoolExecutor(workers or default_workers()) as pool:
        hashes = dict(zip(candidates, pool.map(lambda f: _digest_or_reason(source, f), candidates), strict=True))
    to_embed = _apply_cheap_changes(catalog, known, gone, candidates, hashes, report)
    if progress:
        progress(0, len(to_embed))
    if to_embed:  # a model provider is called only now that something needs the model
        model = embedder if isinstance(embedder, Embedder) else embedder()
        if engine is not None:  # e.g. RayEngine: embedding elsewhere, committing here
            _commit_all(engine(to_embed, source, model.id, runtime_of(model)), catalog, known, hashes, report,
                        progress, len(to_embed))
        else:  # processes first, while this thread is alone (lookalike.preparing.worker_processes)
            with worker_processes(model, len(to_embed), isinstance(source, LocalSource)) as processes, \
                    ThreadPoolExecutor(workers or default_workers()) as pool:
                batches = embedded_batches(processes or pool, to_embed, model, batch_size,
                                           path_of=lambda f: source.image_input(f.relpath))
                _commit_all(batches, catalog, known, hashes, report, progress, len(to_embed))

    if gone:
        with catalog.transaction() as conn:
            catalog.delete(conn, gone)
            catalog.bump(conn)
        report.removed = len(gone)
    vanished_skips = [p for p in skipped_before if p not in present]
    if vanished_skips:
        with catalog.transaction() as conn:
            catalog.forget_skipped(conn, vanished_skips)
    return report


def _commit_all(batches: Iterable[list[Embedded]], catalog, known, hashes, report: UpdateReport,
                progress: ProgressCallback | None, total: int) -> None:
    done = 0
    for batch in batches:
        _commit_batch(catalog, batch, known, hashes, report)
        done += len(batch)
        if progress:
            progress(done, total)


def _changed_files(files: list[ScannedFile], known: dict, skipped_before: dict, report: UpdateReport
                   ) -> list[ScannedFile]:
    """The files that are new or changed (size or mtime) since the index last saw them; a file that failed and
    has not changed since is reported as skipped again, not retried."""
    candidates = []
    for file in files:
        row = known.get(file.relpath)
        if row and (row.size, row.mtime_ns) == (file.size, file.mtime_ns):
            report.unchanged += 1
        elif (previous := skipped_before.get(file.relpath)) and previous[:2] == (file.size, file.mtime_ns):
            report.skipped.append((file.relpath, previous[2]))
        else:
            candidates.append(file)
    return candidates


def _digest_or_reason(source, file: ScannedFile) -> str:
    try:
        return source.digest(file)
    except OSError as exc:
        return "!" + ("permission denied" if isinstance(exc, PermissionError) else str(exc.strerror or exc))


def _apply_cheap_changes(catalog, known, gone, candidates, hashes, report) -> list[ScannedFile]:
    """Touches, moves and copies need no model: apply them in one transaction, return what needs embedding."""
    if not candidates:
        return []
    gone_by_hash: dict[str, list] = {}
    for row in gone.values():
        gone_by_hash.setdefault(row.content_hash, []).append(row)
    known_by_hash = {row.content_hash: row for row in known.values()}
    to_embed = []
    with catalog.transaction() as conn:
        for file in candidates:
            digest = hashes[file]
            row = known.get(file.relpath)
            if digest.startswith("!"):
                report.skipped.append((file.relpath, digest[1:]))
            elif row and row.content_hash == digest:
                catalog.touch(conn, row.id, file.size, file.mtime_ns)
                report.unchanged += 1
            elif not row and gone_by_hash.get(digest):
                source = gone_by_hash[digest].pop()
                del gone[source.path]
                catalog.move(conn, source.id, file.relpath, file.size, file.mtime_ns)
                report.moved += 1
            elif not row and digest in known_by_hash:
                catalog.copy_row(conn, known_by_hash[digest].id, file.relpath, file.size, file.mtime_ns)
                report.reused += 1
            else:
                to_embed.append(file)
        catalog.bump(conn)
    return to_embed


def embedded_batches(pool: Executor, items: list, embedder: Embedder, batch_size: int,
                     path_of: Callable = lambda item: item) -> Iterator[list[Embedded]]:
    """The pool (threads, or `lookalike.preparing.worker_processes`) decodes the next batches while the model
    embeds this one (or several, `concurrent_calls`)."""
    if getattr(embedder, "holds_large_buffers", True):
        return_large_buffers_to_the_os()  # decoded images and activations: peak RSS -15 % (lookalike.memory)
    variants = getattr(embedder, "prepared_variants", lambda array: None)

    def embed(batch: list[Prepared]) -> list[Embedded]:
        arrays = [item.array for item in batch if item.error is None and item.array is not None]
        vectors = iter(embedder.embed_prepared(stack_prepared(arrays)) if arrays else [])
        return [Embedded(item.key, None, error=item.error) if item.error else
                Embedded(item.key, next(vectors), item.size, variants=variants(item.array)) for item in batch]

    batches = prepare_batches(pool, items, embedder, batch_size, path_of)
    calls = concurrent_calls(embedder)
    if calls == 1:
        yield from map(embed, batches)
        return
    with ThreadPoolExecutor(calls, thread_name_prefix="lookalike-model") as model_calls:
        yield from bounded_map(model_calls, embed, batches, window=calls)


def embed_files(items: Iterable[Item], embedder: Embedder, batch_size: int = 32, workers: int | None = None,
                path_of: Callable = lambda item: item) -> Iterator[tuple[Item, np.ndarray | None, str | None]]:
    """(item, vector, None) or (item, None, reason) for files embedded but not stored (queries, examples)."""
    with ThreadPoolExecutor(workers or default_workers()) as pool:
        for batch in embedded_batches(pool, list(items), embedder, batch_size, path_of):
            yield from ((e.key, e.vector, e.error) for e in batch)


def _commit_batch(catalog, batch: list[Embedded[ScannedFile]], known, hashes, report: UpdateReport) -> None:
    good = [item for item in batch if item.error is None and item.vector is not None]
    report.embedded += len(good)
    with catalog.transaction() as conn:
        ids = catalog.insert_many(conn, [
            NewImage(item.key.relpath, item.key.size, item.key.mtime_ns, hashes[item.key], item.size[0], item.size[1],
                     item.vector) for item in good if item.vector is not None])
        variants: dict[str, list] = {}
        for image_id, item in zip(ids, good, strict=True):
            if item.variants:  # stored with the image, so no second pass decodes it again
                model = item.variants.pop("model")
                variants.setdefault(model, []).append((image_id, {"": item.vector, **item.variants}))
            if item.key.relpath in known:
                report.updated += 1
            else:
                report.added += 1
        from lookalike.store import extra

        for model, rows in variants.items():
            extra.write_many(conn, model, rows)
        for item in batch:
            if item.error is not None:
                catalog.record_skipped(conn, item.key.relpath, item.key.size, item.key.mtime_ns, item.error)
                report.skipped.append((item.key.relpath, item.error))
        catalog.bump(conn)
