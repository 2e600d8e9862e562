"""The one thumbnail function: rendered once, then answered from the index's cache folder; a changed file gets
a new thumbnail."""

import io
import os

from fastapi.testclient import TestClient
from PIL import Image

import lookalike
from lookalike.server.app import create_app
from lookalike.server.thumbs import thumbnail, thumbnail_folder


def test_thumbnail_is_cached_on_disk_and_follows_file_changes(tmp_path, photos):
    folder = tmp_path / "photos"
    folder.mkdir()
    photos["chelsea"].save(folder / "cat.png")
    idx = lookalike.open(folder, model="phash")
    idx.update()
    [image_id] = idx.catalog.paths_for(range(10))
    first, cached = thumbnail(idx, image_id, 64)
    assert not cached and max(Image.open(io.BytesIO(first)).size) == 64
    again, cached = thumbnail(idx, image_id, 64)
    assert cached and again == first and len(list(thumbnail_folder(idx).glob("*.jpg"))) == 1

    photos["coffee"].save(folder / "cat.png")  # same name, new content: re-indexed, new key
    os.utime(folder / "cat.png", ns=(1, 1))
    idx.update()
    [image_id] = idx.catalog.paths_for(range(10))
    changed, cached = thumbnail(idx, image_id, 64)
    assert not cached and changed != first

    with TestClient(create_app(idx, allowed_hosts=["testserver"])) as client:
        answers = [client.get(f"/api/thumbnail/{image_id}?size=200") for _ in range(2)]
        assert [a.headers["x-thumbnail-cache"] for a in answers] == ["miss", "hit"]
        assert answers[0].content == answers[1].content
        assert client.get("/api/thumbnail/424242").status_code == 404
    idx.close()
