"""The web app's collection routes with the real app (TestClient): the paged gallery, folders, and a duplicate
review applied (files moved to the trash, index updated) and undone (every byte back)."""

import hashlib
import shutil
import time

import pytest
from fastapi.testclient import TestClient

import lookalike
from lookalike.server.app import create_app


def _serve(folder, sample_folder_template, model="efficientnet-lite0"):
    shutil.copytree(sample_folder_template, folder)
    idx = lookalike.open(folder, model=model)
    idx.update()
    with TestClient(create_app(idx, allowed_hosts=["testserver"])) as client:
        yield client, folder
    idx.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory, sample_folder_template):
    """Read-only tests share one index (phash: no model to run, so they stay in the fast tier)."""
    yield from _serve(tmp_path_factory.mktemp("library") / "photos", sample_folder_template, "phash")


@pytest.fixture
def served(tmp_path, sample_folder_template):
    """Tests that move files get a folder of their own."""
    yield from _serve(tmp_path / "photos", sample_folder_template)


def _wait(client, job: dict) -> dict:
    deadline = time.time() + 120
    while job["status"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.1)
        job = client.get(job["url"]).json()
    assert job["status"] == "done", job
    return job["result"]


def _digests(folder) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file() and ".lookalike" not in p.parts[len(folder.parts)]}


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


def test_dupes_payload_has_dates_folders_and_threshold_source(shared):
    client, _ = shared
    dupes = client.get("/api/dupes").json()
    assert dupes["threshold"] == 1 - 2 * 10 / 64 and dupes["threshold_source"] == "default for phash"
    keeper = dupes["groups"][0]["keeper"]
    assert keeper["mtime"] > 1e9 and keeper["folder"] in ("", "edited") and keeper["size"] > 0
    assert client.get("/api/dupes?threshold=0.9").json()["threshold_source"] == "set in the request"


@pytest.mark.slow
def test_apply_then_undo_restores_files_byte_for_byte(served):
    client, folder = served
    before = _digests(folder)
    assert client.get("/api/browse").json()["total"] == 31  # a cached listing, which must notice the moves
    group = client.get("/api/dupes").json()["groups"][0]
    move = [d["id"] for d in group["duplicates"]]
    moved_paths = {d["relative_path"] for d in group["duplicates"]}
    answer = client.post("/api/dupes/apply", json={"move": move, "keep": [group["keeper"]["id"]]})
    assert answer.status_code == 202
    result = _wait(client, answer.json())
    assert {m["from"] for m in result["moved"]} == moved_paths
    assert not any((folder / p).exists() for p in moved_paths)
    assert (folder / result["manifest"]).is_file()
    assert client.get("/api/info").json()["images"] == 31 - len(move)  # re-indexed: gone from results
    listed = client.get("/api/browse?limit=500").json()["images"]
    assert len(listed) == 31 - len(move) and not moved_paths & {i["relative_path"] for i in listed}
    assert before == {**_digests(folder), **{p: before[p] for p in moved_paths}}

    restored = _wait(client, client.post(f"/api/dupes/undo/{result['batch']}").json())
    assert set(restored["restored"]) == moved_paths
    assert _digests(folder) == before
    assert client.get("/api/info").json()["images"] == 31 == client.get("/api/browse").json()["total"]


def test_apply_refuses_bad_plans(shared):
    client, _ = shared
    assert client.post("/api/dupes/apply", json={"move": []}).status_code == 400
    assert client.post("/api/dupes/undo/../../etc").status_code == 404
    assert client.post("/api/dupes/undo/20260101T000000-000000").status_code == 202  # job fails: no batch
    job = client.post("/api/dupes/apply", json={"move": [999999]}).json()
    while job["status"] in ("queued", "running"):
        job = client.get(job["url"]).json()
    assert job["status"] == "failed" and "999999" in job["error"]


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
