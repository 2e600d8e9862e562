import shutil

import pytest

import lookalike
from lookalike.api import Index, find_index
from lookalike.errors import IndexUnusableError, ModalityError


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
