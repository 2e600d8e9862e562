"""The web review's moves to the trash folder and back: the CLI's journal format, byte-for-byte, never deleting,
refusing paths and manifests that reach outside the root."""

import pytest

from lookalike.errors import LookalikeError
from lookalike.moves import move_files, read_manifest, undo_moves
from lookalike.trash import TRASH_DIRNAME, manifests, move_to_trash, undo


def test_move_then_undo_restores_every_byte(sample_folder):
    chosen = ["edited/chelsea_jpeg40.jpg", "coffee.png"]
    before = {p: (sample_folder / p).read_bytes() for p in chosen}
    manifest, moved = move_to_trash(sample_folder, chosen)
    assert manifest.startswith(f"{TRASH_DIRNAME}/") and manifest.endswith(".jsonl")
    assert not any((sample_folder / p).exists() for p in chosen)
    assert [m.relative_path for m in moved] == chosen and len(read_manifest(sample_folder / manifest)) == 2
    assert all((sample_folder / m.trashed).read_bytes() == before[m.relative_path] for m in moved)
    assert manifests(sample_folder) == [{"manifest": manifest, "created": pytest.approx(
        (sample_folder / manifest).stat().st_mtime), "files": 2}]
    assert sorted(undo(sample_folder, manifest)) == sorted(chosen)
    assert {p: (sample_folder / p).read_bytes() for p in chosen} == before
    assert manifests(sample_folder) == [] and undo(sample_folder, manifest) == []  # undone once; again: no-op


def test_the_cli_undoes_the_pages_moves(sample_folder):
    before = (sample_folder / "moon.png").read_bytes()
    manifest, _ = move_to_trash(sample_folder, ["moon.png"])
    assert undo_moves(sample_folder / manifest) == [f"restored {(sample_folder / 'moon.png').resolve()}"]
    assert (sample_folder / "moon.png").read_bytes() == before


def test_a_stop_between_moves_keeps_a_manifest_of_the_moves_made(sample_folder):
    chosen = ["moon.png", "coffee.png", "camera.png"]
    manifest, moved = move_to_trash(sample_folder, chosen, stop=lambda: (sample_folder / TRASH_DIRNAME).exists()
                                    and not (sample_folder / "moon.png").exists())
    assert [m.relative_path for m in moved] == ["moon.png"] and (sample_folder / "coffee.png").exists()
    assert undo(sample_folder, manifest) == ["moon.png"] and (sample_folder / "moon.png").is_file()


def test_refuses_paths_outside_and_missing_files(sample_folder):
    for bad in ["../outside.jpg", "/etc/hostname"]:
        with pytest.raises(LookalikeError, match="not a path inside"):
            move_to_trash(sample_folder, [bad])
        with pytest.raises(LookalikeError, match="not a path inside"):
            undo(sample_folder, bad)
    with pytest.raises(LookalikeError, match="no longer exist"):
        move_to_trash(sample_folder, ["nothing-here.jpg"])
    assert not (sample_folder / TRASH_DIRNAME).exists()


def test_refuses_a_manifest_that_names_files_outside_the_root(sample_folder, tmp_path):
    outside = tmp_path / "not-in-the-collection.png"
    outside.write_bytes(b"someone else's file")
    trash = sample_folder / TRASH_DIRNAME / "forged"
    manifest = move_files([(outside, trash / "x.png")], trash)
    with pytest.raises(LookalikeError, match="outside the indexed folder"):
        undo(sample_folder, manifest.relative_to(sample_folder).as_posix())
    assert not outside.exists() and (trash / "x.png").is_file()


def test_undo_will_not_overwrite_a_new_file(sample_folder):
    manifest, _ = move_to_trash(sample_folder, ["moon.png", "coffee.png"])
    (sample_folder / "moon.png").write_bytes(b"a new file with the same name")
    with pytest.raises(LookalikeError, match="exists again"):
        undo(sample_folder, manifest)
    assert (sample_folder / "moon.png").read_bytes() == b"a new file with the same name"
    assert not (sample_folder / "coffee.png").exists()  # refused before anything moved


def test_a_failed_move_puts_back_the_ones_done(sample_folder, monkeypatch):
    import lookalike.moves

    real, calls = lookalike.moves.move_file, []

    def failing_second(source, target):
        calls.append(source)
        if len(calls) == 2:
            raise LookalikeError("disk full (simulated)")
        real(source, target)

    monkeypatch.setattr(lookalike.moves, "move_file", failing_second)
    before = {p: (sample_folder / p).read_bytes() for p in ["moon.png", "coffee.png"]}
    with pytest.raises(LookalikeError, match="disk full.*nothing was moved"):
        move_to_trash(sample_folder, ["moon.png", "coffee.png"])
    assert {p: (sample_folder / p).read_bytes() for p in before} == before
