"""The web app's collection routes with the real app (TestClient): the paged gallery and its folders."""

import shutil

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
