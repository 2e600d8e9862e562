import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lookalike
from lookalike.dupes import apply_actions, find_duplicates
from lookalike.errors import LookalikeError
from lookalike.images import scan
from lookalike.moves import OUTPUT_MARKER, move_files, read_manifest, undo_moves


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and ".lookalike" not in p.parts}


def _files(tmp_path: Path, count: int = 12) -> list[Path]:
    folder = tmp_path / "photos"
    paths = []
    for number in range(count):
        path = folder / f"sub{number % 3}" / f"img{number}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(2000 + number))
        paths.append(path)
    return paths


@pytest.mark.slow
def test_apply_then_undo_restores_every_file_byte_for_byte(sample_folder):
    before = _digests(sample_folder)
    idx = lookalike.open(sample_folder, model="efficientnet-lite0")
    idx.update()
    groups = find_duplicates(idx)
    trash = sample_folder / "trash"  # inside the photo folder: must never be indexed
    actions = apply_actions(groups, idx.root, move_to=trash, dry_run=False)
    moved = sum(len(g.others) for g in groups)
    assert moved >= 10 and all(Path(g.keeper.path).exists() for g in groups)
    assert all(not Path(m.path).exists() for g in groups for m in g.others)
    manifest = Path(actions[-1].split()[1])
    assert manifest.parent == trash and len(read_manifest(manifest)) == moved
    assert (trash / OUTPUT_MARKER).is_file()
    assert not any(f.relpath.startswith("trash/") for f in scan(sample_folder).files)
    idx.close()
    undo_moves(manifest)
    after = _digests(sample_folder)
    assert {k: v for k, v in after.items() if not k.startswith("trash/")} == before
    assert undo_moves(manifest) == []  # a second undo finds everything in place


def test_a_taken_target_stops_the_run_before_anything_moves(tmp_path):
    sources = _files(tmp_path, 3)
    trash = tmp_path / "trash"
    (trash / "x").mkdir(parents=True)
    (trash / "x" / "b.jpg").write_bytes(b"someone else's file")
    plan = [(sources[0], trash / "x" / "a.jpg"), (sources[1], trash / "x" / "b.jpg")]
    with pytest.raises(LookalikeError, match="already exists"):
        move_files(plan, trash)
    assert all(p.exists() for p in sources) and (trash / "x" / "b.jpg").read_bytes() == b"someone else's file"


def test_across_devices_files_are_copied_checked_then_removed(tmp_path, monkeypatch):
    sources = _files(tmp_path, 4)
    before = {p: p.read_bytes() for p in sources}
    real_rename = os.rename

    def no_cross_device_rename(src, dst):
        if "trash" in str(dst) or "trash" in str(src):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", no_cross_device_rename)
    trash = tmp_path / "trash"
    manifest = move_files([(p, trash / p.relative_to(tmp_path)) for p in sources], trash)
    assert not any(p.exists() for p in sources)
    assert all((trash / p.relative_to(tmp_path)).read_bytes() == data for p, data in before.items())
    assert not list(trash.rglob("*.lookalike-partial"))
    undo_moves(manifest)
    assert {p: p.read_bytes() for p in sources} == before


KILLED_MOVER = """
import sys, time
from pathlib import Path
import lookalike.moves as moves
real = moves.move_file
def slow(source, target):
    time.sleep(0.02)
    real(source, target)
    time.sleep(0.02)
moves.move_file = slow
sources = [Path(p) for p in sys.argv[2:]]
trash = Path(sys.argv[1])
moves.move_files([(p, trash / p.parent.name / p.name) for p in sources], trash)
"""


@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3, 0.7])
def test_kill_9_mid_apply_leaves_every_file_in_place_or_moved_and_recorded(tmp_path, delay):
    sources = _files(tmp_path, 30)
    before = {p: p.read_bytes() for p in sources}
    trash = tmp_path / "trash"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-c", KILLED_MOVER, str(trash), *map(str, sources)], env=env)
    deadline = time.monotonic() + 60
    while not list(trash.glob("lookalike-moves-*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.005)  # the run has started once its manifest exists
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    [manifest] = trash.glob("lookalike-moves-*.jsonl")
    recorded = {Path(r["from"]) for r in read_manifest(manifest).values()}
    for path, data in before.items():
        target = trash / path.parent.name / path.name
        assert path.exists() != target.exists(), path  # exactly one copy
        if target.exists():
            assert path.resolve() in recorded and target.read_bytes() == data
    undo_moves(manifest)
    assert {p: p.read_bytes() for p in sources} == before
    assert all(json.loads(line) for line in manifest.read_text().splitlines())  # no torn line left behind


def test_a_stopped_run_records_exactly_the_moves_made_and_undoes_them(tmp_path):
    sources = _files(tmp_path, 6)
    before = _digests(tmp_path / "photos")
    trash = tmp_path / "trash"
    plan = [(s, trash / s.relative_to(tmp_path / "photos")) for s in sources]
    reported: list[tuple[int, int]] = []
    manifest = move_files(plan, trash, progress=lambda done, total: reported.append((done, total)),
                          stop=lambda: len(reported) == 2)
    assert reported == [(1, 6), (2, 6)] and sorted(read_manifest(manifest)) == [0, 1]
    assert [s.exists() for s in sources] == [False, False, True, True, True, True]
    assert json.loads(manifest.read_text().splitlines()[-1]) == {"stopped": 2}
    undone: list[tuple[int, int]] = []
    assert undo_moves(manifest, progress=lambda done, total: undone.append((done, total))) == [
        f"restored {sources[1].resolve()}", f"restored {sources[0].resolve()}"]
    assert undone == [(1, 2), (2, 2)] and _digests(tmp_path / "photos") == before
    assert all(m.get("undone") for m in read_manifest(manifest).values())
