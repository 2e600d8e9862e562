"""The REST API with the real app (TestClient), on a real index of the sample photos."""

import io
import zlib

import pytest
from fastapi.testclient import TestClient
from PIL import Image

import lookalike
from lookalike.server.app import create_app


@pytest.fixture(scope="module")
def indexed_folder(tmp_path_factory, sample_folder_template):
    import shutil

    folder = tmp_path_factory.mktemp("server") / "photos"
    shutil.copytree(sample_folder_template, folder)
    idx = lookalike.open(folder, model="efficientnet-lite0")
    idx.update()
    idx.close()
    return folder


@pytest.fixture(scope="module")
def client(indexed_folder):
    idx = lookalike.open(indexed_folder)
    with TestClient(create_app(idx, upload_limit=5 * 1024 * 1024, allowed_hosts=["testserver"])) as test_client:
        yield test_client
    idx.close()


def _jpeg(image, quality=85) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def test_upload_finds_the_original_first(client, photos):
    query = _jpeg(photos["coffee"].resize((300, 200)), 60)
    response = client.post("/api/search/image", files={"file": ("cup.jpg", query, "image/jpeg")}, data={"k": "6"})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 6 and all("coffee" in r["relative_path"] for r in results)
    assert results[0]["thumbnail"] == f"/api/thumbnail/{results[0]['id']}" and "path" not in results[0]
    assert response.json()["method"] == "exact"


def test_more_like_this_thumbnails_info_health(client):
    info = client.get("/api/info").json()
    assert info["images"] == 31 and info["model"] == "efficientnet-lite0" and info["text_search"] is False
    assert client.get("/api/health").json() == {"status": "ok"}
    similar = client.get("/api/search/similar/1?k=3").json()["results"]
    assert 1 in [r["id"] for r in similar if r["score"] > 0.998]  # itself (and pixel-identical copies) first
    thumb = client.get(f"/api/thumbnail/{similar[1]['id']}?size=64")
    assert thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 64


def test_text_on_an_image_only_model_is_422(client):
    response = client.get("/api/search/text", params={"q": "a cat"})
    assert response.status_code == 422 and "images only" in response.json()["detail"]


@pytest.mark.parametrize(("name", "content", "status"), [
    ("zero.jpg", b"", 415),
    ("notes.jpg", b"just some text, not a jpeg at all", 415),
])
def test_bad_uploads_get_4xx(client, name, content, status):
    response = client.post("/api/search/image", files={"file": (name, content, "image/jpeg")})
    assert response.status_code == status and "not a usable image" in response.json()["detail"]


def test_truncated_jpeg_is_415(client, photos):
    data = _jpeg(photos["rocket"])
    response = client.post("/api/search/image", files={"file": ("cut.jpg", data[: len(data) // 2], "image/jpeg")})
    assert response.status_code == 415 and "truncated" in response.json()["detail"]


def _huge_png(width: int, height: int) -> bytes:
    """A valid 100-megapixel greyscale PNG of a few hundred KB (all-zero rows compress to nothing)."""
    import struct

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    raw = zlib.compress(b"\x00" * ((width + 1) * height), 9)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_100_megapixel_png_is_refused_without_decoding(client):
    data = _huge_png(10_000, 10_000)
    assert len(data) < 1_000_000
    response = client.post("/api/search/image", files={"file": ("bomb.png", data, "image/png")})
    assert response.status_code == 413 and "too large" in response.json()["detail"]


def test_oversized_upload_is_413(client):
    response = client.post("/api/search/image", files={"file": ("big.jpg", b"\xff" * (6 * 1024 * 1024), "image/jpeg")})
    assert response.status_code == 413


@pytest.mark.parametrize("attempt", ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "-1", "99999"])
def test_thumbnails_only_for_indexed_ids(client, attempt):
    response = client.get(f"/api/thumbnail/{attempt}")
    assert response.status_code in (404, 422)
    assert b"root:" not in response.content


def test_url_queries_refuse_internal_addresses(client):
    response = client.get("/api/search/url", params={"url": "http://169.254.169.254/latest/meta-data/"})
    assert response.status_code == 403
    assert client.get("/api/search/url", params={"url": "file:///etc/passwd"}).status_code == 400


def test_compare_dupes_clusters(client, photos):
    a = _jpeg(photos["chelsea"])
    b = _jpeg(photos["chelsea"].resize((225, 150)))
    comparison = client.post("/api/compare", files={"a": ("a.jpg", a), "b": ("b.jpg", b)}).json()
    assert comparison["cosine"] > 0.9 and comparison["pixel_md5_equal"] is False
    groups = client.get("/api/dupes").json()["groups"]
    assert len(groups) == 3 and all(g["keeper"]["thumbnail"].startswith("/api/thumbnail/") for g in groups)
    clusters = client.get("/api/clusters", params={"k": 5}).json()
    assert clusters["k"] == 5 and sum(len(c["images"]) for c in clusters["clusters"]) == 31


def test_recognize_needs_configured_categories(client, photos):
    response = client.post("/api/recognize", files={"file": ("c.jpg", _jpeg(photos["chelsea"]))})
    assert response.status_code == 404 and "--categories" in response.json()["detail"]


def test_server_sees_new_images_without_restart(indexed_folder, photos):
    idx = lookalike.open(indexed_folder)
    with TestClient(create_app(idx, allowed_hosts=["testserver"])) as client:
        assert client.get("/api/info").json()["images"] == 31
        photos["moon"].rotate(90).save(indexed_folder / "new moon.png")
        writer = lookalike.open(indexed_folder)  # another process would do the same: `lookalike index`
        writer.update()
        writer.close()
        assert client.get("/api/info").json()["images"] == 32
        results = client.get("/api/search/similar/1?k=40").json()["results"]
        assert any(r["relative_path"] == "new moon.png" for r in results)
        (indexed_folder / "new moon.png").unlink()
        writer = lookalike.open(indexed_folder)
        writer.update()
        writer.close()
    idx.close()


def test_token_is_required_when_set(indexed_folder):
    idx = lookalike.open(indexed_folder)
    with TestClient(create_app(idx, token="s3cret", allowed_hosts=["testserver"])) as client:
        assert client.get("/api/info").status_code == 401
        assert client.get("/api/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/info", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/api/info", headers={"Authorization": "bearer  s3cret"}).status_code == 200  # RFC 6750
        assert client.get("/api/info", headers={"Authorization": "s3cret"}).status_code == 401  # no scheme
        assert client.get("/api/thumbnail/1?token=s3cret").status_code == 401  # never in URLs (logs, history)
        assert client.get("/api/health").status_code == 200  # liveness needs no secret
        assert client.get("/").status_code == 200 and "lookalike" in client.get("/").text
    idx.close()


def test_openapi_docs_list_the_endpoints(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/search/image", "/api/search/text", "/api/search/url", "/api/compare", "/api/dupes",
            "/api/clusters", "/api/recognize", "/api/info"} <= set(paths)
