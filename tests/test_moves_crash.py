"""`kill -9` at 20 random moments of the real `lookalike dupes --move-to DIR --apply`: after each, every file is in
place or moved and recorded in the journal, nothing is lost or truncated, and `dupes --undo` restores every file
byte for byte. (tests/test_moves.py kills a slowed-down mover at four fixed points; this kills the real CLI.)"""

import hashlib
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from lookalike.moves import read_manifest
from tests.test_cli import ENV, LOOKALIKE


def _digests(folder: Path) -> dict[Path, str]:
    """sha256 of every file under `folder`, lookalike's own files (index, journal, marker) aside."""
    return {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.rglob("*"))
            if path.is_file() and ".lookalike" not in path.parts and not path.name.startswith(("lookalike-moves-",
                                                                                                ".lookalike"))}


def _apply(folder: Path) -> subprocess.Popen:
    """The real command; keepers by file facts (the geometry rules cost seconds a run and are not what is tested)."""
    command = ["dupes", "--move-to", str(folder / "trash"), "--apply", "--keep", "resolution,size,oldest"]
    return subprocess.Popen([*LOOKALIKE, *command], cwd=folder, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _journal(folder: Path) -> Path | None:
    found = sorted((folder / "trash").glob("lookalike-moves-*.jsonl"))
    return found[-1] if found else None


@pytest.mark.slow
def test_kill_9_at_20_random_moments_of_dupes_apply(tmp_path, sample_folder):
    subprocess.run([*LOOKALIKE, "index", ".", "--model", "efficientnet-lite0"], cwd=sample_folder, env=ENV,
                   check=True, capture_output=True, timeout=300)
    before = _digests(sample_folder)
    clean = tmp_path / "clean"
    shutil.copytree(sample_folder, clean)
    started = time.monotonic()
    assert _apply(clean).wait(300) == 0
    duration = time.monotonic() - started
    moved_in_full = {r["from"] for r in read_manifest(_journal(clean)).values()}
    assert len(moved_in_full) >= 10
    rng, mid_move = random.Random(13), 0
    for attempt in range(20):
        folder = tmp_path / f"killed{attempt}"
        shutil.copytree(sample_folder, folder)
        process = _apply(folder)
        if attempt % 2:  # anywhere in the run: start-up, model load, grouping, moving
            time.sleep(rng.uniform(0.0, duration))
        else:  # while it moves: a random moment after its journal appears
            deadline = time.monotonic() + 300
            while _journal(folder) is None and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(rng.uniform(0.0, 0.03))
        process.send_signal(signal.SIGKILL)
        process.wait()
        now, journal = _digests(folder), _journal(folder)
        recorded = {r["from"]: Path(r["to"]) for r in read_manifest(journal).values()} if journal else {}
        expected: set[Path] = set()
        for path, digest in before.items():
            original = folder / path.relative_to(sample_folder)
            target = recorded.get(str(original.resolve()))
            in_place, moved = original in now, target is not None and target in now
            assert in_place or moved, (attempt, original)  # in place, or moved and in the journal
            assert now[original if in_place else target] == digest, (attempt, original)  # whole, unchanged
            expected.update({original, target} if target else {original})
        assert set(now) <= expected, attempt  # nothing half-written left beside them
        assert Counter(now.values()) >= Counter(before.values()), attempt  # the sha256 of every file is there
        mid_move += 0 < sum(p.is_file() for p in recorded.values()) < len(moved_in_full)
        if journal:
            subprocess.run([*LOOKALIKE, "dupes", "--undo", str(journal)], cwd=folder, env=ENV, check=True,
                           capture_output=True, timeout=120)
        restored = {path.relative_to(folder): digest for path, digest in _digests(folder).items()}
        assert restored == {path.relative_to(sample_folder): digest for path, digest in before.items()}, attempt
    assert mid_move >= 1  # some kills landed between the first and the last move
