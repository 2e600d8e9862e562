import json

import numpy as np
import pytest

from lookalike.settings import IndexSettings, SettingsError
from lookalike.store.catalog import Catalog, NewImage
from lookalike.store.faiss_store import VectorCache
from lookalike.store.large import large_index_layout
from lookalike.store.npy_append import append_rows
from lookalike.store.policy import build_structure
from lookalike.store.structures import PQRerankVectors


def _unit(rows, dim, seed=0):
    x = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_search_matches_brute_force():
    vectors = _unit(500, 32)
    ids = np.arange(1000, 1500)
    index = build_structure(ids, vectors, generation=1)
    queries = _unit(5, 32, seed=1)
    found = index.search(queries, k=10)
    exact_scores = queries @ vectors.astype(np.float16).astype(np.float32).T  # what float16 storage can know
    truth = np.argsort(-exact_scores, axis=1)[:, :10]
    np.testing.assert_allclose(found.scores, np.take_along_axis(exact_scores, truth, 1), atol=1e-4)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found.ids, ids[truth], strict=True)])
    assert recall >= 0.98  # only exact ties may swap places
    assert found.method == "exact"


def test_k_larger_than_collection_and_empty_index():
    index = build_structure(np.arange(3), _unit(3, 8), generation=1)
    assert index.search(_unit(1, 8), k=10).ids.shape == (1, 3)
    empty = build_structure(np.zeros(0, np.int64), np.zeros((0, 8), np.float32), generation=1)
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
    assert [path.exists() for path in cache.index_files()] == [True]
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
    cache.index_files()[0].write_bytes(b"garbage")
    assert len(cache.load(catalog, 8)) == 1


def test_pq_rerank_above_the_exact_limit_with_exact_fallback_from_the_same_memory():
    vectors = _unit(3000, 32, seed=3)
    index = build_structure(np.arange(3000), vectors, generation=1, settings=IndexSettings(exact_limit=1000))
    assert index.approximate
    queries = _unit(50, 32, seed=4)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    approximate = index.search(queries, 10)
    exact = index.search(queries, 10, exact=True)
    assert approximate.method.startswith("pq-rerank") and exact.method == "exact"
    recall = np.mean([len(set(a) & set(t)) / 10 for a, t in zip(approximate.ids, truth, strict=True)])
    exact_recall = np.mean([len(set(a) & set(t)) / 10 for a, t in zip(exact.ids, truth, strict=True)])
    assert recall >= 0.9 and exact_recall >= 0.98


def _fill(catalog, vectors, start=0):
    with catalog.transaction() as conn:
        for i, v in enumerate(vectors, start):
            catalog.insert(conn, NewImage(f"{i}.png", 1, 1, f"h{i}", 1, 1, v))
        catalog.bump(conn)


def test_additions_are_appended_and_replacements_rebuild(tmp_path, monkeypatch):
    settings = IndexSettings(exact_limit=10)
    catalog = Catalog(tmp_path / "index.db")
    _fill(catalog, _unit(30, 8))
    cache = VectorCache(tmp_path / "cache", settings)
    first = cache.load(catalog, 8)
    assert first.approximate and len(first) == 30
    built = []
    original_build = PQRerankVectors.build.__func__

    def counting_build(cls, *args, **kwargs):
        built.append(1)
        return original_build(cls, *args, **kwargs)

    monkeypatch.setattr(PQRerankVectors, "build", classmethod(counting_build))
    _fill(catalog, _unit(5, 8, seed=9), start=30)
    appended = cache.load(catalog, 8)
    assert len(appended) == 35 and built == []  # appended, not rebuilt
    new_vector = _unit(1, 8, seed=11)[0]
    with catalog.transaction() as conn:  # same path, new content: a replaced vector
        catalog.insert(conn, NewImage("3.png", 2, 2, "new", 1, 1, new_vector))
        catalog.bump(conn)
    rebuilt = cache.load(catalog, 8)
    assert built == [1] and len(rebuilt) == 35
    found = rebuilt.search(new_vector[None], 1, exact=True)
    assert catalog.paths_for(found.ids[0]) == {int(found.ids[0][0]): "3.png"}


@pytest.mark.slow
def test_large_index_mode_fits_a_memory_budget(monkeypatch):
    latent = np.random.default_rng(5).standard_normal((16, 64)).astype(np.float32)
    rng = np.random.default_rng(6)
    vectors = rng.standard_normal((20000, 16)).astype(np.float32) @ latent + 0.3 * rng.standard_normal((20000, 64))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    index = build_structure(np.arange(20000) + 7, vectors, generation=1,
                            settings=IndexSettings(exact_limit=1000, memory_budget=2 * 2**20))  # default: ~2.8 MB
    assert index.large
    queries = vectors[:50] + 0.01
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10] + 7
    found = index.search(queries, 10)
    assert found.method.startswith("ivfpq")
    recall = np.mean([len(set(a) & set(t)) / 10 for a, t in zip(found.ids, truth, strict=True)])
    assert recall >= 0.9
    assert index.search(queries, 10, exact=True).method == "exact"
    nlist, m = large_index_layout(20000, 64, 2 * 2**20)
    assert nlist * 64 * 4 + 20000 * (m + 16) <= 2 * 2**20
    with pytest.raises(SettingsError, match="cannot hold .* give at least"):
        large_index_layout(10_000_000, 512, 2**20)


def test_growth_past_double_the_training_set_retrains_the_codebooks(tmp_path, monkeypatch):
    settings = IndexSettings(exact_limit=10)
    catalog = Catalog(tmp_path / "index.db")
    _fill(catalog, _unit(40, 8))
    cache = VectorCache(tmp_path / "cache", settings)
    assert cache.load(catalog, 8).trained_count == 40
    _fill(catalog, _unit(40, 8, seed=2), start=40)
    assert cache.load(catalog, 8).trained_count == 40  # 80 ≤ 2 × 40: appended with the same codebooks
    _fill(catalog, _unit(1, 8, seed=3), start=80)
    reloaded = cache.load(catalog, 8)
    assert reloaded.trained_count == 81 and len(reloaded) == 81
    assert VectorCache(tmp_path / "cache", settings)._read().trained_count == 81  # persisted with the cache


def test_the_rerank_pool_is_tuned_to_the_collection():
    rng = np.random.default_rng(7)
    clustered = rng.standard_normal((8000, 8)).astype(np.float32) @ rng.standard_normal((8, 64)).astype(np.float32)
    clustered += 0.2 * rng.standard_normal((8000, 64)).astype(np.float32)
    clustered /= np.linalg.norm(clustered, axis=1, keepdims=True)
    structureless = _unit(8000, 64, seed=8)
    tuned = {}
    for name, vectors in {"clustered": clustered, "structureless": structureless}.items():
        index = build_structure(np.arange(8000), vectors, generation=1, settings=IndexSettings(exact_limit=1000))
        tuned[name] = index.candidates
        queries = vectors[:40] + 0.05 * _unit(40, 64, seed=9)  # held out: near, not equal to, stored images
        truth = np.argsort(-(queries @ vectors.astype(np.float16).astype(np.float32).T), axis=1)[:, :10]
        found = index.search(queries, 10)
        assert found.method == f"pq-rerank(candidates={max(200, index.candidates)})"
        assert np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found.ids, truth, strict=True)]) >= 0.9
    assert tuned["clustered"] < tuned["structureless"]


@pytest.mark.slow
def test_large_index_mode_streams_from_the_catalog_and_reloads_memory_mapped(tmp_path, monkeypatch):
    settings = IndexSettings(exact_limit=100, memory_budget=300 * 2**10)  # 3000 × 64-d would need ~410 KB by default
    rng = np.random.default_rng(12)
    vectors = rng.standard_normal((3000, 8)).astype(np.float32) @ rng.standard_normal((8, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    catalog = Catalog(tmp_path / "index.db")
    _fill(catalog, vectors)
    crashed = tmp_path / "cache" / "vectors.f16.npy.tmp999999999"  # a 10 GB leftover of a killed build
    crashed.parent.mkdir()
    crashed.write_bytes(b"partial")
    all_vectors = []
    monkeypatch.setattr(Catalog, "all_vectors", lambda *a: all_vectors.append(1))  # must not be needed
    cache = VectorCache(tmp_path / "cache", settings)
    built = cache.load(catalog, 64)
    assert built.large and isinstance(built.rerank, np.memmap) and all_vectors == []
    assert 8 <= built.nprobe <= built.index.nlist and built.candidates >= 50
    assert not list(cache.directory.glob("*.tmp*"))  # the staged file became the cache's own; the leftover is gone
    reloaded = VectorCache(tmp_path / "cache", settings)._read()
    assert (reloaded.nprobe, reloaded.candidates) == (built.nprobe, built.candidates)
    assert isinstance(reloaded.rerank, np.memmap)
    queries = vectors[:30] + 0.02 * _unit(30, 64, seed=13)
    stored = vectors.astype(np.float16).astype(np.float32)
    truth = np.argsort(-(queries @ stored.T), axis=1)[:, :10] + 1  # catalog ids start at 1
    found = reloaded.search(queries, 10)
    assert found.method == f"ivfpq(nprobe={built.nprobe}, candidates={built.candidates}, rerank=fp16)"
    assert np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found.ids, truth, strict=True)]) >= 0.9
    np.testing.assert_array_equal(reloaded.search(queries, 10, exact=True).ids, truth)


def test_the_cache_describes_its_structure_without_loading_it(tmp_path, monkeypatch):
    catalog = Catalog(tmp_path / "index.db")
    _fill(catalog, _unit(40, 8))
    cache = VectorCache(tmp_path / "cache")
    assert cache.describe() == ""  # nothing built yet
    cache.load(catalog, 8)
    assert cache.describe() == "exact float16, 40 vectors"
    cache = VectorCache(tmp_path / "cache", IndexSettings(exact_limit=10))
    _fill(catalog, _unit(1, 8, seed=5), start=40)
    built = cache.load(catalog, 8)
    assert cache.describe() == f"PQ fast-scan + float16 re-rank ({built.candidates:,} candidates, tuned), 41 vectors"
    _cores(monkeypatch)
    cache = VectorCache(tmp_path / "cache", IndexSettings(exact_limit=10, shard_min_size=20))
    _fill(catalog, _unit(100, 8, seed=6), start=41)  # past twice the training set: rebuilt in 2 shards
    built = cache.load(catalog, 8)
    assert cache.describe() == (f"PQ fast-scan + float16 re-rank ({built.candidates:,} candidates per shard, tuned; "
                                "2 shards searched in parallel), 141 vectors")


@pytest.mark.slow
def test_large_index_mode_appends_additions_and_survives_a_crashed_append(tmp_path, monkeypatch):
    settings = IndexSettings(exact_limit=100, memory_budget=300 * 2**10)
    rng = np.random.default_rng(14)
    vectors = rng.standard_normal((3300, 8)).astype(np.float32) @ rng.standard_normal((8, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    catalog = Catalog(tmp_path / "index.db")
    _fill(catalog, vectors[:3000])
    cache = VectorCache(tmp_path / "cache", settings)
    first = cache.load(catalog, 64)
    rebuilt = []
    monkeypatch.setattr(VectorCache, "_build_large_from", lambda *a: rebuilt.append(1))
    _fill(catalog, vectors[3000:3200], start=3000)
    grown = cache.load(catalog, 64)
    assert rebuilt == [] and len(grown) == 3200 and grown.index.ntotal == 3200 and len(grown.rerank) == 3200
    assert grown.nprobe == first.nprobe  # same lists, same tuning
    # a crash after the float16 rows were appended but before the cache's state was written
    append_rows(cache.rerank_file, 3200, vectors[3200:3250].astype(np.float16))
    reread = VectorCache(tmp_path / "cache", settings)._read()
    assert len(reread.rerank) == 3200  # the orphan rows are ignored, then overwritten by the next append
    _fill(catalog, vectors[3200:3300], start=3200)
    final = VectorCache(tmp_path / "cache", settings).load(catalog, 64)
    assert rebuilt == [] and len(final.rerank) == 3300 == len(np.load(cache.rerank_file, mmap_mode="r"))
    stored = vectors.astype(np.float16).astype(np.float32)
    queries = vectors[3250:3260] + 0.01 * _unit(10, 64, seed=15)
    truth = np.argsort(-(queries @ stored.T), axis=1)[:, :10] + 1
    np.testing.assert_array_equal(final.search(queries, 10, exact=True).ids, truth)
    assert np.mean([len(set(f) & set(t)) / 10
                    for f, t in zip(final.search(queries, 10).ids, truth, strict=True)]) >= 0.9


def _cores(monkeypatch, cores=2):
    import lookalike.store.structures as structures

    monkeypatch.setattr(structures, "search_threads", lambda: cores)


def test_shards_split_the_collection_and_are_searched_together(monkeypatch):
    vectors = _unit(3001, 32, seed=21)
    queries = _unit(40, 32, seed=22)
    single = build_structure(np.arange(3001) + 5, vectors, generation=1, settings=IndexSettings(exact_limit=1000))
    _cores(monkeypatch, cores=4)  # 3 shards of at least 1000
    sharded = build_structure(np.arange(3001) + 5, vectors, generation=1,
                              settings=IndexSettings(exact_limit=1000, shard_min_size=1000))
    assert len(single.shards) == 1 and [len(ids) for ids in sharded.shard_ids] == [1001, 1000, 1000]
    stored = vectors.astype(np.float16).astype(np.float32)
    truth = np.argsort(-(queries @ stored.T), axis=1)[:, :10] + 5
    exact = sharded.search(queries, 10, exact=True)
    np.testing.assert_array_equal(exact.ids, truth)  # the merge of the shards' exact lists is the exact list
    np.testing.assert_array_equal(exact.ids, single.search(queries, 10, exact=True).ids)
    found = sharded.search(queries, 10, candidates=300)
    assert found.method == "pq-rerank(candidates=300, shards=3)"
    assert np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found.ids, truth, strict=True)]) >= 0.9
    sharded.add(np.array([9000, 9001]), _unit(2, 32, seed=23))  # the two smaller shards take one each
    assert [len(ids) for ids in sharded.shard_ids] == [1001, 1001, 1001] and len(sharded) == sharded.index.ntotal
    assert sharded.search(_unit(1, 32, seed=23), 1, exact=True).ids[0, 0] == 9000


def test_a_sharded_cache_reloads_and_removes_the_files_of_earlier_builds(tmp_path, monkeypatch):
    settings = IndexSettings(exact_limit=100, shard_min_size=500)
    _cores(monkeypatch)
    catalog = Catalog(tmp_path / "index.db")
    vectors = _unit(1400, 16, seed=24)
    _fill(catalog, vectors[:1200])
    cache = VectorCache(tmp_path / "cache", settings)
    first = cache.load(catalog, 16)
    first_files = cache.index_files()
    assert len(first.shards) == 2 and len(first_files) == 2
    _fill(catalog, vectors[1200:], start=1200)  # appended: half to each shard, written as a new build
    grown = cache.load(catalog, 16)
    assert [len(ids) for ids in grown.shard_ids] == [700, 700] and grown.trained_count == 1200
    assert not any(path.exists() for path in first_files)
    reloaded = VectorCache(tmp_path / "cache", settings)._read()
    assert [len(ids) for ids in reloaded.shard_ids] == [700, 700] and reloaded.candidates == grown.candidates
    queries = vectors[1300:1310]
    np.testing.assert_array_equal(reloaded.search(queries, 5).ids, grown.search(queries, 5).ids)
    np.testing.assert_array_equal(reloaded.search(queries, 1, exact=True).ids[:, 0], np.arange(1301, 1311))
    leftovers = sorted(path.name for path in cache.directory.iterdir())
    assert leftovers == sorted([path.name for path in cache.index_files()]
                               + [json.loads(cache.state_file.read_text())["ids_file"], "vectors.json"])


def test_a_cache_that_cannot_be_written_still_searches(tmp_path, monkeypatch):
    import faiss

    def refuse(*args):
        raise RuntimeError("Error: 'f' failed: could not open vectors.faiss for writing: Read-only file system")

    catalog = Catalog(tmp_path / "index.db")
    _fill(catalog, _unit(20, 8))
    monkeypatch.setattr(faiss, "write_index", refuse)  # what FAISS raises on a read-only folder
    cache = VectorCache(tmp_path / "cache")
    found = cache.load(catalog, 8).search(_unit(20, 8)[3:4], 1)
    assert found.ids[0, 0] == 4 and not list(cache.directory.glob("vectors.*"))  # nothing half-written is left


def test_a_cache_left_by_an_earlier_catalog_at_the_same_path_is_not_reused(tmp_path):
    """A catalog deleted and made anew at the same path restarts its generations: its cache must not be trusted."""
    for made, seed in ((1.0, 0), (2.0, 1)):
        (tmp_path / "index.db").unlink(missing_ok=True)
        catalog = Catalog(tmp_path / "index.db")
        with catalog.transaction() as conn:
            catalog.set_meta(conn, created_at=made)
        vectors = _unit(20, 8, seed=seed)
        _fill(catalog, vectors)
        found = VectorCache(tmp_path / "cache").load(catalog, 8).search(vectors[5:6], 1, exact=True)
        assert found.ids[0, 0] == 6 and found.scores[0, 0] > 0.999  # this catalog's vectors, not the earlier one's
        catalog.close()
