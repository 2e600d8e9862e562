"""End-to-end: the real `lookalike` command on fixture folders, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lookalike.api import Index

LOOKALIKE = [sys.executable, "-m", "lookalike.cli"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160", "NO_COLOR": "1"}


def run(*args, cwd=None, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([*LOOKALIKE, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=ENV,
                            timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"lookalike {args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def indexed(sample_folder):
    run("index", sample_folder, "--model", "efficientnet-lite0")
    return sample_folder


@pytest.mark.slow
def test_index_search_json_finds_the_original_of_an_edited_query(indexed, tmp_path, photos):
    query = tmp_path / "query cat.jpg"
    photos["chelsea"].resize((200, 133)).save(query, quality=50)
    out = run("search", query, "--top", "6", "--json", "--db", indexed / ".lookalike")
    [result] = json_lines(out.stdout)
    assert result["query"] == str(query)
    paths = [r["relative_path"] for r in result["results"]]
    assert len(paths) == 6 and all("chelsea" in p for p in paths)
    first = result["results"][0]
    assert Path(first["path"]).is_file() and first["path"].startswith(str(indexed))
    assert 0.8 < first["score"] <= 1.0 and first["percent"] == pytest.approx((first["score"] + 1) * 50, abs=0.01)


@pytest.mark.slow
def test_several_queries_give_one_json_line_each_and_a_table_otherwise(indexed):
    out = run("search", indexed / "rocket.png", indexed / "moon.png", "-k", "2", "--json", cwd=indexed)
    lines = json_lines(out.stdout)
    assert [line["results"][0]["relative_path"] for line in lines] == ["rocket.png", "moon.png"]
    assert lines[0]["results"][0]["score"] == pytest.approx(1.0, abs=2e-3)
    table = run("search", "rocket.png", "-k", "3", cwd=indexed).stdout
    assert "cosine" in table and "rocket.png" in table and "1.0000" in table and "%" not in table
    assert table.index("not matches from here") > table.index("rocket.png")  # the break after the one match
    paths = run("search", "rocket.png", "-k", "3", "--paths", cwd=indexed).stdout.splitlines()
    assert len(paths) == 3 and paths[0] == str(indexed / "rocket.png")


@pytest.mark.slow
def test_rerun_summary_and_info(indexed, photos):
    photos["rocket"].rotate(90, expand=True).save(indexed / "edited" / "rocket turned.png")
    (indexed / "moon.png").rename(indexed / "edited" / "moon moved.png")
    out = run("index", indexed, "--json")
    summary = json.loads(out.stdout)
    assert (summary["added"], summary["moved"], summary["embedded"], summary["images"]) == (1, 1, 1, 32)
    info = json.loads(run("info", "--json", cwd=indexed / "edited").stdout)
    assert info["model"] == "efficientnet-lite0" and info["dim"] == 1280 and info["images"] == 32
    assert info["size_bytes"] > 32 * 1280 * 2
    assert "last update" in run("info", cwd=indexed).stdout
    run("search", indexed / "edited" / "rocket turned.png", "-k", "1", cwd=indexed)
    assert json.loads(run("info", "--json", cwd=indexed).stdout)["search_structure"] == "exact float16, 32 vectors"


@pytest.mark.slow
def test_nested_unicode_empty_and_corrupt_folders(tmp_path, photos):
    root = tmp_path / "fotos von Zoë"
    (root / "année 2024" / "été").mkdir(parents=True)
    (root / "empty folder").mkdir()
    photos["coffee"].save(root / "année 2024" / "été" / "café ☕.jpg")
    photos["clock"].save(root / "horloge.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "zero.png").write_bytes(b"")
    out = run("index", root, "--model", "efficientnet-lite0")
    assert "2 images indexed" in out.stdout and "skipped 2" in out.stdout
    assert "broken.jpg" in out.stdout and "zero.png" in out.stdout
    result = json_lines(run("search", root / "année 2024" / "été" / "café ☕.jpg", "--json", cwd=root).stdout)[0]
    assert result["results"][0]["relative_path"] == "année 2024/été/café ☕.jpg"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "0 images indexed" in run("index", empty, "--model", "phash").stdout
    assert "(no results)" in run("search", root / "horloge.png", "--db", empty / ".lookalike").stdout


@pytest.mark.slow
def test_compare_shows_why_hashes_disagree(indexed):
    out = run("compare", indexed / "chelsea.png", indexed / "edited" / "chelsea_half.png", cwd=indexed)
    assert "file MD5" in out.stdout and "pixel MD5" in out.stdout and "pHash" in out.stdout
    assert "efficientnet-lite0" in out.stdout  # the index's model is used inside an indexed folder
    data = json.loads(run("compare", indexed / "chelsea.png", indexed / "edited" / "chelsea_resaved.png", "--json",
                          "--model", "efficientnet-lite0").stdout)
    assert data["file_md5_equal"] is False and data["pixel_md5_equal"] is True and data["cosine"] > 0.999


@pytest.mark.slow
def test_errors_are_one_line_without_traceback(indexed, tmp_path):
    text = run("search", "--text", "a cat", cwd=indexed, check=False)
    assert text.returncode == 1 and "Traceback" not in text.stderr
    assert "images only" in text.stderr and "--model clip" in text.stderr
    missing = run("search", "nowhere.jpg", cwd=indexed, check=False)
    assert missing.returncode == 1 and "image file not found: nowhere.jpg" in missing.stderr
    no_index = run("search", indexed / "rocket.png", cwd=tmp_path, check=False)
    assert no_index.returncode == 1 and "lookalike index PHOTOS_DIR" in no_index.stderr
    other_model = run("index", indexed, "--model", "phash", check=False)
    assert other_model.returncode == 1 and "--reindex" in other_model.stderr


@pytest.mark.slow
def test_offline_clip_fails_readably_and_leaves_no_index(tmp_path, photos):
    photos["rocket"].save(tmp_path / "rocket.png")
    env = {**ENV, "HF_HOME": str(tmp_path / "empty-hf-cache")}
    result = subprocess.run([*LOOKALIKE, "index", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert "openai/clip-vit-base-patch32" in message and "efficientnet-lite0" in message
    assert not (tmp_path / ".lookalike" / "index.db").exists()


@pytest.mark.slow
def test_clip_text_search_through_a_local_checkpoint(sample_folder, tiny_clip_dir):
    run("index", sample_folder, "--model", tiny_clip_dir)
    out = run("search", "--text", "a teddy bear", "--text", "-night", "-k", "4", "--json", cwd=sample_folder)
    [result] = json_lines(out.stdout)
    assert result["query"] == "a teddy bear + -night" and len(result["results"]) == 4
    mixed = json_lines(run("search", "rocket.png", "--text", "0.1:a rocket", "-k", "1", "--json",
                           cwd=sample_folder).stdout)[0]
    assert mixed["results"][0]["relative_path"] == "rocket.png"


def _distinct_images(folder: Path, photos, count: int) -> None:
    """`count` different images (crops at different places), so no file can reuse another's vector."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(photos)
    for i in range(count):
        photo = photos[names[i % len(names)]]
        left, top = (i * 7) % 60, (i * 5) % 40
        photo.crop((left, top, left + 140, top + 120)).save(folder / f"img{i:03d}.png")


def _snapshot(db_file: Path) -> dict[str, tuple[str, np.ndarray]]:
    conn = sqlite3.connect(db_file)
    rows = conn.execute("SELECT path, content_hash, vector FROM images").fetchall()
    conn.close()
    return {p: (h, np.frombuffer(v, np.float16).astype(np.float32)) for p, h, v in rows}


@pytest.mark.slow
def test_kill_9_mid_index_then_rerun_equals_an_uninterrupted_run(tmp_path, photos):
    folder = tmp_path / "many"
    _distinct_images(folder, photos, 80)
    db = folder / ".lookalike" / "index.db"
    process = subprocess.Popen([*LOOKALIKE, "index", str(folder), "--model", "efficientnet-lite0",
                                "--batch-size", "2"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    committed = 0
    while time.time() < deadline and process.poll() is None:
        if db.exists():
            try:
                committed = sqlite3.connect(db).execute("SELECT COUNT(*) FROM images").fetchone()[0]
            except sqlite3.Error:
                committed = 0
            if committed >= 6:
                break
        time.sleep(0.05)
    assert process.poll() is None, "indexing finished before it could be killed; make the folder bigger"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    partial = _snapshot(db)
    assert 6 <= len(partial) < 80  # the index opens and holds what was committed

    run("index", folder)  # resumes with the recorded model
    resumed = _snapshot(db)
    run("index", folder, "--model", "efficientnet-lite0", "--db", tmp_path / "clean.db")
    clean = _snapshot(tmp_path / "clean.db")
    assert resumed.keys() == clean.keys() and len(clean) == 80
    for path, (content_hash, vector) in clean.items():
        assert resumed[path][0] == content_hash
        assert float(resumed[path][1] @ vector) > 0.999


@pytest.mark.slow
def test_search_while_the_index_is_being_written(tmp_path, photos):
    folder = tmp_path / "growing"
    _distinct_images(folder, photos, 16)
    run("index", folder, "--model", "efficientnet-lite0")
    _distinct_images(folder / "more", {k: v.transpose(0) for k, v in photos.items()}, 60)
    failures, searches = [], []

    def search_repeatedly(stop: threading.Event) -> None:
        with Index.open(db=folder / ".lookalike") as idx:
            while not stop.is_set():
                try:
                    searches.append(len(idx.search(image=folder / "img000.png", k=3).matches))
                except Exception as exc:  # noqa: BLE001 - reported by the assertion
                    failures.append(repr(exc))

    stop = threading.Event()
    reader = threading.Thread(target=search_repeatedly, args=(stop,))
    reader.start()
    try:
        run("index", folder, "--batch-size", "4")
    finally:
        stop.set()
        reader.join()
    assert failures == [] and len(searches) > 3 and set(searches) == {3}
    with Index.open(db=folder / ".lookalike") as idx:
        assert idx.info().images == 76


def test_console_script_is_installed():
    beside = Path(sys.executable).parent / "lookalike"  # the virtual environment's bin/, active or not
    script = str(beside) if beside.is_file() else shutil.which("lookalike")
    if script is None:
        pytest.skip("package not installed with its console script")
    out = subprocess.run([script, "--help"], capture_output=True, text=True, env=ENV, timeout=60)
    assert out.returncode == 0 and "search" in out.stdout and "index" in out.stdout


@pytest.mark.slow
def test_dupes_reports_and_dry_run(indexed, tmp_path):
    out = run("dupes", "--json", "--csv", tmp_path / "d.csv", "--html", tmp_path / "d.html", cwd=indexed)
    groups = json.loads(out.stdout)["groups"]
    assert len(groups) == 3 and all(len(g["duplicates"]) == 5 for g in groups)
    assert (tmp_path / "d.csv").read_text().count("\n") == 19 and "KEEP" in (tmp_path / "d.html").read_text()
    plan = run("dupes", "--move-to", tmp_path / "moved", cwd=indexed)
    assert "[dry run] move" in plan.stderr and "3 groups, 15 duplicates" in plan.stdout
    assert not (tmp_path / "moved").exists()
    cross = run("dupes", "--against", indexed / "edited", "--json", cwd=indexed)
    assert all(json.loads(line)["matches"] for line in cross.stdout.splitlines())


@pytest.mark.slow
def test_recognize_and_cluster_commands(indexed, tmp_path, photos):
    categories = tmp_path / "categories"
    for name in ("chelsea", "rocket"):
        (categories / name).mkdir(parents=True)
        photos[name].crop((0, 0, photos[name].width * 3 // 5, photos[name].height)).save(categories / name / "a.png")
    query = tmp_path / "cat.png"
    photos["chelsea"].crop((photos["chelsea"].width * 2 // 5, 0, photos["chelsea"].width, 300)).save(query)
    result = json.loads(run("recognize", query, "--categories", categories, "--json", "--learn", cwd=indexed).stdout)
    assert result["label"] == "chelsea" and result["runner_up"] == "rocket" and result["learned"]
    assert (categories / "chelsea" / "cat.png").exists()
    clusters = json.loads(run("cluster", "--json", "--k", "4", "--map", tmp_path / "map.png", cwd=indexed).stdout)
    assert clusters["k"] == 4 and len(clusters["images"]) == 31 and (tmp_path / "map.png").stat().st_size > 1000
    chelsea = {i["cluster"] for i in clusters["images"] if "chelsea" in i["relative_path"]}
    assert len(chelsea) == 1


@pytest.mark.slow
def test_fusion_search_command(sample_folder, tiny_clip_dir):
    run("index", sample_folder, "--model", tiny_clip_dir)
    out = run("search", "rocket.png", "--labels", "--image-weight", "1", "-k", "3", "--json", cwd=sample_folder)
    [result] = json_lines(out.stdout)
    assert result["results"][0]["relative_path"] == "rocket.png" and result["results"][0]["label"] == "rocket"
    assert {"image_score", "label_score", "score"} <= set(result["results"][0])


@pytest.mark.slow
def test_eval_and_calibrate_commands(indexed, tmp_path, photos):
    originals = tmp_path / "originals"
    originals.mkdir()
    for name in ("chelsea", "rocket", "coffee", "coins", "flower"):
        photos[name].save(originals / f"{name}.png")
    out = run("eval", "copydetect", originals, "--models", "phash,md5", "--families", "resaved,resize-50",
              "--out", tmp_path / "eval")
    assert "| phash |" in out.stdout and "| md5 | 0.000 |" in out.stdout
    assert (tmp_path / "eval" / "report.json").exists()
    assert not (tmp_path / "eval" / "data").exists()  # the generated data set went to a temporary folder
    assert (tmp_path / "eval" / ".lookalike-output").exists()  # never indexed
    run("calibrate", originals, cwd=indexed)
    info = sqlite3.connect(indexed / ".lookalike" / "index.db").execute(
        "SELECT value FROM meta WHERE key = 'thresholds'").fetchone()
    assert "efficientnet-lite0" in json.loads(info[0])


@pytest.mark.slow
def test_search_by_url(indexed, photos, local_http):
    import io

    buffer = io.BytesIO()
    photos["rocket"].resize((320, 214)).save(buffer, "JPEG", quality=80)
    url = local_http(buffer.getvalue()) + "/rocket.jpg"
    [result] = json_lines(run("search", url, "-k", "1", "--json", cwd=indexed).stdout)
    assert result["query"] == url and result["results"][0]["relative_path"] == "rocket.png"


@pytest.mark.slow
def test_dinov2_checkpoint_folder_as_model(sample_folder, tiny_dino_dir):
    run("index", sample_folder, "--model", tiny_dino_dir)
    info = json.loads(run("info", "--json", cwd=sample_folder).stdout)
    assert info["model"] == f"hf:{tiny_dino_dir}#cls" and info["dim"] == 32
    assert info["preprocessing"]["family"] == "dinov2" and info["preprocessing"]["pooling"] == "cls"
    text = run("search", "--text", "a cat", cwd=sample_folder, check=False)
    assert text.returncode == 1 and "images only" in text.stderr


@pytest.mark.slow
def test_hostile_file_names_are_indexed_searchable_and_printed_escaped(tmp_path, photos):
    """Faults 1 and 10: a non-UTF-8 name and terminal escape codes in names, end to end through the CLI."""
    folder = tmp_path / "hostile"
    folder.mkdir()
    raw = os.fsencode(folder)
    photos["chelsea"].save(os.path.join(raw, b"cat\xff.png"))
    photos["rocket"].save(os.path.join(raw, b"\x1b]0;pwned\x07\x1b[2J.png"))
    for name in ("moon", "coffee", "clock"):
        photos[name].save(folder / f"{name}.png")
    (folder / "evil\x1b[31m.jpg").write_bytes(b"text, not a jpeg")
    indexed = run("index", folder, "--model", "efficientnet-lite0")
    assert "5 images indexed" in indexed.stdout and "\x1b" not in indexed.stdout
    assert "evil\\x1b[31m.jpg" in indexed.stdout  # the bad file is reported, its name escaped

    query = os.path.join(raw, b"cat\xff.png")
    shown = subprocess.run([*LOOKALIKE, "search", os.fsdecode(query), "--top", "5"], capture_output=True, cwd=folder,
                           env=ENV, timeout=300, check=True).stdout.decode()
    assert "cat\\xff.png" in shown and "\\x1b]0;pwned\\x07\\x1b[2J.png" in shown and "\x1b" not in shown
    as_json = subprocess.run([*LOOKALIKE, "search", os.fsdecode(query), "--json"], capture_output=True, cwd=folder,
                             env=ENV, timeout=300, check=True).stdout.decode("utf-8")  # valid UTF-8
    [result] = json_lines(as_json)
    top = result["results"][0]
    assert os.fsencode(top["relative_path"]) == b"cat\xff.png" and top["score"] > 0.99  # lossless: same bytes
    assert os.path.exists(os.fsencode(top["path"]))


@pytest.mark.slow
def test_kill_9_at_20_random_moments_of_index(tmp_path, photos):
    """Goal: `kill -9` at 20 random moments of a run (start-up, model load, scan, embedding, commits), each on a
    fresh index: every time the index opens intact with its settings, and re-running the command gives exactly
    what an uninterrupted run gives."""
    import random

    folder = tmp_path / "many"
    _distinct_images(folder, photos, 60)
    run("index", folder, "--model", "efficientnet-lite0", "--db", tmp_path / "warm.db")  # caches warm
    started = time.monotonic()
    run("index", folder, "--model", "efficientnet-lite0", "--db", tmp_path / "clean.db")
    duration = time.monotonic() - started
    clean = _snapshot(tmp_path / "clean.db")
    rng, interrupted = random.Random(14), 0
    for attempt in range(20):
        db = tmp_path / f"killed{attempt}.db"
        command = [*LOOKALIKE, "index", str(folder), "--model", "efficientnet-lite0", "--batch-size", "2",
                   "--db", str(db)]
        process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, duration))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        if db.exists():
            conn = sqlite3.connect(db)
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("SELECT value FROM meta WHERE key = 'model'").fetchone() is not None
            interrupted += conn.execute("SELECT COUNT(*) FROM images").fetchone()[0] < 60
            conn.close()
        subprocess.run(command, env=ENV, check=True, capture_output=True, timeout=300)
        resumed = _snapshot(db)
        assert resumed.keys() == clean.keys(), attempt
        for path, (content_hash, vector) in clean.items():
            assert resumed[path][0] == content_hash and float(resumed[path][1] @ vector) > 0.999
    assert interrupted >= 2  # some kills landed mid-embedding (most land in start-up and model loading)


@pytest.mark.slow
def test_copy_model_beside_the_main_model(tmp_path, photos):
    pytest.importorskip("pdqhash")
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("coffee", "chelsea", "rocket"):
        photos[name].save(folder / f"{name}.jpg")
    photos["coffee"].transpose(0).save(folder / "coffee_mirrored.jpg")  # FLIP_LEFT_RIGHT
    run("index", folder, "--model", "phash,pdq")
    info = run("info", cwd=folder)
    assert "serves dupes and copy lookups" in info.stdout and "pdq" in info.stdout
    [result] = json_lines(run("search", "--copies", folder / "coffee_mirrored.jpg", "--json", "-k", "2",
                              cwd=folder).stdout)
    assert {m["relative_path"] for m in result["results"]} == {"coffee.jpg", "coffee_mirrored.jpg"}
    groups = json.loads(run("dupes", "--json", cwd=folder).stdout)["groups"]
    assert [sorted([g["keeper"]["relative_path"], *[d["relative_path"] for d in g["duplicates"]]]) for g in groups] \
        == [["coffee.jpg", "coffee_mirrored.jpg"]]


@pytest.mark.slow
def test_rough_edges_version_db_folder_and_folder_queries(indexed, tmp_path):
    assert run("--version").stdout.startswith("lookalike ")
    info = json.loads(run("info", "--json", "--db", indexed, cwd=tmp_path).stdout)  # --db PHOTOS_DIR
    assert info["images"] == 31 and info["threshold"]["source"] == "default"
    failed = run("recognize", indexed / "edited", "--categories", indexed, cwd=indexed, check=False)
    assert failed.returncode == 1 and "is a folder, not an image" in failed.stderr
    missing = run("search", "nothere.png", cwd=indexed, check=False)
    assert missing.returncode == 1 and "nothere.png" in missing.stderr


def test_models_lists_every_spec_with_its_verb_thresholds():
    listed = {m["name"]: m for m in json.loads(run("models", "--json").stdout)}
    assert listed["efficientnet-lite0"]["thresholds"]["dupes"] == 0.75
    assert listed["clip"]["thresholds"]["prompts"] == 0.24 and listed["pdq"]["copy_detection"] is True
    assert "calibrate" in run("models").stdout
    help_text = run("dupes", "--help").stdout
    assert "efficientnet-lite0" in help_text and "0.75" in help_text
