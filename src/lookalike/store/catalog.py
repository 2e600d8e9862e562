"""The catalog: one SQLite file (WAL) holding every indexed image, its vector, and the index's settings.

Vectors live in the same rows as their paths, written in the same transactions, so a crash at any moment
leaves a catalog where every row is complete; the FAISS structure is a cache rebuilt from it when stale.
Readers never block the writer (WAL) and wait instead of failing while a checkpoint runs (busy_timeout).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lookalike.errors import IndexUnusableError, NotFoundError
from lookalike.names import from_db, json_text, to_db
from lookalike.store.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    VECTOR_DTYPE,
    ImageDetails,
    ImageRow,
    NewImage,
    statements,
)

__all__ = ["SCHEMA_VERSION", "VECTOR_DTYPE", "Catalog", "ImageDetails", "ImageRow", "NewImage"]

class Catalog:
    def __init__(self, db_file: str | Path, readonly: bool = False) -> None:
        self.db_file = Path(db_file)
        if readonly and not self.db_file.exists():
            raise IndexUnusableError(f"no index at {self.db_file}")
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.db_file, timeout=60, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout = 60000")
        self._use_wal()
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA foreign_keys = ON")  # deleting an image deletes its other vectors
        self._migrate()

    def close(self) -> None:
        self.conn.close()

    def _use_wal(self) -> None:
        """Switch a new file to WAL. The switch needs the file to itself and SQLite does not wait for that (no
        busy handler), so connections opening a new index at the same moment retry briefly."""
        for attempt in range(200):
            try:
                if self.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                    return
                self.conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 199:
                    raise
                time.sleep(0.01 + 0.001 * attempt)

    # -- schema ------------------------------------------------------------------------------------
    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise IndexUnusableError(
                f"{self.db_file} was written by a newer lookalike (schema {version} > {SCHEMA_VERSION}): "
                "upgrade lookalike"
            )
        if version == SCHEMA_VERSION:
            return
        # The version is read again inside the write transaction: processes opening a new index at the same
        # moment would otherwise all run migration 1 ("table meta already exists": 36 of 50 failed).
        with self.transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in statements(MIGRATIONS[target]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: committed entirely or not at all, even under kill -9."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    # -- settings ----------------------------------------------------------------------------------
    def get_meta(self, key: str, default=None):
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, conn: sqlite3.Connection, **values) -> None:
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [(key, json.dumps(value)) for key, value in values.items()],
        )

    def identity(self) -> str:
        """Tells this catalog from another one made later at the same path (whose generations restart at 1), so
        a derived cache left behind by the first is never taken for the second's."""
        return str(self.get_meta("created_at", ""))

    def generation(self) -> int:
        """Bumped by every write, so caches derived from the catalog know when they are stale."""
        return int(self.get_meta("generation", 0))

    def epoch(self) -> int:
        """Bumped when vectors are deleted or replaced: caches that can only append must then rebuild."""
        return int(self.get_meta("epoch", 0))

    def _replacing(self, conn: sqlite3.Connection, path: str) -> None:
        if row := conn.execute("SELECT id FROM images WHERE path = ?", (to_db(path),)).fetchone():
            self._bump_epoch(conn)
            conn.execute("DELETE FROM vectors WHERE image_id = ?", row)  # new content: its other vectors are stale

    def _bump_epoch(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('epoch', '1') "
            "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    def bump(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('generation', '1') "
            "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )
        self.set_meta(conn, updated_at=time.time())

    # -- images ------------------------------------------------------------------------------------
    def rows(self) -> dict[str, ImageRow]:
        cursor = self.conn.execute("SELECT id, path, size, mtime_ns, content_hash, width, height FROM images")
        return {from_db(row[1]): ImageRow(row[0], from_db(row[1]), *row[2:]) for row in cursor}

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]

    def paths_for(self, ids: Iterable[int]) -> dict[int, str]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(f"SELECT id, path FROM images WHERE id IN ({marks})", ids).fetchall()
        return {image_id: from_db(path) for image_id, path in rows}

    def vector_of(self, image_id: int) -> np.ndarray:
        row = self.conn.execute("SELECT vector FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no image with id {image_id} in the index")
        return np.frombuffer(row[0], VECTOR_DTYPE).astype(np.float32)

    @contextmanager
    def snapshot(self) -> Iterator[tuple[int, int]]:
        """A read transaction: everything read inside sees one state of the catalog, whose (generation, epoch)
        it yields."""
        self.conn.execute("BEGIN")
        try:
            yield self.generation(), self.epoch()
        finally:
            self.conn.execute("COMMIT")

    def all_vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """(ids, float16 matrix, (generation, epoch)) of every image in id order, in one consistent snapshot."""
        return self.vectors_after(-1, dim)

    def vectors_after(self, last_id: int, dim: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """(ids, float16 matrix, (generation, epoch)) of the images with an id above `last_id`, in one snapshot."""
        with self.snapshot() as generation:
            rows = self.conn.execute("SELECT id, vector FROM images WHERE id > ? ORDER BY id", (last_id,)).fetchall()
        matrix = np.frombuffer(b"".join(blob for _, blob in rows), VECTOR_DTYPE).reshape(len(rows), dim)
        return np.asarray([image_id for image_id, _ in rows], dtype=np.int64), matrix, generation

    def export_vectors(self, target: str | Path, dim: int, chunk: int = 65_536
                       ) -> tuple[np.ndarray, tuple[int, int]]:
        """Writes every vector, in id order, to a float16 .npy at `target` without holding them all in RAM;
        returns (ids, (generation, epoch)) of that consistent snapshot."""
        with self.snapshot() as generation:
            count = self.conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
            matrix = np.lib.format.open_memmap(target, mode="w+", dtype=VECTOR_DTYPE, shape=(count, dim))
            ids = np.zeros(count, np.int64)
            cursor = self.conn.execute("SELECT id, vector FROM images ORDER BY id")
            done = 0
            while rows := cursor.fetchmany(chunk):
                ids[done:done + len(rows)] = [image_id for image_id, _ in rows]
                matrix[done:done + len(rows)] = np.frombuffer(b"".join(blob for _, blob in rows),
                                                              VECTOR_DTYPE).reshape(len(rows), dim)
                done += len(rows)
            matrix.flush()
            del matrix
        return ids, generation

    def insert(self, conn: sqlite3.Connection, image: NewImage) -> int:
        return self.insert_many(conn, [image])[0]

    def insert_many(self, conn: sqlite3.Connection, images: list[NewImage]) -> list[int]:
        """Add or replace a batch of images in a few statements instead of three or four per image (the indexer
        commits a batch at a time); returns their ids in order."""
        paths = [to_db(image.path) for image in images]
        replaced = self._ids_of(conn, paths)
        if replaced:
            self._bump_epoch(conn)
            conn.executemany("DELETE FROM vectors WHERE image_id = ?",  # new content: its other vectors are stale
                             [(image_id,) for image_id in replaced.values()])
        now = time.time()
        conn.executemany(
            "INSERT INTO images (path, size, mtime_ns, content_hash, width, height, vector, indexed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET size = excluded.size, "
            "mtime_ns = excluded.mtime_ns, content_hash = excluded.content_hash, width = excluded.width, "
            "height = excluded.height, vector = excluded.vector, indexed_at = excluded.indexed_at",
            [(path, image.size, image.mtime_ns, image.content_hash, image.width, image.height,
              np.asarray(image.vector, VECTOR_DTYPE).tobytes(), now)
             for path, image in zip(paths, images, strict=True)],
        )
        conn.executemany("DELETE FROM skipped WHERE path = ?", [(path,) for path in paths])
        ids = self._ids_of(conn, paths)
        return [ids[path] for path in paths]

    @staticmethod
    def _ids_of(conn: sqlite3.Connection, paths: list) -> dict:
        found: dict[str, int] = {}
        for start in range(0, len(paths), 500):
            chunk = paths[start:start + 500]
            found.update((path, image_id) for image_id, path in conn.execute(
                f"SELECT id, path FROM images WHERE path IN ({','.join('?' * len(chunk))})", chunk))
        return found

    def copy_row(self, conn: sqlite3.Connection, source_id: int, path: str, size: int, mtime_ns: int) -> None:
        """A file whose content is already indexed under another path: reuse that vector."""
        self._replacing(conn, path)
        conn.execute(
            "INSERT INTO images (path, size, mtime_ns, content_hash, width, height, vector, indexed_at) "
            "SELECT ?, ?, ?, content_hash, width, height, vector, ? FROM images WHERE id = ? "
            "ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
            "content_hash = excluded.content_hash, vector = excluded.vector, indexed_at = excluded.indexed_at",
            (to_db(path), size, mtime_ns, time.time(), source_id),
        )
        conn.execute("DELETE FROM skipped WHERE path = ?", (to_db(path),))

    def move(self, conn: sqlite3.Connection, image_id: int, path: str, size: int, mtime_ns: int) -> None:
        conn.execute(
            "UPDATE images SET path = ?, size = ?, mtime_ns = ? WHERE id = ?", (to_db(path), size, mtime_ns, image_id)
        )
        conn.execute("DELETE FROM skipped WHERE path = ?", (to_db(path),))

    def touch(self, conn: sqlite3.Connection, image_id: int, size: int, mtime_ns: int) -> None:
        conn.execute("UPDATE images SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, image_id))

    def delete(self, conn: sqlite3.Connection, paths: Iterable[str]) -> None:
        self._bump_epoch(conn)
        conn.executemany("DELETE FROM images WHERE path = ?", [(to_db(p),) for p in paths])

    def details(self, ids: Iterable[int]) -> dict[int, ImageDetails]:
        """id → its path, size in pixels and bytes, mtime and hashes, for reports and the keeper choice."""
        ids = [int(i) for i in ids]
        found = {}
        for start in range(0, len(ids), 900):  # SQLite's limit on bound parameters
            chunk = ids[start:start + 900]
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(
                "SELECT id, path, width, height, size, mtime_ns, content_hash, pixel_hash FROM images "
                f"WHERE id IN ({marks})", chunk,
            ):
                found[row[0]] = ImageDetails(from_db(row[1]), *row[2:])
        return found

    def set_pixel_hashes(self, hashes: dict[int, str]) -> None:
        with self.transaction() as conn:
            conn.executemany("UPDATE images SET pixel_hash = ? WHERE id = ?", [(h, i) for i, h in hashes.items()])

    # -- skipped files -----------------------------------------------------------------------------
    def skipped(self) -> dict[str, tuple[int, int, str]]:
        rows = self.conn.execute("SELECT path, size, mtime_ns, reason FROM skipped")
        return {from_db(p): (s, m, r) for p, s, m, r in rows}

    def record_skipped(self, conn: sqlite3.Connection, path: str, size: int, mtime_ns: int, reason: str) -> None:
        conn.execute(
            "INSERT INTO skipped (path, size, mtime_ns, reason) VALUES (?, ?, ?, ?) ON CONFLICT (path) DO UPDATE "
            "SET size = excluded.size, mtime_ns = excluded.mtime_ns, reason = excluded.reason",
            (to_db(path), size, mtime_ns, json_text(reason)),
        )
        if conn.execute("SELECT 1 FROM images WHERE path = ?", (to_db(path),)).fetchone():
            self.delete(conn, [path])  # an indexed file that became unreadable; a new unreadable file deletes nothing

    def forget_skipped(self, conn: sqlite3.Connection, paths: Iterable[str]) -> None:
        conn.executemany("DELETE FROM skipped WHERE path = ?", [(to_db(p),) for p in paths])
