"""The web page in a real browser (Debian's chromium driven by Playwright) against the real `lookalike serve`."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed"),
              pytest.mark.slow]
AXE = Path(__file__).parent / "emulators" / "node_modules" / "axe-core" / "axe.min.js"
LOOPBACK = re.compile(r"^(?:https?|wss?)://(?:127\.\d+\.\d+\.\d+|\[::1\]|localhost)(?::\d+)?/")
WIDTHS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
SCREENSHOTS = Path(os.environ.get("LOOKALIKE_SCREENSHOTS", "test-screenshots"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, folder: Path, model: str, *serve_args: str) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
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

        page.check("#copies")  # copy lookup: the same upload searched again, results labelled with copy scores
        page.wait_for_selector("#status:has-text('copy lookup with')")
        assert "copies=1" in page.url
        assert page.locator("#results .card .badge").first.inner_text().startswith("copy ")
        assert "chelsea" in page.locator("#results .card .path").first.inner_text()
        _shot(page, "search-copies-desktop.png")
        page.uncheck("#copies")
        page.wait_for_selector("#status:not(:has-text('copy lookup'))")

        page.locator("#results .card").nth(8).click()  # the viewer, then more like this
        page.click("#viewer-similar")
        page.wait_for_selector("#status:has-text('results for')")

        page.click("header nav a[data-view=dupes]")
        page.click("#load-dupes")
        page.wait_for_selector("#dupes .group")
        assert page.locator("#dupes .group").count() == 3
        assert page.locator("#dupes .member.keeper").count() == 3
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
        page.click("header nav a[data-view=search]")
        page.fill("#text", "a teddy bear")
        page.press("#text", "Enter")
        page.wait_for_selector("#results .card")
        assert page.locator("#results .card").count() == 24
        assert "a teddy bear" in page.inner_text("#status") and "q=a+teddy+bear" in page.url  # bookmarkable
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


def offline_page(browser, width: str):
    """A page at a given width that can reach only loopback: every other request is aborted (and recorded)."""
    context = browser.new_context(viewport=WIDTHS[width], is_mobile=width == "phone", has_touch=width == "phone")
    page = context.new_page()
    page.blocked = []

    def guard(route) -> None:
        if LOOPBACK.match(route.request.url) or route.request.url.startswith(("blob:", "data:")):
            route.continue_()
        else:
            page.blocked.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    return page


def axe_violations(page) -> list[str]:
    """Serious and critical axe-core violations on the page as it is now."""
    if not AXE.is_file():
        pytest.fail(f"axe-core missing: run `npm ci --prefix {AXE.parents[2]}`")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate("axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map(v => "
                          "({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3)})))")
    return [f"{v['id']} ({v['impact']}): {v['nodes']}" for v in found if v["impact"] in ("serious", "critical")]


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_browse_viewer_keyboard_and_history(sample_folder, browser, width):
    server = Server(sample_folder, "efficientnet-lite0")
    try:
        page = offline_page(browser, width)
        page.goto(server.url)
        page.wait_for_function("document.querySelectorAll('#gallery .card img[src^=\"blob:\"]').length === 31")
        assert "view=browse" not in page.url and page.locator("[aria-current=page]").inner_text() == "Browse"
        assert axe_violations(page) == []
        _shot(page, f"browse-{width}.png")

        page.select_option("#sort", "name")
        page.wait_for_selector("#gallery[aria-busy=false]")
        assert "sort=name" in page.url
        names = [p.rsplit("/", 1)[-1].lower() for p in page.locator("#gallery .card .path").all_inner_texts()]
        assert names == sorted(names)
        page.select_option("#folder", "edited")
        page.wait_for_selector("#gallery[aria-busy=false]")
        assert "folder=edited" in page.url
        page.wait_for_function("document.querySelectorAll('#gallery .card').length === 15")
        paths = page.locator("#gallery .card .path").all_inner_texts()
        assert all(p.startswith("edited/") for p in paths) and page.evaluate("document.documentElement.scrollWidth") \
            <= WIDTHS[width]["width"]

        page.focus("#gallery .card >> nth=0")  # cards are links: reachable with Tab, opened with Enter
        page.keyboard.press("Enter")
        page.wait_for_selector("#viewer:not([hidden])")
        assert page.inner_text("#viewer-title") == paths[0] and "image=" in page.url
        page.wait_for_function("document.getElementById('viewer-image').naturalWidth > 256")
        assert axe_violations(page) == []
        _shot(page, f"viewer-{width}.png")
        page.keyboard.press("ArrowRight")
        page.wait_for_function(f"document.getElementById('viewer-title').textContent === {paths[1]!r}")
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowRight")
        page.wait_for_function(f"document.getElementById('viewer-title').textContent === {paths[1]!r}")
        page.keyboard.press("Escape")
        page.wait_for_selector("#viewer", state="hidden")

        page.go_back()  # the viewer again, on the image it was closed on
        page.wait_for_selector("#viewer:not([hidden])")
        assert page.inner_text("#viewer-title") == paths[1]
        page.go_back()  # the edited folder, no viewer
        page.wait_for_selector("#viewer", state="hidden")
        page.go_back()  # sorted by name, every folder
        page.wait_for_function("document.querySelectorAll('#gallery .card').length === 31")
        assert "folder=" not in page.url and page.input_value("#sort") == "name"

        image_id = page.locator("#gallery .card >> nth=2").get_attribute("data-id")
        page.goto(f"{server.url}/?view=search&similar={image_id}")  # a bookmarked search
        page.wait_for_selector("#status:has-text('results for')")
        status = page.inner_text("#status")
        assert re.match(r"\d+ results for \S+\.(png|jpg) ", status) and "#" not in status, status
        assert page.blocked == []
    finally:
        server.stop()


def _digests(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file() and not p.relative_to(folder).parts[0].startswith(".lookalike")}


def test_dupes_review_apply_and_undo(sample_folder, browser):
    server = Server(sample_folder, "efficientnet-lite0")
    before = _digests(sample_folder)
    try:
        for width in ["desktop", "phone"]:
            page = offline_page(browser, width)
            page.goto(server.url + "/?view=dupes")
            page.click("#load-dupes")
            page.wait_for_selector("#dupes .group")
            assert page.locator("#dupes .group").count() == 3
            status = page.inner_text("#dupes-status")
            assert "threshold 0.750 (default for efficientnet-lite0)" in status, status
            page.wait_for_function("[...document.querySelectorAll('#dupes .card img')].every(i => i.naturalWidth > 0)")
            assert axe_violations(page) == []
            _shot(page, f"dupes-{width}.png")
            assert page.evaluate("document.documentElement.scrollWidth") <= WIDTHS[width]["width"]

        keeper_paths = page.locator("#dupes .member.keeper .full-path").all_inner_texts()
        first_group = page.locator("#dupes .group >> nth=0")
        moved = first_group.locator(".member:not(.keeper) .full-path").all_inner_texts()
        first_group.locator(".member:not(.keeper) >> nth=0").locator("input[value=keep]").check()  # keep one copy
        kept_copy, moved = moved[0], moved[1:]
        for group in range(1, 3):  # the other groups: keep everything
            for radio in page.locator(f"#dupes .group >> nth={group}").locator("input[value=keep]").all():
                radio.check()
        members = page.locator("#dupes .member").count()
        assert page.inner_text("#review-summary") == f"{len(moved)} to move, {members - len(moved)} to keep"
        page.click("#apply")
        page.wait_for_selector("#dupes-status >> text=/^Moved \\d+ files/")
        assert not any((sample_folder / p).exists() for p in moved)
        assert all((sample_folder / p).exists() for p in [*keeper_paths, kept_copy])
        trash = list((sample_folder / ".lookalike-trash").glob("*/lookalike-moves-*.jsonl"))
        assert len(trash) == 1  # the CLI's move journal: `lookalike dupes --undo` takes it too
        page.wait_for_selector(f"#info:has-text('{31 - len(moved)} images')")
        _shot(page, "dupes-applied-phone.png")

        page.click("#undo")
        page.wait_for_selector("#dupes-status >> text=/^Put back \\d+ files/")
        assert _digests(sample_folder) == before
        assert page.locator("#earlier").is_hidden()  # nothing left to put back
        page.wait_for_selector("#info:has-text('31 images')")

        env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # the CLI moves; the page lists its manifest and puts it back
        subprocess.run([sys.executable, "-m", "lookalike.cli", "dupes", "--move-to",
                        str(sample_folder / ".lookalike-trash" / "from-cli"), "--apply"], cwd=sample_folder, env=env,
                       check=True, capture_output=True, timeout=300)
        assert _digests(sample_folder) != before
        page.click("#load-dupes")
        page.wait_for_selector("#earlier:not([hidden]) li:has-text('from-cli')", state="attached")
        page.click("#earlier summary")
        page.click("#earlier li button")
        page.wait_for_selector("#dupes-status >> text=/^Put back \\d+ files/")
        assert _digests(sample_folder) == before and page.locator("#earlier").is_hidden()
        assert page.blocked == []

        docs = offline_page(browser, "desktop")  # Swagger UI renders from the package's assets, offline
        docs.goto(server.url + "/docs")
        docs.wait_for_selector(".opblock-summary-path[data-path=\"/api/browse\"]")
        docs.click(".opblock-summary-path[data-path=\"/api/browse\"]")
        docs.wait_for_selector(".model-box, .response-col_description")
        _shot(docs, "docs-desktop.png")
        assert docs.blocked == []
    finally:
        server.stop()


CONTENT_BOX = """(polygon) => {  // the polygon's box and the image's drawn area (object-fit: contain), in page pixels
  const img = polygon.closest('.card').querySelector('img'), box = img.getBoundingClientRect();
  const scale = Math.min(box.width / img.naturalWidth, box.height / img.naturalHeight);
  const width = img.naturalWidth * scale, height = img.naturalHeight * scale;
  const left = box.left + (box.width - width) / 2, top = box.top + (box.height - height) / 2;
  const p = polygon.getBoundingClientRect();
  return {image: [left, top, width, height], polygon: [p.left, p.top, p.width, p.height]};
}"""


def test_verify_progress_cancel_and_copy_boxes(sample_folder, browser):
    """The verification job shows a progress bar with a Cancel button that stops it; once it runs to the end,
    each verified crop is outlined on its original where it sits, scaled to the displayed thumbnail."""
    server = Server(sample_folder, "efficientnet-lite0")
    try:
        for width in ["desktop", "phone"]:
            page = offline_page(browser, width)
            page.set_default_timeout(180_000)
            page.goto(server.url + "/?view=dupes")
            page.check("#verify")
            page.click("#load-dupes")
            page.wait_for_selector("#job:not([hidden])")
            page.wait_for_function("/^\\d+ \\/ \\d+$/.test(document.getElementById('job-count').textContent)")
            assert page.get_attribute("#job-bar", "max") not in (None, "1") and page.is_enabled("#job-cancel")
            assert axe_violations(page) == []
            _shot(page, f"cancel-{width}.png")
            page.click("#job-cancel")
            page.wait_for_selector("#dupes-status:has-text('Cancelled')")
            assert page.locator("#job").is_hidden() and page.locator("#dupes .group").count() == 0

            page.click("#load-dupes")  # again, to the end: a new job, not the cancelled one
            page.wait_for_selector("#dupes .group")
            page.wait_for_function("[...document.querySelectorAll('#dupes .card img')].every(i => i.naturalWidth > 0)")
            crops = page.locator("#dupes .member.keeper svg.region polygon[data-copy$='_crop80.png']")
            assert crops.count() == 3  # chelsea, astronaut, coffee: each crop outlined on its original
            for number in range(3):
                found = crops.nth(number).evaluate(CONTENT_BOX)
                (left, top, w, h), (p_left, p_top, p_w, p_h) = found["image"], found["polygon"]
                assert left - 1 <= p_left and p_left + p_w <= left + w + 1, found  # inside the drawn image
                assert top - 1 <= p_top and p_top + p_h <= top + h + 1, found
                assert abs(p_w / w - 0.8) < 0.05 and abs(p_h / h - 0.8) < 0.05, found  # an 80 % centre crop
                assert abs((p_left - left) / w - 0.1) < 0.03 and abs((p_top - top) / h - 0.1) < 0.03, found
            assert "outlined: where" in page.locator("#dupes .member.keeper .details").first.inner_text()
            assert axe_violations(page) == []
            assert page.evaluate("document.documentElement.scrollWidth") <= WIDTHS[width]["width"]
            _shot(page, f"dupes-boxes-{width}.png")
            assert page.blocked == []
    finally:
        server.stop()
