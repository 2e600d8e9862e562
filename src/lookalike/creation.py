"""A new index: its identity (folder, model, dimension, preprocessing) written whole, or not at all."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from lookalike.models.base import Embedder
from lookalike.sources import is_remote, is_url_list
from lookalike.store.catalog import Catalog


def create_index_file(db_file: Path, root: str, embedder: Embedder) -> None:
    """A new index appears whole or not at all: written under a temporary name, then linked into place
    (`link` fails if another process created it meanwhile; theirs is used). A `kill -9` between the schema
    and the settings used to leave an index without its model, which the next run filled with the default."""
    staging = db_file.with_name(f"{db_file.name}.creating-{os.getpid()}-{threading.get_ident()}")
    try:
        catalog = Catalog(staging)
        record_identity(catalog, db_file, root, embedder)
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

def record_identity(catalog: Catalog, db_file: Path, root: str, embedder: Embedder) -> None:
    """The folder, model, dimension and preprocessing that make a catalog this index."""
    # A local folder is stored relative to the index, so a folder moved with its .lookalike keeps working.
    remote = is_remote(root) or is_url_list(root)
    stored_root = root if remote else os.path.relpath(root, db_file.parent)
    with catalog.transaction() as conn:
        catalog.set_meta(conn, root=stored_root, model=embedder.id, dim=embedder.dim,
                         preprocessing=embedder.preprocessing(), created_at=time.time())
        catalog.bump(conn)
