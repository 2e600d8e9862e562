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
