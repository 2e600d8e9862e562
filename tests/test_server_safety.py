import pytest

from lookalike.server.safety import RequestRejected, check_public_host, fetch_url


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x.jpg", "http://localhost:8000/x.jpg", "http://10.1.2.3/a.png", "http://192.168.0.10/a.png",
    "http://169.254.169.254/latest/meta-data", "http://[::1]/a.png", "http://0.0.0.0/a.png",
])
def test_internal_addresses_are_refused(url):
    with pytest.raises(RequestRejected) as caught:
        check_public_host(url)
    assert caught.value.status == 403


def test_only_http_urls(tmp_path):
    for url in ("file:///etc/passwd", "ftp://example.com/a.jpg", "gopher://x"):
        with pytest.raises(RequestRejected, match="only http"):
            check_public_host(url)


def test_private_urls_allowed_when_asked_with_size_cap(local_http):
    body = b"x" * 5000
    url = local_http(body)
    with pytest.raises(RequestRejected):
        fetch_url(url + "/image")  # loopback refused by default
    assert fetch_url(url + "/redirect", allow_private=True) == body
    with pytest.raises(RequestRejected) as caught:
        fetch_url(url + "/image", max_bytes=1000, allow_private=True)
    assert caught.value.status == 413


@pytest.fixture
def recording_http():
    """A loopback HTTP server that records each request's Host header; /drip sends a byte every 0.2 s."""
    import http.server
    import threading
    import time

    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            seen.append(self.headers.get("Host"))
            if self.path == "/drip":
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                for _ in range(1000):
                    try:
                        self.wfile.write(b"x")
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(0.2)
                return
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], seen
    server.shutdown()


def test_the_checked_address_is_the_one_connected_to(recording_http, monkeypatch):
    """Fault 3: the guard and the download each resolved the name; a DNS answer could change in between."""
    import socket

    from lookalike.server import safety

    port, seen = recording_http
    answers = iter([[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]])

    def resolve_once(host, *args, **kwargs):
        assert host == "photos.invalid"
        return next(answers)  # a second resolution would raise StopIteration

    monkeypatch.setattr(safety.socket, "getaddrinfo", resolve_once)
    assert fetch_url(f"http://photos.invalid:{port}/image", allow_private=True) == b"hello"
    assert seen == [f"photos.invalid:{port}"]  # the name travels in Host, the connection goes to the checked IP


@pytest.mark.slow
def test_a_slow_drip_download_stops_at_the_overall_deadline(recording_http):
    """Fault 3: slow-drip URLs never tripped a read timeout and held every worker (/api/health: 37.6 s)."""
    import time

    port, _ = recording_http
    started = time.monotonic()
    with pytest.raises(RequestRejected, match="within 1 s") as caught:
        fetch_url(f"http://127.0.0.1:{port}/drip", allow_private=True, deadline=1.0)
    assert caught.value.status == 400 and time.monotonic() - started < 3


@pytest.mark.slow
def test_only_a_few_downloads_run_at_once(recording_http):
    import asyncio

    from lookalike.server.safety import MAX_FETCHES, fetch

    port, _ = recording_http

    async def main():
        tasks = [asyncio.ensure_future(fetch(f"http://127.0.0.1:{port}/drip", allow_private=True, deadline=1.0))
                 for _ in range(MAX_FETCHES + 2)]
        return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = asyncio.run(main())
    busy = [o for o in outcomes if isinstance(o, RequestRejected) and o.status == 503]
    assert len(busy) == 2 and all(b.retry_after for b in busy)
    assert sum(isinstance(o, RequestRejected) and "within" in str(o) for o in outcomes) == MAX_FETCHES


def test_a_declared_oversize_download_is_refused_before_reading(local_http):
    url = local_http(b"y" * 50_000)
    with pytest.raises(RequestRejected) as caught:
        fetch_url(url + "/image", max_bytes=10_000, allow_private=True)
    assert caught.value.status == 413
