"""Moving duplicates out of the way so that every move can be undone, and nothing is ever deleted.

`dupes --move-to TRASH --apply` moves each duplicate to TRASH/<its relative path> and records it in a manifest,
`TRASH/lookalike-moves-<time>.jsonl`; `dupes --undo MANIFEST` puts every file back. Crash safety:
- the manifest is a write-ahead journal: a move is recorded (appended, flushed, fsynced) *before* it happens and
  confirmed after, so after a `kill -9` every file is either in place or moved and recorded; a torn last line
  (the only thing a kill can leave) is ignored when reading;
- within one device a move is one `rename` (atomic); across devices the file is copied to a partial name,
  fsynced, checked byte for byte, renamed into place, and only then is the source removed — never a bare
  cross-device move that could lose a file half-way;
- nothing is ever overwritten: a target (or, on undo, a source) that exists with other content stops the run.
The trash folder gets a `.lookalike-output` marker, so indexing never picks up the moved copies.
"""

from __future__ import annotations

import errno
import filecmp
import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.errors import LookalikeError

if TYPE_CHECKING:
    from lookalike.dupes import DuplicateGroup

OUTPUT_MARKER = ".lookalike-output"  # a folder holding lookalike's own output: `index` skips it
PARTIAL_SUFFIX = ".lookalike-partial"


def mark_output_folder(folder: Path) -> None:
    """Create `folder` and tag it as lookalike output (never indexed)."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / OUTPUT_MARKER
    if not marker.exists():
        marker.write_text("This folder holds lookalike output (moved duplicates, reports); it is never indexed.\n")


def apply_actions(groups: list[DuplicateGroup], root: Path | None, move_to: Path | None = None,
                  link_to: Path | None = None, dry_run: bool = True) -> list[str]:
    """Move duplicates out of the way (`move_to`, keeping their relative paths, with an undo manifest) or lay out
    every group as symlinks for review (`link_to`). Never deletes. Returns what was (or, dry run, would be) done;
    the last line names the manifest."""
    if root is None:
        raise LookalikeError("--move-to and --link-to work on local folders only")
    done = []
    if link_to is not None:
        done += _links(groups, link_to, dry_run)
    if move_to is not None:
        plan = [(Path(m.path), move_to / m.relative_path) for group in groups for m in group.others]
        done += [f"move {source} -> {target}" for source, target in plan]
        if not dry_run and plan:
            manifest = move_files(plan, move_to)
            done.append(f"manifest {manifest} (undo: lookalike dupes --undo {manifest})")
    return done


def _links(groups: list[DuplicateGroup], link_to: Path, dry_run: bool) -> list[str]:
    done = []
    for number, group in enumerate(groups, 1):
        for member in group.members:
            role = "keep" if member is group.keeper else "dup"
            target = link_to / f"group-{number:04d}" / f"{role}--{member.relative_path.replace('/', '--')}"
            done.append(f"link {target} -> {member.path}")
            if not dry_run:
                mark_output_folder(link_to)
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.is_symlink():
                    target.symlink_to(member.path)
    return done


def move_files(plan: list[tuple[Path, Path]], trash: Path, progress=None, stop=None) -> Path:
    """Move each (source, target), journaling every move in a new manifest in `trash`; returns the manifest.
    `progress(done, total)` follows the moves; `stop()`, asked before each move, ends the run early (the
    manifest then records exactly the moves made, and `undo_moves` puts them back like any other)."""
    for source, target in plan:
        if not source.is_file():
            raise LookalikeError(f"{source} is missing; nothing was moved")
        if target.exists():
            raise LookalikeError(f"{target} already exists; nothing was moved or overwritten")
    mark_output_folder(trash)
    manifest = trash / time.strftime("lookalike-moves-%Y%m%d-%H%M%S.jsonl")
    suffix = 1
    while manifest.exists():
        manifest = manifest.with_name(f"{manifest.stem.split('.')[0]}.{suffix}.jsonl")
        suffix += 1
    with Journal(manifest) as journal:
        journal.write({"lookalike_moves": 1, "created": time.time()})
        for number, (source, target) in enumerate(plan):
            if stop is not None and stop():
                journal.write({"stopped": number})
                break
            journal.write({"move": number, "from": str(source.resolve()), "to": str(target.resolve())})
            move_file(source, target)
            journal.write({"done": number})
            if progress is not None:
                progress(number + 1, len(plan))
    return manifest


def undo_moves(manifest: Path, progress=None, stop=None) -> list[str]:
    """Put every file recorded in `manifest` back where it was, newest move first; what was done, a line each.
    Safe to run twice, and after a run that `stop()` ended early."""
    return [UNDO_LINES[what].format(origin=origin, target=target)
            for what, origin, target in restore_moves(manifest, progress, stop)]


UNDO_LINES = {"restored": "restored {origin}", "kept": "kept {origin} (its copy in the trash was removed)",
              "missing": "missing {origin}: not at {target} either"}


def restore_moves(manifest: Path, progress=None, stop=None) -> list[tuple[str, Path, Path]]:
    """`undo_moves` as (what, origin, target): what is 'restored', 'kept' (the source was never removed) or
    'missing' (the file is at neither place)."""
    moves = read_manifest(manifest)
    done: list[tuple[str, Path, Path]] = []
    with Journal(manifest) as journal:
        for step, number in enumerate(sorted(moves, reverse=True)):
            if stop is not None and stop():
                break
            origin, target = Path(moves[number]["from"]), Path(moves[number]["to"])
            partial = target.with_name(target.name + PARTIAL_SUFFIX)
            if partial.exists():
                partial.unlink()  # our own unfinished copy: the source was never removed
            if target.exists() and origin.exists():
                if not filecmp.cmp(origin, target, shallow=False):
                    raise LookalikeError(f"{origin} exists and differs from {target}: restore it by hand")
                target.unlink()  # our finished copy of a file whose source was never removed (crash)
                done.append(("kept", origin, target))
            elif target.exists():
                move_file(target, origin)
                done.append(("restored", origin, target))
            elif not origin.exists():
                done.append(("missing", origin, target))
            journal.write({"undone": number})
            if progress is not None:
                progress(step + 1, len(moves))
    return done


def read_manifest(manifest: Path) -> dict[int, dict]:
    """The moves a manifest records (begun, whether or not confirmed), by number, `"undone": True` on those an
    undo has handled; a torn last line is ignored."""
    if not manifest.is_file():
        raise LookalikeError(f"{manifest} is not a lookalike manifest file")
    moves: dict[int, dict] = {}
    lines = manifest.read_text(encoding="utf-8").splitlines()
    for position, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if position == len(lines) - 1:
                break  # a kill during the last append
            raise LookalikeError(f"{manifest} line {position + 1} is damaged") from None
        if position == 0 and "lookalike_moves" not in record:
            raise LookalikeError(f"{manifest} is not a lookalike manifest file")
        if "move" in record:
            moves[record["move"]] = record
        elif "undone" in record and record["undone"] in moves:
            moves[record["undone"]]["undone"] = True
    return moves


def move_file(source: Path, target: Path) -> None:
    """Rename within a device; across devices copy, fsync, compare, rename into place, then remove the source."""
    if target.exists():
        raise LookalikeError(f"{target} already exists; it was not overwritten")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, target)
        _fsync_dir(target.parent)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise LookalikeError(f"cannot move {source} to {target}: {exc.strerror}") from exc
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    shutil.copy2(source, partial)
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    if not filecmp.cmp(source, partial, shallow=False):
        partial.unlink()
        raise LookalikeError(f"copying {source} to {target.parent} changed its bytes; the file was left in place")
    os.replace(partial, target)
    _fsync_dir(target.parent)
    source.unlink()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Journal:
    """Append-only JSON Lines, each line flushed and fsynced before the caller goes on."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Journal:
        if self.path.is_file():  # drop a torn last line (a kill mid-append) before appending after it
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                with open(self.path, "r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)
        self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        return self

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def __exit__(self, *exc) -> None:
        self.file.close()
