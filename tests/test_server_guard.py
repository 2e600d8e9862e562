"""The guard decides from headers before any body byte is read, and caps the body as it streams (faults 2, 4)."""

import asyncio

import pytest

from lookalike.server.guard import Guard, GuardSettings, bearer_token

MB = 1024 * 1024


def _scope(path="/api/search/image", method="POST", **headers):
    headers.setdefault("host", "127.0.0.1:8000")
    return {"type": "http", "method": method, "path": path,
            "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}


def _call(settings, scope, chunks):
    """Run the guard around an app that reads the whole body; returns (status, body chunks pulled)."""
    pulled, answer = [], {}

    async def receive():
        pulled.append(1)
        more = len(pulled) < chunks
        return {"type": "http.request", "body": b"\0" * MB, "more_body": more}

    async def app(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]

    asyncio.run(Guard(app, settings).__call__(scope, receive, send))
    return answer.get("status"), len(pulled)


def test_no_token_means_no_body_byte_read():
    """A 2 GB upload without a token wrote ~880 MB before its 401."""
    settings = GuardSettings(token="s3cret", upload_limit=25 * MB)
    assert _call(settings, _scope(content_length=str(2 * 1024 * MB)), chunks=2048) == (401, 0)


def test_declared_oversize_is_refused_before_reading():
    """A 2 GB upload grew the temp folder by 2,043 MB before its 413."""
    settings = GuardSettings(token="s3cret", upload_limit=25 * MB)
    scope = _scope(content_length=str(2 * 1024 * MB), authorization="Bearer s3cret")
    assert _call(settings, scope, chunks=2048) == (413, 0)


def test_undeclared_stream_is_cut_at_the_cap():
    settings = GuardSettings(upload_limit=5 * MB)  # 5 MB per file + 1 MB for the multipart framing
    status, pulled = _call(settings, _scope(), chunks=2048)  # chunked: no Content-Length
    assert status == 413 and pulled == 7  # stopped one chunk past the 6 MB cap, not 2 GB later
    assert _call(settings, _scope(), chunks=3) == (200, 3)
    assert _call(GuardSettings(upload_limit=5 * MB), _scope("/api/compare"), chunks=11) == (200, 11)  # two files


@pytest.mark.parametrize(("host", "status"), [
    ("127.0.0.1:8000", 200), ("localhost:8000", 200), ("[::1]:8000", 200), ("LOCALHOST", 200),
    ("rebind.example", 421), ("rebind.example:8000", 421), ("127.0.0.1.rebind.example", 421), ("", 421),
])
def test_host_allow_list_stops_dns_rebinding(host, status):
    """Fault 4: `Host: rebind.example` was answered 200 with the library's thumbnails."""
    assert _call(GuardSettings(), _scope("/api/thumbnail/1", "GET", host=host), chunks=1)[0] == status


def test_allowed_hosts_are_added_by_name_or_all():
    settings = GuardSettings(allowed_hosts=frozenset({"127.0.0.1", "photos.lan"}))
    assert _call(settings, _scope("/api/info", "GET", host="photos.lan:8000"), 1)[0] == 200
    assert _call(GuardSettings(allowed_hosts=frozenset({"*"})), _scope("/api/info", "GET", host="x.y"), 1)[0] == 200


@pytest.mark.parametrize(("headers", "status"), [
    ({"origin": "https://evil.example"}, 403),
    ({"origin": "null"}, 403),
    ({"sec_fetch_site": "cross-site"}, 403),
    ({"origin": "http://127.0.0.1:8000", "sec_fetch_site": "same-origin"}, 200),
    ({}, 200),  # curl, scripts: no Origin
])
def test_cross_site_mutations_are_refused(headers, status):
    assert _call(GuardSettings(), _scope(**headers), chunks=1)[0] == status


def test_cross_site_reads_of_the_api_are_refused_but_the_page_loads():
    assert _call(GuardSettings(), _scope("/api/thumbnail/3", "GET", sec_fetch_site="cross-site"), 1)[0] == 403
    assert _call(GuardSettings(), _scope("/", "GET", sec_fetch_site="cross-site"), 1)[0] == 200


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer abc.DEF-123", "abc.DEF-123"), ("bearer abc", "abc"), ("BEARER   abc==", "abc=="),
    ("abc", None), ("Basic YWxhZGRpbjpvcGVuc2VzYW1l", None), ("Bearer", None), ("Bearer a b", None),
    ("Bearerabc", None),
])
def test_bearer_is_parsed_per_rfc_6750(header, token):
    """Fault 10: `Authorization: SECRET` was accepted without a scheme and lower-case `bearer` refused."""
    assert bearer_token(header) == token


def test_health_needs_no_token_everything_else_does():
    settings = GuardSettings(token="s3cret")
    assert _call(settings, _scope("/api/health", "GET"), 1)[0] == 200
    assert _call(settings, _scope("/api/info", "GET", authorization="s3cret"), 1)[0] == 401
    assert _call(settings, _scope("/api/info", "GET", authorization="bearer s3cret"), 1)[0] == 200


@pytest.mark.parametrize("path", ["/api/jobs/" + "a" * 32 + "/cancel", "/api/dupes/undo", "/api/dupes/apply"])
def test_cancelling_a_job_and_moving_files_are_guarded_mutations(path):
    """A cross-site page must not stop a job or move files: Origin and token rules as for every mutation."""
    settings = GuardSettings(token="s3cret")
    token = "Bearer s3cret"
    assert _call(settings, _scope(path, "POST", origin="https://evil.example", authorization=token), 1)[0] == 403
    assert _call(settings, _scope(path, "POST", sec_fetch_site="cross-site", authorization=token), 1)[0] == 403
    assert _call(settings, _scope(path, "POST", origin="http://127.0.0.1:8000"), 1)[0] == 401
    assert _call(settings, _scope(path, "POST", origin="http://127.0.0.1:8000", authorization=token), 1)[0] == 200


@pytest.fixture
def live_server(tmp_path, photos, monkeypatch):
    """The real app under uvicorn on loopback, in this process (so the temp folder it spools to is ours)."""
    import socket
    import tempfile
    import threading
    import time

    import uvicorn

    import lookalike
    from lookalike.server.app import create_app

    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee", "rocket"):
        photos[name].save(folder / f"{name}.png")
    idx = lookalike.open(folder, model="phash")
    idx.update()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(idx, token="s3cret", upload_limit=10 * MB)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", spool
    server.should_exit = True
    thread.join(10)
    idx.close()


def _disk_use(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _streamed_upload(url: str, total: int, headers: dict, spool, peak: list) -> int:
    """POST a multipart body of `total` bytes in 1 MB chunks without Content-Length; record peak spool use."""
    import httpx

    boundary = "lookalikeboundary"

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jpg\"\r\n"
               "Content-Type: image/jpeg\r\n\r\n").encode()
        for _ in range(total // MB):
            peak.append(_disk_use(spool))
            yield b"\xff" * MB
        yield f"\r\n--{boundary}--\r\n".encode()

    try:
        response = httpx.post(url + "/api/search/image", content=body(), timeout=60,
                              headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"})
        return response.status_code
    except httpx.HTTPError:  # the server may close the connection while we still send: refused mid-stream
        return -1


@pytest.mark.slow
def test_big_uploads_never_reach_the_disk_past_the_cap(live_server):
    """Goal: a huge upload without a token writes < 1 MB to disk; with a token, less than the cap."""
    url, spool = live_server
    peak: list[int] = []
    assert _streamed_upload(url, 300 * MB, {}, spool, peak) in (401, -1)
    assert max(peak) < MB
    peak.clear()
    status = _streamed_upload(url, 300 * MB, {"Authorization": "Bearer s3cret"}, spool, peak)
    assert status in (413, -1) and max(peak) <= 11 * MB
    peak.clear()
    import httpx

    declared = httpx.post(url + "/api/search/image", headers={"Authorization": "Bearer s3cret"},
                          files={"file": ("ok.jpg", b"\xff" * (12 * MB), "image/jpeg")}, timeout=60)
    assert declared.status_code == 413 and _disk_use(spool) == 0
