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


@pytest.mark.slow
def test_upload_finds_the_original_first(client, photos):
    query = _jpeg(photos["coffee"].resize((300, 200)), 60)
    response = client.post("/api/search/image", files={"file": ("cup.jpg", query, "image/jpeg")}, data={"k": "6"})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 6 and all("coffee" in r["relative_path"] for r in results)
    assert results[0]["thumbnail"] == f"/api/thumbnail/{results[0]['id']}" and "path" not in results[0]
    assert response.json()["method"] == "exact"


def test_an_indexed_jpeg_uploaded_is_decoded_as_the_indexer_did_and_scores_one(client, indexed_folder):
    name = "edited/astronaut_jpeg40.jpg"  # 512 px: the indexer decoded it at JPEG's 1/2 draft scale
    response = client.post("/api/search/image", data={"k": "1"},
                           files={"file": ("a.jpg", (indexed_folder / name).read_bytes(), "image/jpeg")})
    first = response.json()["results"][0]
    assert first["relative_path"] == name and first["score"] > 0.9999


@pytest.mark.slow
def test_copy_lookup_finds_the_original_of_a_mirrored_copy(client, photos):
    mirrored = _jpeg(photos["astronaut"].transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((256, 256)), 70)
    answer = client.post("/api/search/image", files={"file": ("flipped.jpg", mirrored, "image/jpeg")},
                         data={"k": "5", "copies": "true"})
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["query"] == "flipped.jpg" and found["method"].startswith("copy lookup")
    assert "astronaut" in found["results"][0]["relative_path"]
    scores = [r["copy_score"] for r in found["results"]]
    assert all(isinstance(s, float) for s in scores) and scores[0] > scores[-1]
    plain = client.post("/api/search/image", files={"file": ("flipped.jpg", mirrored, "image/jpeg")},
                        data={"k": "5"}).json()["results"]
    assert all(r["copy_score"] is None for r in plain)
    both = client.post("/api/search/image", files={"file": ("f.jpg", mirrored, "image/jpeg")},
                       data={"copies": "true", "verify": "true"})
    assert both.status_code == 422 and "choose one" in both.json()["detail"]
    schema = client.get("/openapi.json").json()
    assert "copy_score" in schema["components"]["schemas"]["SearchMatch"]["properties"]
    assert "copies" in {p["name"] for p in schema["paths"]["/api/search/url"]["get"]["parameters"]}


def test_more_like_this_thumbnails_info_health(client):
    info = client.get("/api/info").json()
    assert info["images"] == 31 and info["model"] == "efficientnet-lite0" and info["text_search"] is False
    assert client.get("/api/health").json() == {"status": "ok"}
    answer = client.get("/api/search/similar/1?k=3").json()
    similar = answer["results"]
    assert 1 in [r["id"] for r in similar if r["score"] > 0.998]  # itself (and pixel-identical copies) first
    itself = next(r for r in similar if r["id"] == 1)
    assert answer["query"] == itself["relative_path"].rsplit("/", 1)[-1]  # its file name, not '#1'
    assert client.get("/api/search/similar/999999").status_code == 404
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


@pytest.mark.slow
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


@pytest.mark.parametrize("url", [
    f"/api/search/similar/{2**63}", f"/api/thumbnail/{2**63}", f"/api/thumbnail/{2**64 + 5}",
    "/api/search/similar/1?k=0", "/api/search/text?q=x&min_score=nan", "/api/search/text?q=x&min_score=inf",
    "/api/dupes?threshold=1e308", "/api/dupes?threshold=-nan", "/api/thumbnail/1?size=1e3",
    "/api/clusters?method=spectral", "/api/jobs/..%2F..%2Fetc",
])
def test_ids_and_numbers_out_of_range_are_422_not_500(client, url):
    """Fault 9: image ids >= 2**63 answered 500 (SQLite integer overflow)."""
    response = client.get(url)
    assert response.status_code in (404, 422), response.text
    assert "detail" in response.json()


@pytest.mark.slow
def test_dupes_with_verification_is_a_background_job_that_holds_no_lock(client, monkeypatch):
    """Fault 9: /api/dupes?verify=true held the global lock (a concurrent search waited 10.1 s)."""
    import threading
    import time

    import lookalike.dupes

    real, gate = lookalike.dupes.find_duplicates, threading.Event()

    def slow_find_duplicates(index, **kwargs):
        gate.wait(30)
        return real(index, **kwargs)

    monkeypatch.setattr(lookalike.dupes, "find_duplicates", slow_find_duplicates)
    started = client.get("/api/dupes?verify=true")
    assert started.status_code == 202 and started.headers["location"] == started.json()["url"]
    assert client.get("/api/search/similar/1?k=3").status_code == 200  # not blocked while the job runs
    assert client.get(started.json()["url"]).json()["status"] in ("queued", "running")
    gate.set()
    deadline = time.time() + 120
    while (job := client.get(started.json()["url"]).json())["status"] in ("queued", "running"):
        assert time.time() < deadline
        time.sleep(0.1)
    assert job["status"] == "done" and len(job["result"]["groups"]) >= 3
    assert all("path" not in g["keeper"] for g in job["result"]["groups"])


def test_uploads_decode_and_embed_off_the_event_loop(client, monkeypatch, photos):
    """Fault 5: uploads decoded and embedded on the event loop; /api/health waited behind them."""
    import threading

    import httpx

    from lookalike.server.routes import Context

    real, gate, entered = Context.search, threading.Event(), threading.Semaphore(0)

    def blocked_search(self, *args, **kwargs):
        entered.release()
        gate.wait(30)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Context, "search", blocked_search)
    query = _jpeg(photos["coffee"])

    async def main():
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            uploads = [asyncio.ensure_future(http.post("/api/search/image", files={"file": ("q.jpg", query)}))
                       for _ in range(3)]
            for _ in range(2):  # two workers are busy with uploads, the third waits in the queue
                await asyncio.get_running_loop().run_in_executor(None, entered.acquire)
            health = await asyncio.wait_for(http.get("/api/health"), 5)
            pending = sum(not u.done() for u in uploads)
            gate.set()
            return health.status_code, pending, [(await u).status_code for u in uploads]

    import asyncio

    health, pending, statuses = asyncio.run(main())
    assert health == 200 and pending == 3 and statuses == [200, 200, 200]


def test_openapi_documents_every_error_answer(client):
    schema = client.get("/openapi.json").json()
    for path in ("/api/search/image", "/api/thumbnail/{image_id}", "/api/dupes", "/api/compare"):
        operation = next(iter(schema["paths"][path].values()))
        assert {"400", "404", "413", "415", "422", "503"} <= set(operation["responses"]), path
    assert schema["components"]["schemas"]["Problem"]["properties"]["detail"]["type"] == "string"


def test_names_that_are_not_utf8_are_served_escaped(tmp_path, photos):
    import os

    photos["chelsea"].save(os.path.join(os.fsencode(tmp_path), b"cat\xff.png"))
    photos["coffee"].save(tmp_path / "coffee.png")
    idx = lookalike.open(tmp_path, model="phash")
    idx.update()
    with TestClient(create_app(idx, allowed_hosts=["testserver"])) as http:
        found = http.get("/api/search/similar/1?k=2").json()["results"]
        assert {r["relative_path"] for r in found} == {"cat\\xff.png", "coffee.png"}
        assert all(http.get(r["thumbnail"]).status_code == 200 for r in found)
    idx.close()
