import sqlite3
import threading

import numpy as np
import pytest

from lookalike.errors import IndexUnusableError
from lookalike.store.catalog import SCHEMA_VERSION, Catalog, NewImage


def _image(path, seed=0, content_hash=None):
    vector = np.random.default_rng(seed).normal(size=8).astype(np.float32)
    return NewImage(path, 10, 20, content_hash or f"h{seed}", 4, 3, vector / np.linalg.norm(vector))


def test_schema_is_created_once_and_versioned(tmp_path):
    catalog = Catalog(tmp_path / "index.db")
    assert catalog.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert catalog.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    catalog.close()
    Catalog(tmp_path / "index.db").close()  # reopening migrates nothing and does not fail


def test_newer_schema_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "index.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(IndexUnusableError, match="newer lookalike"):
        Catalog(tmp_path / "index.db")


def test_rows_vectors_moves_copies_and_generation(tmp_path):
    catalog = Catalog(tmp_path / "index.db")
    start = catalog.generation()
    with catalog.transaction() as conn:
        catalog.insert(conn, _image("a.png", 1))
        catalog.insert(conn, _image("b.png", 2))
        catalog.bump(conn)
    assert catalog.generation() == start + 1
    rows = catalog.rows()
    with catalog.transaction() as conn:
        catalog.move(conn, rows["a.png"].id, "sub/a.png", 11, 21)
        catalog.copy_row(conn, rows["b.png"].id, "copy-of-b.png", 10, 20)
    ids, matrix, _ = catalog.all_vectors(8)
    assert matrix.dtype == np.float16 and matrix.shape == (3, 8)
    rows = catalog.rows()
    assert set(rows) == {"sub/a.png", "b.png", "copy-of-b.png"}
    np.testing.assert_array_equal(catalog.vector_of(rows["b.png"].id), catalog.vector_of(rows["copy-of-b.png"].id))
    np.testing.assert_allclose(catalog.vector_of(rows["sub/a.png"].id), _image("a", 1).vector, atol=2e-3)
    assert catalog.paths_for([rows["b.png"].id]) == {rows["b.png"].id: "b.png"}


def test_a_failed_transaction_leaves_nothing_behind(tmp_path):
    catalog = Catalog(tmp_path / "index.db")
    with pytest.raises(RuntimeError), catalog.transaction() as conn:
        catalog.insert(conn, _image("a.png"))
        raise RuntimeError("crash mid-batch")
    assert catalog.count() == 0


def test_skipped_files_are_recorded_and_cleared_when_indexed(tmp_path):
    catalog = Catalog(tmp_path / "index.db")
    with catalog.transaction() as conn:
        catalog.record_skipped(conn, "bad.jpg", 5, 6, "not an image")
    assert catalog.skipped() == {"bad.jpg": (5, 6, "not an image")}
    assert catalog.epoch() == 0  # an unreadable *new* file replaces no vector: append-only caches stay valid
    with catalog.transaction() as conn:
        catalog.insert(conn, _image("bad.jpg"))
    assert catalog.skipped() == {}
    with catalog.transaction() as conn:
        catalog.record_skipped(conn, "bad.jpg", 7, 8, "truncated")  # an indexed file that went bad: its vector goes
    assert catalog.epoch() == 1 and catalog.count() == 0


def test_readers_are_not_blocked_by_a_writer(tmp_path):
    writer = Catalog(tmp_path / "index.db")
    reader = Catalog(tmp_path / "index.db")
    failures = []

    def read_many():
        try:
            for _ in range(200):
                reader.count()
                reader.all_vectors(8)
        except Exception as exc:  # noqa: BLE001 - the assertion below reports it
            failures.append(exc)

    thread = threading.Thread(target=read_many)
    thread.start()
    for batch in range(50):
        with writer.transaction() as conn:
            for i in range(10):
                catalog_image = _image(f"{batch}-{i}.png", batch * 10 + i)
                writer.insert(conn, catalog_image)
            writer.bump(conn)
    thread.join()
    assert failures == []
    assert reader.count() == 500


def test_fifty_simultaneous_first_opens_all_succeed(tmp_path):
    """Fault 8: the schema version was read outside the write transaction ("table meta already exists")."""
    from concurrent.futures import ThreadPoolExecutor

    start = threading.Barrier(50)

    def first_open(_):
        start.wait()
        catalog = Catalog(tmp_path / "new" / "index.db")
        try:
            return catalog.conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            catalog.close()

    with ThreadPoolExecutor(50) as pool:
        assert list(pool.map(first_open, range(50))) == [SCHEMA_VERSION] * 50
