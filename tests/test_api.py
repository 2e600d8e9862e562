import shutil

import pytest

import lookalike
from lookalike.api import Index, find_index
from lookalike.errors import IndexUnusableError, ModalityError
from lookalike.settings import IndexSettings, SettingsError


@pytest.mark.slow
def test_open_update_search_round_trip(sample_folder, photos):
    idx = lookalike.open(sample_folder, model="efficientnet-lite0")
    report = idx.update()
    assert report.added == 31
    query = photos["astronaut"].resize((256, 256))
    result = idx.search(image=query, k=8)
    top = [m.relative_path for m in result.matches]
    assert top[0].startswith(("astronaut", "edited/astronaut"))
    assert sum(p.startswith(("astronaut", "edited/astronaut")) for p in top[:6]) == 6
    assert result.matches[0].score > 0.9 and result.matches[0].percent == pytest.approx(
        (result.matches[0].score + 1) * 50)
    assert all(a.score >= b.score for a, b in zip(result.matches, result.matches[1:], strict=False))
    assert result.matches[0].path == str(sample_folder / result.matches[0].relative_path)


def test_index_is_found_from_inside_the_folder_and_reopened_with_its_model(sample_folder, monkeypatch):
    lookalike.open(sample_folder, model="phash").update()
    monkeypatch.chdir(sample_folder / "edited")
    assert find_index() == sample_folder / ".lookalike" / "index.db"
    with Index.open() as idx:
        assert idx.model_id == "phash" and idx.info().images == 31


def test_another_model_is_refused_with_how_to_reindex(sample_folder):
    lookalike.open(sample_folder, model="phash").update()
    with pytest.raises(IndexUnusableError, match="--reindex"):
        Index.open(sample_folder, model="dhash")
    idx = Index.open(sample_folder, model="dhash", reindex=True)
    assert idx.update().added == 31 and idx.model_id == "dhash"


def test_text_query_on_an_image_only_index_is_a_clear_error(sample_folder):
    idx = lookalike.open(sample_folder, model="phash")
    idx.update()
    with pytest.raises(ModalityError, match="text"):
        idx.search(text="a cat")


@pytest.mark.slow
def test_text_search_with_clip(sample_folder, tiny_clip_dir):
    idx = lookalike.open(sample_folder, model=str(tiny_clip_dir))
    idx.update()
    result = idx.search(text="a photo of a cat", k=5)
    assert len(result.matches) == 5
    exact = idx.search(image=sample_folder / "rocket.png", k=1)
    assert exact.matches[0].relative_path == "rocket.png" and exact.matches[0].score > 0.999
    mixed = idx.search(query=f"{sample_folder / 'rocket.png'} + 0.5:a rocket", k=3, min_score=-1)
    assert len(mixed.matches) == 3


def test_external_db_and_folder_ownership(tmp_path, sample_folder):
    db = tmp_path / "elsewhere" / "photos.db"
    lookalike.open(sample_folder, db=db, model="phash").update()
    assert not (sample_folder / ".lookalike").exists()
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(IndexUnusableError, match="belongs to"):
        Index.open(other, db=db)
    with Index.open(db=db) as idx:
        assert idx.root == sample_folder.resolve()


def test_folder_moved_together_with_its_index_still_works(tmp_path, sample_folder):
    lookalike.open(sample_folder, model="phash").update()
    moved = tmp_path / "moved"
    shutil.move(sample_folder, moved)
    with Index.open(moved) as idx:
        assert idx.root == moved.resolve()
        assert idx.update().unchanged == 31


def test_missing_index_and_missing_folder_messages(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(IndexUnusableError, match="lookalike index PHOTOS_DIR"):
        Index.open()
    with pytest.raises(IndexUnusableError, match="not a folder"):
        Index.open(tmp_path / "nope", model="phash")


def test_settings_persist_so_no_environment_flip_flops_the_structure(sample_folder, monkeypatch):
    """An indexer with a memory budget and a server without one used to rebuild each other's structure."""
    monkeypatch.setenv("LOOKALIKE_MEMORY_BUDGET", "1")  # environment variables no longer decide what an index is
    with lookalike.open(sample_folder, model="phash", memory_budget="1M") as idx:
        idx.configure(exact_limit=10)
        idx.update()
        assert idx.vectors().describe().startswith("PQ fast-scan")  # 31 images > exact_limit
        assert idx.info().settings["memory_budget"] == "1 MiB"
        committed = (idx._cache_dir() / "vectors.json").read_text()
    with Index.open(sample_folder) as reopened:  # as a server would: no options
        assert reopened.settings == IndexSettings(memory_budget=2**20, exact_limit=10)
        reopened.vectors()
        assert (reopened._cache_dir() / "vectors.json").read_text() == committed  # the same build: nothing rebuilt


def test_the_runtime_is_a_stored_setting_the_model_loads_with(sample_folder):
    """`--runtime` used to be an environment variable that each process read for itself."""
    with lookalike.open(sample_folder, model="efficientnet-lite0", runtime="onnx") as idx:
        assert idx.settings.runtime == "onnx" and idx.embedder.requested_runtime == "onnx"
    with Index.open(sample_folder) as reopened:
        assert reopened.settings.runtime == "onnx" and reopened.embedder.requested_runtime == "onnx"
        reopened.configure(runtime="auto")
        assert reopened.embedder.requested_runtime in (None, "auto")
    with pytest.raises(SettingsError, match="unknown runtime 'tpu'"):
        Index.open(sample_folder, runtime="tpu")


def test_a_reindexed_model_runs_on_the_stored_runtime(sample_folder):
    lookalike.open(sample_folder, model="phash", runtime="onnx").close()
    with Index.open(sample_folder, model="efficientnet-lite0", reindex=True) as idx:
        assert idx.model_id == "efficientnet-lite0" and idx.embedder.requested_runtime == "onnx"


def test_models_and_copy_variants_of_older_indexes_are_read_into_the_settings(sample_folder):
    with lookalike.open(sample_folder, model="phash") as idx:
        with idx.catalog.transaction() as conn:  # as an index made before settings held them
            conn.execute("DELETE FROM meta WHERE key = 'settings'")
            idx.catalog.set_meta(conn, models=["pdq"], copy_extras=["dihedral"])
        assert (idx.settings.models, idx.settings.copy_variants) == (("pdq",), ("dihedral",))


def test_index_compare_uses_the_calibrated_threshold(sample_folder, photos):
    from lookalike.thresholds import store_calibration

    cat = photos["chelsea"]
    half = cat.resize((cat.width // 2, cat.height // 2))
    with lookalike.open(sample_folder, model="efficientnet-lite0") as idx:
        assert idx.compare(cat, half).verdict == "near-duplicate"
        store_calibration(idx.catalog, idx.model_id, 0.9999, 20, 0.0)
        strict = idx.compare(cat, half)
    assert strict.near_duplicate_at == 0.9999 and strict.verdict == "similar"


def test_a_refused_open_closes_its_catalog(sample_folder, monkeypatch):
    from lookalike.store.catalog import Catalog

    lookalike.open(sample_folder, model="phash").close()
    closed = []
    original_close = Catalog.close
    monkeypatch.setattr(Catalog, "close", lambda self: (closed.append(1), original_close(self)))
    with pytest.raises(IndexUnusableError, match="--reindex"):
        Index.open(sample_folder, model="dhash")
    with pytest.raises(IndexUnusableError, match="belongs to"):
        Index.open(sample_folder / "edited", db=sample_folder / ".lookalike")
    assert closed == [1, 1]


@pytest.mark.slow
def test_every_verb_is_a_method_of_the_index(sample_folder):
    with lookalike.open(sample_folder, model="efficientnet-lite0") as idx:
        idx.update()
        astronaut = next(row.id for path, row in idx.catalog.rows().items() if path == "astronaut.png")
        similar = idx.similar(astronaut, k=3)
        assert similar.query == "astronaut.png"  # named by its path, not "#id"
        assert "astronaut.png" in [m.relative_path for m in similar.matches[:2]]  # tied with its metadata-only resave
        assert similar.matches[0].score == pytest.approx(1.0, abs=1e-3)
        assert all(m.relative_path.startswith(("astronaut", "edited/astronaut")) for m in similar.matches)
        groups = idx.duplicates()
        assert any(g.keeper.relative_path.startswith("astronaut") or any(
            o.relative_path.startswith("edited/astronaut") for o in g.others) for g in groups)
        clustering = idx.clusters(k=3)
        assert len(clustering.ids) == 31 and len(set(clustering.labels.tolist())) == 3
        with pytest.raises(lookalike.LookalikeError, match="no image with id 999999"):
            idx.similar(999999)


def test_fifty_simultaneous_first_opens_of_a_new_index(sample_folder):
    """Fault 8: 36 of 50 simultaneous first opens of a new index failed."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    start = threading.Barrier(50)

    def first_open(_):
        start.wait()
        with lookalike.open(sample_folder, model="phash") as idx:
            return idx.model_id, idx.source.location

    with ThreadPoolExecutor(50) as pool:
        answers = set(pool.map(first_open, range(50)))
    assert answers == {("phash", str(sample_folder))}


def test_what_the_index_holds_is_public(sample_folder):
    with lookalike.open(sample_folder, model="phash") as idx:
        before = idx.version()
        idx.update()
        assert idx.version() != before
        images = {image.path: image for image in idx.images()}
        assert len(images) == 31 and images["chelsea.png"].width == 451
        chelsea = images["chelsea.png"].id
        assert idx.paths([chelsea, 10**9]) == {chelsea: "chelsea.png"}
        details = idx.details([chelsea])[chelsea]
        assert (details.path, details.width, details.size) == ("chelsea.png", 451, images["chelsea.png"].size)
        ids, vectors = idx.embeddings()
        assert len(ids) == 31 and vectors.shape == (31, idx.dim)


def test_a_second_handle_has_its_own_connection(sample_folder):
    with lookalike.open(sample_folder, model="phash") as idx:
        idx.update()
        other = idx.handle()
        assert other.catalog.conn is not idx.catalog.conn and other.embedder is idx.embedder
        assert other.paths(other.embeddings()[0]) == idx.paths(idx.embeddings()[0])
        other.close()
        assert len(idx.images()) == 31  # closing the handle leaves this one open


def test_reset_threshold_forgets_the_copy_models_threshold_too(sample_folder):
    from lookalike.thresholds import COPY, store_calibration

    with lookalike.open(sample_folder, model="phash,sscd-distilled") as idx:
        store_calibration(idx.catalog, "sscd-distilled" + COPY, 0.3, 20, 0.0)
        assert idx.threshold().source == "calibrated" and idx.threshold().is_copy_score
        assert idx.reset_threshold() is True
        assert idx.threshold().source == "default" and idx.reset_threshold() is False
