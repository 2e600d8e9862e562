"""The catalog's `vectors` table: more vectors per image than the one of the index's main model.

Why a table and not more columns: an index can hold several models (`--model clip,sscd`: CLIP answers text
and semantic search, SSCD answers `dupes` and copy lookups) and, per copy model, variants of each image
(flips, turns, regions; see `lookalike.copies`). Rows follow their image: replaced content and deleted files
drop them (catalog.py), and a model added later is embedded for exactly the images that lack its rows.
"""

from __future__ import annotations

import sqlite3

import numpy as np

from lookalike.store.catalog import VECTOR_DTYPE, Catalog


def missing(catalog: Catalog, model: str) -> list[tuple[int, str]]:
    """(id, path) of the images that have no vector under `model` yet, in id order."""
    return catalog.conn.execute(
        "SELECT id, path FROM images WHERE NOT EXISTS (SELECT 1 FROM vectors v WHERE v.image_id = images.id "
        "AND v.model = ? AND v.kind = '') ORDER BY id", (model,)).fetchall()


def write(conn: sqlite3.Connection, image_id: int, model: str, vectors: dict[str, np.ndarray]) -> None:
    """Store an image's vectors under `model` (kind '' last, so it marks the image as done)."""
    write_many(conn, model, [(image_id, vectors)])


def write_many(conn: sqlite3.Connection, model: str, images: list[tuple[int, dict[str, np.ndarray]]]) -> None:
    """Store several images' vectors under `model` in one statement."""
    conn.executemany(
        "INSERT INTO vectors (image_id, model, kind, vector) VALUES (?, ?, ?, ?) ON CONFLICT (model, image_id, kind) "
        "DO UPDATE SET vector = excluded.vector",
        [(image_id, model, kind, np.asarray(vectors[kind], VECTOR_DTYPE).tobytes())
         for image_id, vectors in images for kind in sorted(vectors, key=lambda kind: kind == "")])


def load(catalog: Catalog, model: str, dim: int, kinds: str = "all") -> tuple[np.ndarray, list[str], np.ndarray]:
    """(image ids, kinds, float16 matrix) of `model`'s rows: every kind ('all') or only the images' own ('')."""
    where = "" if kinds == "all" else "AND kind = ''"
    with catalog.snapshot():
        rows = catalog.conn.execute(
            f"SELECT image_id, kind, vector FROM vectors WHERE model = ? {where} ORDER BY image_id, kind",
            (model,)).fetchall()
    matrix = np.frombuffer(b"".join(row[2] for row in rows), VECTOR_DTYPE).reshape(len(rows), dim)
    return np.asarray([row[0] for row in rows], np.int64), [row[1] for row in rows], matrix


def counts(catalog: Catalog) -> dict[str, dict[str, int]]:
    """model → {'images': n, 'variants': m}: what `info` reports."""
    found: dict[str, dict[str, int]] = {}
    for model, own, total in catalog.conn.execute(
            "SELECT model, SUM(kind = ''), COUNT(*) FROM vectors GROUP BY model"):
        found[model] = {"images": int(own), "variants": int(total - own)}
    return found


def forget_model(catalog: Catalog, model: str) -> None:
    with catalog.transaction() as conn:
        conn.execute("DELETE FROM vectors WHERE model = ?", (model,))
        catalog.bump(conn)
