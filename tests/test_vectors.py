import numpy as np

from lookalike.store.catalog import Catalog, NewImage
from lookalike.store.vectors import VectorCache, VectorIndex


def _unit(rows, dim, seed=0):
    x = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_search_matches_brute_force():
    vectors = _unit(500, 32)
    ids = np.arange(1000, 1500)
    index = VectorIndex.build(ids, vectors, generation=1)
    queries = _unit(5, 32, seed=1)
    found = index.search(queries, k=10)
    exact_scores = queries @ vectors.astype(np.float16).astype(np.float32).T  # what float16 storage can know
    truth = np.argsort(-exact_scores, axis=1)[:, :10]
    np.testing.assert_allclose(found.scores, np.take_along_axis(exact_scores, truth, 1), atol=1e-4)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found.ids, ids[truth], strict=True)])
    assert recall >= 0.98  # only exact ties may swap places
    assert found.method == "exact"


def test_k_larger_than_collection_and_empty_index():
    index = VectorIndex.build(np.arange(3), _unit(3, 8), generation=1)
    assert index.search(_unit(1, 8), k=10).ids.shape == (1, 3)
    empty = VectorIndex.build(np.zeros(0, np.int64), np.zeros((0, 8), np.float32), generation=1)
    assert empty.search(_unit(2, 8), k=5).ids.shape == (2, 0)


def test_cache_is_reused_until_the_catalog_changes(tmp_path):
    catalog = Catalog(tmp_path / "index.db")
    vectors = _unit(20, 8)
    with catalog.transaction() as conn:
        for i, v in enumerate(vectors):
            catalog.insert(conn, NewImage(f"{i}.png", 1, 1, f"h{i}", 1, 1, v))
        catalog.bump(conn)
    cache = VectorCache(tmp_path / "cache")
    first = cache.load(catalog, 8)
    assert cache.index_file.exists()
    again = cache.load(catalog, 8)
    assert again.generation == first.generation and len(again) == 20
    with catalog.transaction() as conn:
        catalog.delete(conn, ["0.png"])
        catalog.bump(conn)
    assert len(cache.load(catalog, 8)) == 19


def test_a_corrupt_cache_is_rebuilt(tmp_path):
    catalog = Catalog(tmp_path / "index.db")
    with catalog.transaction() as conn:
        catalog.insert(conn, NewImage("a.png", 1, 1, "h", 1, 1, _unit(1, 8)[0]))
        catalog.bump(conn)
    cache = VectorCache(tmp_path / "cache")
    cache.load(catalog, 8)
    cache.index_file.write_bytes(b"garbage")
    assert len(cache.load(catalog, 8)) == 1
