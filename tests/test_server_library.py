"""The web app's collection routes with the real app (TestClient): the paged gallery and its folders."""

import time

import pytest

from tests.serving import serve_copy


def _serve(folder, sample_folder_template, model="efficientnet-lite0"):
    yield from serve_copy(folder, sample_folder_template, model)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, sample_folder_template):
    """Read-only tests share one index (phash: no model to run, so they stay in the fast tier)."""
    yield from _serve(tmp_path_factory.mktemp("library") / "photos", sample_folder_template, "phash")


@pytest.fixture
def served(tmp_path, sample_folder_template):
    """Tests that change the folder get one of their own."""
    yield from _serve(tmp_path / "photos", sample_folder_template)


def _wait(client, job: dict) -> dict:
    deadline = time.time() + 120
    while job["status"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.1)
        job = client.get(job["url"]).json()
    assert job["status"] == "done", job
    return job["result"]


def test_browse_pages_sorts_and_filters(shared):
    client, folder = shared
    first = client.get("/api/browse?limit=10&sort=name").json()
    assert first["total"] == 31 and len(first["images"]) == 10
    rest = client.get("/api/browse?limit=30&offset=10&sort=name").json()["images"]
    names = [i["relative_path"].rsplit("/", 1)[-1].lower() for i in first["images"] + rest]
    assert names == sorted(names) and len({i["id"] for i in first["images"] + rest}) == 31
    edited = client.get("/api/browse?folder=edited&limit=500").json()
    assert edited["total"] == 15 and all(i["folder"] == "edited" for i in edited["images"])
    top = client.get("/api/browse?folder=&limit=500").json()
    assert top["total"] == 16 and all("/" not in i["relative_path"] for i in top["images"])
    newest = client.get("/api/browse?sort=date&limit=500").json()["images"]
    assert [i["mtime"] for i in newest] == sorted((i["mtime"] for i in newest), reverse=True)
    image = newest[0]
    assert image["size"] == (folder / image["relative_path"]).stat().st_size and image["width"] > 0
    assert client.get("/api/folders").json()["folders"] == [{"folder": "", "images": 16},
                                                             {"folder": "edited", "images": 15}]
    assert client.get("/api/browse?sort=colour").status_code == 422


@pytest.mark.slow
def test_searches_answer_from_the_previous_state_while_a_refresh_job_runs(served, photos, monkeypatch):
    """The refresh is held (a hook, not a delay) just before it commits the new image: searches and info answer
    meanwhile, from the 31 images indexed before; once it is let go, the new image is found."""
    import io
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from lookalike import indexer

    client, folder = served
    photos["rocket"].transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "new_rocket.jpg")
    query = io.BytesIO()
    photos["rocket"].save(query, "JPEG")
    held, release = threading.Event(), threading.Event()
    commit = indexer._commit_batch

    def held_commit(*args, **kwargs):
        held.set()
        assert release.wait(120)
        return commit(*args, **kwargs)

    monkeypatch.setattr(indexer, "_commit_batch", held_commit)

    def search() -> list[str]:
        answer = client.post("/api/search/image", files={"file": ("q.jpg", query.getvalue())}, data={"k": "40"})
        assert answer.status_code == 200
        return [match["relative_path"] for match in answer.json()["results"]]

    job = client.post("/api/index/refresh").json()
    try:
        assert held.wait(120)
        with ThreadPoolExecutor(2) as threads:  # would wait for ever if the refresh held the server's lock
            during, info = threads.submit(search), threads.submit(lambda: client.get("/api/info").json())
            names, images = during.result(timeout=120), info.result(timeout=120)["images"]
        assert client.get(job["url"]).json()["status"] == "running"
        assert images == 31 and len(names) == 31 and "new_rocket.jpg" not in names
    finally:
        release.set()
    assert _wait(client, job)["added"] == 1
    assert "new_rocket.jpg" in search()[:3] and client.get("/api/info").json()["images"] == 32
    again = client.post("/api/index/refresh").json()
    assert _wait(client, again)["unchanged"] == 32
