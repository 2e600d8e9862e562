"""The web page in a real browser (Debian's chromium driven by Playwright) against the real `lookalike serve`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")
SCREENSHOTS = Path(os.environ.get("LOOKALIKE_SCREENSHOTS", "test-screenshots"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, folder: Path, model: str, *serve_args: str) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "LOOKALIKE_RUNTIME": "auto"}
        subprocess.run([sys.executable, "-m", "lookalike.cli", "index", str(folder), "--model", model], env=env,
                       check=True, capture_output=True, timeout=300)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, "-m", "lookalike.cli", "serve", "--port", str(self.port),
                                         *serve_args],
                                        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/api/health", timeout=1)
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(self.process.stderr.read().decode()) from None
                time.sleep(0.3)
        raise TimeoutError("server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()


def test_upload_shows_the_original_first_then_duplicates_view(sample_folder, tmp_path, photos, browser):
    server = Server(sample_folder, "efficientnet-lite0")
    try:
        query = tmp_path / "my cat.jpg"
        photos["chelsea"].resize((300, 200)).save(query, quality=60)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(server.url)
        page.wait_for_selector("#info:has-text('31 images')")
        page.set_input_files("#file", str(query))
        page.wait_for_selector("#results .card")
        first_paths = page.locator("#results .card .path").all_inner_texts()[:6]
        assert all("chelsea" in p for p in first_paths), first_paths
        assert "results for my cat.jpg" in page.inner_text("#status")
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "search.png"), full_page=True)

        page.locator("#results .card").nth(8).click()  # more like this
        page.wait_for_selector("#status:has-text('results for')")

        page.click("nav button[data-view=dupes]")
        page.click("#load-dupes")
        page.wait_for_selector("#dupes .group")
        assert page.locator("#dupes .group").count() == 3
        assert page.locator("#dupes .card.keep").count() == 3
        page.screenshot(path=str(SCREENSHOTS / "dupes.png"), full_page=True)

        phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
        phone.goto(server.url)
        phone.wait_for_selector("#info:has-text('31 images')")
        phone.set_input_files("#file", str(query))
        phone.wait_for_selector("#results .card")
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390  # no sideways scrolling on a phone
        phone.screenshot(path=str(SCREENSHOTS / "phone.png"), full_page=True)
    finally:
        server.stop()


def test_text_query_with_clip(sample_folder, tiny_clip_dir, browser):
    server = Server(sample_folder, str(tiny_clip_dir))
    try:
        page = browser.new_page()
        page.goto(server.url)
        page.wait_for_selector("#info:has-text('31 images')")
        page.fill("#text", "a teddy bear")
        page.press("#text", "Enter")
        page.wait_for_selector("#results .card")
        assert page.locator("#results .card").count() == 24
        assert "a teddy bear" in page.inner_text("#status")
    finally:
        server.stop()


def test_token_stays_in_memory_and_in_headers(sample_folder, tmp_path, photos, browser):
    """Fault 10: the page put ?token= into image URLs (logs, history). Now it arrives in the fragment, is removed
    from the address bar, and every request, thumbnails included, carries it only in Authorization."""
    server = Server(sample_folder, "efficientnet-lite0", "--token", "s3cret-token")
    try:
        page = browser.new_page()
        requests: list[tuple[str, str | None]] = []
        page.on("request", lambda r: requests.append((r.url, r.headers.get("authorization"))))
        page.goto(server.url + "/#token=s3cret-token")
        page.wait_for_selector("#info:has-text('31 images')")
        assert "s3cret" not in page.url
        query = tmp_path / "cat.jpg"
        photos["chelsea"].resize((300, 200)).save(query, quality=60)
        page.set_input_files("#file", str(query))
        page.wait_for_selector("#results .card img[src^='blob:']")
        page.wait_for_function("[...document.querySelectorAll('#results .card img')].some(i => i.naturalWidth > 0)")
        api_calls = [(url, auth) for url, auth in requests if "/api/" in url]
        assert any("/api/thumbnail/" in url for url, _ in api_calls)
        assert all(auth == "Bearer s3cret-token" for _, auth in api_calls)
        assert not [url for url, _ in requests if "s3cret" in url]
    finally:
        server.stop()
