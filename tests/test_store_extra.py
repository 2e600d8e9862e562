"""The catalog's `vectors` table: rows follow their image (replaced content, deleted file), missing() finds work."""

from __future__ import annotations

import numpy as np

from lookalike.store import extra
from lookalike.store.catalog import Catalog, NewImage


def _image(path: str, digest: str) -> NewImage:
    return NewImage(path, 10, 1, digest, 4, 4, np.ones(4, np.float32) / 2)


def test_rows_follow_their_image(tmp_path):
    catalog = Catalog(tmp_path / "index.db")
    with catalog.transaction() as conn:
        catalog.insert(conn, _image("a.jpg", "h1"))
        catalog.insert(conn, _image("b.jpg", "h2"))
    ids = {row.path: row.id for row in catalog.rows().values()}
    assert [path for _, path in extra.missing(catalog, "sscd")] == ["a.jpg", "b.jpg"]
    with catalog.transaction() as conn:
        for image_id in ids.values():
            extra.write(conn, image_id, "sscd", {"": np.ones(4) / 2, "hflip": np.ones(4) / 2})
    owners, kinds, matrix = extra.load(catalog, "sscd", 4)
    assert owners.tolist() == [ids["a.jpg"]] * 2 + [ids["b.jpg"]] * 2 and kinds == ["", "hflip"] * 2
    assert matrix.shape == (4, 4) and extra.missing(catalog, "sscd") == []
    with catalog.transaction() as conn:
        catalog.insert(conn, _image("a.jpg", "h3"))  # new content: its other vectors are stale
        catalog.delete(conn, ["b.jpg"])
    assert extra.counts(catalog) == {}
    assert [path for _, path in extra.missing(catalog, "sscd")] == ["a.jpg"]
