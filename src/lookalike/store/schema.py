"""The catalog's schema (with its migrations) and the records it hands out."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = 3
VECTOR_DTYPE = np.float16  # half the disk and RAM of float32; cosine error ~1e-3, ranking unaffected in practice

# Each entry upgrades the schema from version N-1 to N; append, never edit, so old indexes keep opening.
MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,          -- POSIX path relative to the indexed folder
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        content_hash TEXT NOT NULL,         -- recognises moved/renamed/copied files
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        vector BLOB NOT NULL,               -- float16, L2-normalised
        indexed_at REAL NOT NULL
    );
    CREATE INDEX images_by_hash ON images (content_hash);
    CREATE TABLE skipped (                  -- files that could not be read, with the reason; retried once changed
        path TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        reason TEXT NOT NULL
    );
    """,
    2: """
    ALTER TABLE images ADD COLUMN pixel_hash TEXT;  -- MD5 of decoded pixels, filled lazily by dupes
    """,
    3: """
    CREATE TABLE vectors (                  -- more vectors per image: other models, copy variants (store/extra.py)
        image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE, model TEXT NOT NULL,
        kind TEXT NOT NULL,                 -- '' the image itself; 'hflip', 'rot90', 'region:0.5:1:2', ...
        vector BLOB NOT NULL,               -- float16, L2-normalised
        PRIMARY KEY (model, image_id, kind)
    );
    CREATE INDEX vectors_by_image ON vectors (image_id);
    """,
}


def statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit halfway, breaking atomicity)."""
    without_comments = re.sub(r"--[^\n]*", "", script)
    return [statement.strip() for statement in without_comments.split(";") if statement.strip()]


@dataclass(frozen=True)
class ImageRow:
    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str
    width: int
    height: int


@dataclass(frozen=True)
class ImageDetails:
    """What reports, thumbnails and the keeper choice need of an indexed image."""

    path: str
    width: int
    height: int
    size: int
    mtime_ns: int
    content_hash: str  # of the file's bytes
    pixel_hash: str | None  # MD5 of the decoded pixels, filled lazily by dupes


@dataclass(frozen=True)
class NewImage:
    path: str
    size: int
    mtime_ns: int
    content_hash: str
    width: int
    height: int
    vector: np.ndarray
