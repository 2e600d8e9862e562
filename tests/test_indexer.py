import os
import shutil

import numpy as np
import pytest

from lookalike.indexer import update_index
from lookalike.store.catalog import Catalog


@pytest.fixture
def catalog(tmp_path):
    return Catalog(tmp_path / "index" / "index.db")


def _vectors_by_path(catalog):
    return {path: catalog.vector_of(row.id) for path, row in catalog.rows().items()}


@pytest.mark.slow
def test_first_run_embeds_everything_then_nothing(catalog, sample_folder, counting):
    files = sorted(p for p in sample_folder.rglob("*") if p.is_file())
    first = update_index(catalog, sample_folder, counting, batch_size=8)
    assert first.added == counting.images_embedded == len(files) == 31
    second = update_index(catalog, sample_folder, counting)
    assert (second.added, second.unchanged, second.embedded) == (0, 31, 0)
    assert counting.images_embedded == 31


@pytest.mark.slow
def test_incremental_run_embeds_only_what_changed(catalog, sample_folder, counting, photos):
    update_index(catalog, sample_folder, counting)
    before = _vectors_by_path(catalog)
    photos["rocket"].save(sample_folder / "new-rocket.jpg")  # new
    photos["camera"].save(sample_folder / "coffee.png")  # same path, new content
    (sample_folder / "moon.png").unlink()  # deleted
    os.utime(sample_folder / "brick.png", ns=(1, 1))  # touched: same bytes, new mtime
    counting.images_embedded = 0
    report = update_index(catalog, sample_folder, counting)
    assert (report.added, report.updated, report.removed, report.embedded) == (1, 1, 1, 2)
    assert counting.images_embedded == 2
    after = _vectors_by_path(catalog)
    assert "moon.png" not in after
    np.testing.assert_array_equal(after["brick.png"], before["brick.png"])
    assert float(after["coffee.png"] @ before["coffee.png"]) < 0.9


@pytest.mark.slow
def test_moved_renamed_and_copied_files_reuse_their_vectors(catalog, sample_folder, counting):
    update_index(catalog, sample_folder, counting)
    before = _vectors_by_path(catalog)
    (sample_folder / "albums" / "2024").mkdir(parents=True)
    shutil.move(sample_folder / "chelsea.png", sample_folder / "albums" / "2024" / "my cat.png")
    shutil.copy(sample_folder / "rocket.png", sample_folder / "albums" / "rocket copy.png")
    counting.images_embedded = 0
    report = update_index(catalog, sample_folder, counting)
    assert (report.moved, report.reused, report.removed, counting.images_embedded) == (1, 1, 0, 0)
    after = _vectors_by_path(catalog)
    np.testing.assert_array_equal(after["albums/2024/my cat.png"], before["chelsea.png"])
    np.testing.assert_array_equal(after["albums/rocket copy.png"], before["rocket.png"])
    assert "chelsea.png" not in after


@pytest.mark.slow
def test_bad_files_are_reported_skipped_and_retried_only_when_changed(catalog, sample_folder, counting, photos):
    (sample_folder / "empty.jpg").write_bytes(b"")
    (sample_folder / "notes.jpg").write_text("a text file named .jpg")
    good = (sample_folder / "coffee.png").read_bytes()
    (sample_folder / "cut.png").write_bytes(good[: len(good) // 3])
    os.symlink(sample_folder / "gone.png", sample_folder / "dangling.png")
    report = update_index(catalog, sample_folder, counting)
    reasons = dict(report.skipped)
    assert set(reasons) == {"empty.jpg", "notes.jpg", "cut.png", "dangling.png"}
    assert "empty" in reasons["empty.jpg"] and "not an image" in reasons["notes.jpg"]
    assert "truncated" in reasons["cut.png"] and reasons["dangling.png"] == "broken symlink"
    assert report.added == 31
    counting.images_embedded = 0
    again = update_index(catalog, sample_folder, counting)
    assert set(dict(again.skipped)) == set(reasons) and counting.images_embedded == 0
    photos["clock"].save(sample_folder / "notes.jpg", "JPEG")  # fixed: now a real image
    fixed = update_index(catalog, sample_folder, counting)
    assert fixed.added == 1 and "notes.jpg" not in dict(fixed.skipped)
    assert "notes.jpg" not in catalog.skipped()


@pytest.mark.slow
def test_a_crash_mid_run_keeps_committed_batches_and_the_next_run_completes(catalog, sample_folder, efficientnet):
    class CrashingEmbedder:
        def __init__(self, inner, crash_after):
            self.inner, self.crash_after, self.batches = inner, crash_after, 0

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def embed_prepared(self, batch):
            self.batches += 1
            if self.batches > self.crash_after:
                raise RuntimeError("power cut")
            return self.inner.embed_prepared(batch)

    with pytest.raises(RuntimeError, match="power cut"):
        update_index(catalog, sample_folder, CrashingEmbedder(efficientnet, crash_after=2), batch_size=5)
    assert catalog.count() == 10  # two committed batches survive
    report = update_index(catalog, sample_folder, efficientnet, batch_size=5)
    assert report.added == 21 and report.unchanged == 10 and catalog.count() == 31


@pytest.mark.slow
def test_hidden_files_are_indexed_only_when_asked(catalog, sample_folder, counting, photos):
    (sample_folder / ".private").mkdir()
    photos["coins"].save(sample_folder / ".private" / "coins.png")
    update_index(catalog, sample_folder, counting)
    assert ".private/coins.png" not in catalog.rows()
    update_index(catalog, sample_folder, counting, include_hidden=True)
    assert ".private/coins.png" in catalog.rows()


@pytest.mark.slow
def test_file_names_of_any_bytes_are_indexed_and_kept_exactly(catalog, tmp_path, photos, efficientnet):
    """Fault 1: one name with invalid UTF-8 used to stop the run with a UnicodeEncodeError, 0 indexed."""
    folder = tmp_path / "names"
    folder.mkdir()
    raw_names = [b"bad\xff.jpg", b"caf\xe9-latin1.png", b"red\x1b[31m.png", b"ok1.png", b"ok2.png", b"ok3.png"]
    for raw, photo in zip(raw_names, ["chelsea", "coffee", "rocket", "moon", "clock", "coins"], strict=True):
        photos[photo].convert("RGB").save(os.path.join(os.fsencode(folder), raw), "PNG")
    (folder / "broken.jpg").write_bytes(b"not an image")
    os.symlink(b"nowhere\xfe.jpg", os.path.join(os.fsencode(folder), b"dangling\xfe.jpg"))

    report = update_index(catalog, folder, efficientnet)
    assert report.added == 6 and {p for p, _ in report.skipped} == {"broken.jpg", os.fsdecode(b"dangling\xfe.jpg")}
    stored = {os.fsencode(path) for path in catalog.rows()}
    assert stored == set(raw_names)
    reopened = Catalog(catalog.db_file)  # lossless across connections, and a re-run changes nothing
    assert {os.fsencode(p) for p in reopened.rows()} == set(raw_names)
    assert update_index(reopened, folder, efficientnet).unchanged == 6
    os.rename(os.path.join(os.fsencode(folder), b"bad\xff.jpg"), os.path.join(os.fsencode(folder), b"moved\xff.jpg"))
    moved = update_index(reopened, folder, efficientnet)
    assert moved.moved == 1 and os.fsdecode(b"moved\xff.jpg") in reopened.rows()


@pytest.mark.slow
def test_the_bad_input_corpus_crashes_nothing(catalog, tmp_path, photos, efficientnet):
    """Goal: hostile names, bombs, truncated, text-as-image, links, loops, odd formats: 0 crashes, every bad file
    reported, every good file indexed (twice: the second run retries nothing and changes nothing)."""
    from tests.badinput import write_corpus

    corpus = write_corpus(tmp_path / "corpus", photos["chelsea"])
    report = update_index(catalog, tmp_path / "corpus", efficientnet, batch_size=8)
    reasons = dict(report.skipped)
    assert set(catalog.rows()) == corpus.good
    assert set(reasons) == corpus.bad
    assert not [r for r in reasons.values() if r.startswith("could not decode")]  # no decoder crash caught late
    assert "too large" in reasons["bad/bomb.png"] and "too large" in reasons["bad/bomb.gif"]
    assert "too large" in reasons["bad/bomb.jpg"] and "0 bytes" in reasons["bad/empty.jpg"]
    assert "not an image" in reasons["bad/text.jpg"] and "truncated" in reasons["bad/truncated.jpg"]
    assert "regular file" in reasons["bad/pipe.jpg"] and reasons["links/dangling.jpg"] == "broken symlink"
    again = update_index(catalog, tmp_path / "corpus", efficientnet)
    assert again.unchanged == len(corpus.good) and again.embedded == 0 and set(dict(again.skipped)) == corpus.bad


def test_an_embedder_that_takes_concurrent_calls_gets_them_and_every_vector_lands_on_its_image(
        catalog, sample_folder, efficientnet):
    import threading
    import time

    from lookalike.indexer import embed_files

    class SideBySide:
        """efficientnet-lite0 taking two calls at once, each held a moment so that they overlap."""

        concurrent_calls = 2

        def __init__(self) -> None:
            self.running, self.most, self.lock = 0, 0, threading.Lock()

        def __getattr__(self, name):
            return getattr(efficientnet, name)

        def embed_prepared(self, batch):
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
            time.sleep(0.05)
            try:
                return efficientnet.embed_prepared(batch)
            finally:
                with self.lock:
                    self.running -= 1

    side_by_side = SideBySide()
    update_index(catalog, sample_folder, side_by_side, batch_size=2)
    assert side_by_side.most == 2
    stored = _vectors_by_path(catalog)
    files = sorted(path for path in sample_folder.rglob("*") if path.is_file())
    alone = {path.relative_to(sample_folder).as_posix(): vector for path, vector, _ in
             embed_files(files, efficientnet, batch_size=2) if vector is not None}
    assert stored.keys() == alone.keys()
    for name, vector in alone.items():
        assert float(np.dot(stored[name], vector)) > 0.999, name


def test_only_embedders_holding_large_buffers_have_them_returned_to_the_os(tmp_path, sample_folder, efficientnet,
                                                                           monkeypatch):
    pytest.importorskip("pdqhash")
    from lookalike import indexer
    from lookalike.models.pdq import PdqEmbedder

    pinned = []
    monkeypatch.setattr(indexer, "return_large_buffers_to_the_os", lambda: pinned.append(True) or True)
    files = sorted(path for path in sample_folder.rglob("*.jpg"))[:2]
    hashed = list(indexer.embed_files(files, PdqEmbedder()))
    assert pinned == [] and all(vector is not None for _, vector, _ in hashed)
    embedded = list(indexer.embed_files(files, efficientnet))
    assert pinned == [True] and all(vector is not None for _, vector, _ in embedded)
