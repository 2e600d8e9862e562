"""Moving files to the trash folder and back: byte-for-byte, never deleting, refusing paths outside the root."""

import json

import pytest

from lookalike.errors import LookalikeError
from lookalike.trash import TRASH_DIRNAME, move_to_trash, undo


def test_move_then_undo_restores_every_byte(sample_folder):
    chosen = ["edited/chelsea_jpeg40.jpg", "coffee.png"]
    before = {p: (sample_folder / p).read_bytes() for p in chosen}
    batch, moved = move_to_trash(sample_folder, chosen, keep=["astronaut.png"])
    assert not any((sample_folder / p).exists() for p in chosen)
    manifest = json.loads((sample_folder / TRASH_DIRNAME / batch / "manifest.json").read_text())
    assert [m["from"] for m in manifest["moved"]] == chosen and manifest["kept"] == ["astronaut.png"]
    assert all((sample_folder / m.trashed).read_bytes() == before[m.relative_path] for m in moved)
    assert undo(sample_folder, batch) == chosen
    assert {p: (sample_folder / p).read_bytes() for p in chosen} == before
    with pytest.raises(LookalikeError, match="no trash batch"):
        undo(sample_folder, batch)  # a batch is undone once


def test_refuses_paths_outside_and_missing_files(sample_folder):
    for bad in ["../outside.jpg", "/etc/hostname"]:
        with pytest.raises(LookalikeError, match="not a path inside"):
            move_to_trash(sample_folder, [bad])
    with pytest.raises(LookalikeError, match="no longer exist"):
        move_to_trash(sample_folder, ["nothing-here.jpg"])
    assert not (sample_folder / TRASH_DIRNAME).exists()


def test_undo_will_not_overwrite_a_new_file(sample_folder):
    name = "moon.png"
    batch, _ = move_to_trash(sample_folder, [name])
    (sample_folder / name).write_bytes(b"a new file with the same name")
    with pytest.raises(LookalikeError, match="exists again"):
        undo(sample_folder, batch)
    assert (sample_folder / name).read_bytes() == b"a new file with the same name"
