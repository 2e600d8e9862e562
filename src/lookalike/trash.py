"""Moving files out of a collection without deleting them, with a manifest that undoes the move.

The web page's duplicate review applies the person's keep/move choices here. Files go to
`<root>/.lookalike-trash/<batch>/` under their relative path (a hidden folder, which indexing skips), and
`<root>/.lookalike-trash/<batch>/manifest.json` records every move, so `undo(root, batch)` puts each file back
byte-for-byte. Each file moves with `moves.move_file` (a rename, or copy-verify-remove across devices, never
overwriting), as the CLI's journaled `dupes --move-to` does. Nothing here ever deletes a file: emptying the trash
folder is the person's decision.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lookalike.errors import LookalikeError
from lookalike.moves import move_file

TRASH_DIRNAME = ".lookalike-trash"
MANIFEST = "manifest.json"
BATCH = re.compile(r"^[0-9]{8}T[0-9]{6}-[0-9]{6}$")


@dataclass(frozen=True)
class Moved:
    relative_path: str
    trashed: str  # relative to root

    def as_dict(self) -> dict:
        return {"from": self.relative_path, "to": self.trashed}


def _inside(root: Path, relative_path: str) -> Path:
    """The file `relative_path` under root, refusing absolute paths and `..` (they come from the catalog, but
    a move is the one place a wrong path would do harm)."""
    pure = PurePosixPath(relative_path)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise LookalikeError(f"refusing to move '{relative_path}': not a path inside the indexed folder")
    return root.joinpath(*pure.parts)


def move_to_trash(root: str | os.PathLike, relative_paths: Sequence[str],
                  keep: Sequence[str] = ()) -> tuple[str, list[Moved]]:
    """Move the files into a new batch folder of the trash; returns (batch id, moves). All files are checked
    before any moves; if one move fails, the ones done are put back and the error is raised."""
    root = Path(root)
    sources = [_inside(root, p) for p in relative_paths]
    missing = [p for p, s in zip(relative_paths, sources, strict=True) if not s.is_file()]
    if missing:
        raise LookalikeError(f"not moved: {len(missing)} file(s) no longer exist, e.g. '{missing[0]}'; "
                             "re-index (lookalike index) and review again")
    batch = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{time.time_ns() // 1000 % 1_000_000:06d}"
    folder = root / TRASH_DIRNAME / batch
    done: list[Moved] = []
    try:
        for relative, source in zip(relative_paths, sources, strict=True):
            target = _inside(folder, relative)
            move_file(source, target)  # rename, or copy-verify-remove across devices; never overwrites
            done.append(Moved(relative, target.relative_to(root).as_posix()))
    except (OSError, LookalikeError) as exc:
        _restore(root, done)
        raise LookalikeError(f"could not move '{relative}' to the trash ({exc}); nothing was moved") from exc
    manifest = {"batch": batch, "created_at": time.time(), "moved": [m.as_dict() for m in done],
                "kept": list(keep)}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return batch, done


def undo(root: str | os.PathLike, batch: str) -> list[str]:
    """Put every file of a batch back where it was; returns their relative paths. Refuses to overwrite a file
    that has since appeared at the original place."""
    root = Path(root)
    if not BATCH.fullmatch(batch):
        raise LookalikeError(f"'{batch}' is not a trash batch id (like 20260101T120000-123456)")
    manifest_file = root / TRASH_DIRNAME / batch / MANIFEST
    if not manifest_file.is_file():
        raise LookalikeError(f"no trash batch '{batch}' in {root / TRASH_DIRNAME}")
    manifest = json.loads(manifest_file.read_text())
    moves = [Moved(m["from"], m["to"]) for m in manifest["moved"]]
    clashes = [m.relative_path for m in moves if _inside(root, m.relative_path).exists()]
    if clashes:
        raise LookalikeError(f"not undone: '{clashes[0]}' exists again; move it away first")
    _restore(root, moves)
    manifest_file.rename(manifest_file.with_name("manifest.undone.json"))
    return [m.relative_path for m in moves]


def _restore(root: Path, moves: list[Moved]) -> None:
    for move in moves:
        original = _inside(root, move.relative_path)
        move_file(_inside(root, move.trashed), original)
