"""The duplicate review's routes with the real app (TestClient) on real photos: groups with verification as a
job with progress and a cancel, copy regions, a review applied (files moved, index updated) and undone byte for
byte, a cancelled apply undone, and one manifest format shared with the CLI's `dupes --move-to/--undo`."""

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

import lookalike
import lookalike.dupes
import lookalike.moves
from tests.serving import serve_copy


def _serve(folder, sample_folder_template, model="phash"):
    yield from serve_copy(folder, sample_folder_template, model)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, sample_folder_template):
    """Read-only tests share one index (phash: no model to run)."""
    yield from _serve(tmp_path_factory.mktemp("review") / "photos", sample_folder_template)


@pytest.fixture
def served(tmp_path, sample_folder_template):
    """Tests that move files get a folder of their own."""
    yield from _serve(tmp_path / "photos", sample_folder_template)


def _finish(client, job: dict, status: str = "done") -> dict:
    deadline = time.time() + 120
    while job["status"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.05)
        job = client.get(job["url"]).json()
    assert job["status"] == status, job
    return job


def _digests(folder) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file() and ".lookalike" not in p.parts[len(folder.parts)]}


def test_dupes_payload_has_dates_folders_and_threshold_source(shared):
    client, _ = shared
    dupes = client.get("/api/dupes").json()
    assert dupes["threshold"] == 1 - 2 * 10 / 64 and dupes["threshold_source"] == "default for phash"
    keeper = dupes["groups"][0]["keeper"]
    assert keeper["mtime"] > 1e9 and keeper["folder"] in ("", "edited") and keeper["size"] > 0
    assert client.get("/api/dupes?threshold=0.9").json()["threshold_source"] == "set in the request"


@pytest.mark.slow
def test_verified_dupes_report_progress_and_copy_regions_inside_their_image(shared):
    client, _ = shared
    job = _finish(client, client.get("/api/dupes?verify=true&threshold=0.8").json())
    assert job["progress"]["done"] == job["progress"]["total"] > 0 and job["progress"]["what"] == "choosing keepers"
    members = {m["relative_path"]: m for g in job["result"]["groups"] for m in [g["keeper"], *g["duplicates"]]}
    regions = [m["region"] for m in members.values() if m.get("region")]
    assert any("crop80" in path for path in members)
    for region in regions:
        container = members[region["in"]]
        assert all(-2 <= x <= container["width"] + 2 and -2 <= y <= container["height"] + 2
                   for x, y in region["quad"]), (region, container["width"], container["height"])
    crop = members["edited/chelsea_crop80.png"]["region"]  # an 80 % centre crop: 10 % in from each side
    assert crop["in"] == "chelsea.png"
    (left, top), (right, bottom) = crop["quad"][0], crop["quad"][2]
    width, height = members["chelsea.png"]["width"], members["chelsea.png"]["height"]
    assert abs(left - 0.1 * width) < 6 and abs(top - 0.1 * height) < 6
    assert abs(right - 0.9 * width) < 6 and abs(bottom - 0.9 * height) < 6


@pytest.mark.slow
def test_a_running_verify_job_can_be_cancelled(shared, monkeypatch):
    client, _ = shared
    verifying, resume = threading.Event(), threading.Event()
    real = lookalike.dupes.RunImages.verify

    def held(self, a, b):  # the first verification waits until the test has asked to cancel
        verifying.set()
        resume.wait(30)
        return real(self, a, b)

    monkeypatch.setattr(lookalike.dupes.RunImages, "verify", held)
    started = client.get("/api/dupes?verify=true&threshold=0.99").json()
    assert verifying.wait(60)
    cancelled = client.post(f"{started['url']}/cancel").json()
    assert cancelled["cancel_requested"] and cancelled["status"] == "running"
    resume.set()
    job = _finish(client, cancelled, "cancelled")
    assert job["result"] is None and job["progress"]["done"] < job["progress"]["total"]
    assert client.post(f"{started['url']}/cancel").json()["status"] == "cancelled"  # idempotent
    assert client.post("/api/jobs/" + "0" * 32 + "/cancel").status_code == 404
    again = _finish(client, client.get("/api/dupes?verify=true&threshold=0.99").json())  # a new job, not joined
    assert again["id"] != started["id"]


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
    result = _finish(client, answer.json())["result"]
    assert {m["from"] for m in result["moved"]} == moved_paths
    assert not any((folder / p).exists() for p in moved_paths)
    assert result["manifest"].startswith(".lookalike-trash/") and result["manifest"].endswith(".jsonl")
    assert client.get("/api/info").json()["images"] == 31 - len(move)  # re-indexed: gone from results
    listed = client.get("/api/browse?limit=500").json()["images"]
    assert len(listed) == 31 - len(move) and not moved_paths & {i["relative_path"] for i in listed}
    assert before == {**_digests(folder), **{p: before[p] for p in moved_paths}}
    assert client.get("/api/dupes/manifests").json()["manifests"][0]["files"] == len(move)

    restored = _finish(client, client.post("/api/dupes/undo", json={"manifest": result["manifest"]}).json())
    assert set(restored["result"]["restored"]) == moved_paths
    assert _digests(folder) == before
    assert client.get("/api/info").json()["images"] == 31 == client.get("/api/browse").json()["total"]
    assert client.get("/api/dupes/manifests").json()["manifests"] == []


@pytest.mark.slow
def test_a_cancelled_apply_stops_between_moves_and_undo_restores_it(served, monkeypatch):
    client, folder = served
    before = _digests(folder)
    first_moved, resume = threading.Event(), threading.Event()
    real = lookalike.moves.move_file

    def held(source, target):  # the first move waits until the test has asked to cancel
        real(source, target)
        first_moved.set()
        resume.wait(30)

    monkeypatch.setattr(lookalike.moves, "move_file", held)
    groups = client.get("/api/dupes").json()["groups"]
    move = [d["id"] for g in groups for d in g["duplicates"]]
    started = client.post("/api/dupes/apply", json={"move": move}).json()
    assert first_moved.wait(60)
    client.post(f"{started['url']}/cancel")
    resume.set()
    job = _finish(client, started, "cancelled")
    [moved] = job["result"]["moved"]
    assert not (folder / moved["from"]).exists() and (folder / moved["to"]).is_file()
    assert len(_digests(folder)) == 31 - 1 == client.get("/api/info").json()["images"]  # re-indexed all the same
    monkeypatch.setattr(lookalike.moves, "move_file", real)
    _finish(client, client.post("/api/dupes/undo", json={"manifest": job["result"]["manifest"]}).json())
    assert _digests(folder) == before


def _cli(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "lookalike.cli", *map(str, args)], cwd=cwd, env=env, check=True,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_one_manifest_format_for_page_and_cli(served):
    """A review applied on the page is undone by `lookalike dupes --undo`, and a CLI `--move-to --apply` by the
    page's undo: byte for byte both ways."""
    client, folder = served
    before = _digests(folder)
    group = client.get("/api/dupes").json()["groups"][0]
    result = _finish(client, client.post("/api/dupes/apply", json={"move": [group["duplicates"][0]["id"]]})
                     .json())["result"]
    assert _digests(folder) != before
    undone = _cli("dupes", "--undo", folder / result["manifest"], cwd=folder)
    assert "restored" in undone.stderr and _digests(folder) == before

    _cli("dupes", "--move-to", folder / ".lookalike-trash" / "from-cli", "--apply", cwd=folder)
    assert len(_digests(folder)) < len(before)
    [pending] = client.get("/api/dupes/manifests").json()["manifests"]
    assert pending["manifest"].startswith(".lookalike-trash/from-cli/lookalike-moves-")
    restored = _finish(client, client.post("/api/dupes/undo", json={"manifest": pending["manifest"]}).json())
    assert len(restored["result"]["restored"]) == pending["files"] and _digests(folder) == before


def test_apply_and_undo_refuse_bad_requests(shared, tmp_path):
    client, folder = shared
    assert client.post("/api/dupes/apply", json={"move": []}).status_code == 400
    for manifest in ["../../etc/passwd", "/etc/passwd", "nothing.jsonl"]:
        job = _finish(client, client.post("/api/dupes/undo", json={"manifest": manifest}).json(), "failed")
        assert "not a path inside" in job["error"] or "no move manifest" in job["error"]
    outside = tmp_path / "elsewhere.png"  # a manifest inside the folder that names files outside it
    outside.write_bytes(b"x")
    trash = folder / ".lookalike-trash" / "forged"
    lookalike.moves.move_files([(outside, trash / "elsewhere.png")], trash)
    [forged] = client.get("/api/dupes/manifests").json()["manifests"]
    job = _finish(client, client.post("/api/dupes/undo", json={"manifest": forged["manifest"]}).json(), "failed")
    assert "outside the indexed folder" in job["error"] and not outside.exists()
    shutil.rmtree(folder / ".lookalike-trash")
    job = _finish(client, client.post("/api/dupes/apply", json={"move": [999999]}).json(), "failed")
    assert "999999" in job["error"]
