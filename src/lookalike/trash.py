"""Moving files out of a collection without deleting them, in the one undoable format `moves.py` defines.

The web page's duplicate review applies the person's keep/move choices here. Files go to
`<root>/.lookalike-trash/<batch>/` under their relative path (a hidden folder, which indexing skips), journaled by
`moves.move_files` in `<batch>/lookalike-moves-<time>.jsonl`: the same manifest `lookalike dupes --move-to T
--apply` writes, so `lookalike dupes --undo MANIFEST` undoes a review applied on the page, and the page's undo
(`undo`) undoes any manifest inside the folder, the CLI's included. Nothing here ever deletes a file: emptying the
trash folder is the person's decision.
"""

from __future__ import annotations

import filecmp
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lookalike.errors import LookalikeError
from lookalike.moves import move_files, read_manifest, restore_moves, undo_moves

TRASH_DIRNAME = ".lookalike-trash"
MANIFEST_GLOB = "lookalike-moves-*.jsonl"


@dataclass(frozen=True)
class Moved:
    relative_path: str
    trashed: str  # relative to root

    def as_dict(self) -> dict:
        return {"from": self.relative_path, "to": self.trashed}


def _inside(root: Path, relative_path: str) -> Path:
    """The file `relative_path` under root, refusing absolute paths and `..` (they come from the catalog or the
    page, but a move is the one place a wrong path would do harm)."""
    pure = PurePosixPath(relative_path)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise LookalikeError(f"refusing '{relative_path}': not a path inside the indexed folder")
    return root.joinpath(*pure.parts)


def move_to_trash(root: str | os.PathLike, relative_paths: Sequence[str], progress=None,
                  stop: Callable[[], bool] | None = None) -> tuple[str, list[Moved]]:
    """Move the files into a new batch folder of the trash; returns (the manifest relative to root, the moves
    made). All files are checked before any moves; `stop()` (asked between moves) ends early with a manifest of
    the moves made; if a move fails, the ones done are put back and the error is raised."""
    root = Path(root)
    sources = [_inside(root, p) for p in relative_paths]
    missing = [p for p, s in zip(relative_paths, sources, strict=True) if not s.is_file()]
    if missing:
        raise LookalikeError(f"not moved: {len(missing)} file(s) no longer exist, e.g. '{missing[0]}'; "
                             "re-index (lookalike index) and review again")
    batch = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{time.time_ns() // 1000 % 1_000_000:06d}"
    folder = root / TRASH_DIRNAME / batch
    plan = [(source, _inside(folder, relative)) for relative, source in zip(relative_paths, sources, strict=True)]
    try:
        manifest = move_files(plan, folder, progress=progress, stop=stop)
    except (OSError, LookalikeError) as exc:
        for begun in folder.glob(MANIFEST_GLOB):
            undo_moves(begun)
        raise LookalikeError(f"could not move the files to the trash ({exc}); nothing was moved") from exc
    return manifest.relative_to(root).as_posix(), moved(root, manifest)


def moved(root: Path, manifest: Path) -> list[Moved]:
    """The moves a manifest records, relative to root."""
    base = root.resolve()
    return [Moved(Path(m["from"]).relative_to(base).as_posix(), Path(m["to"]).relative_to(base).as_posix())
            for _, m in sorted(read_manifest(manifest).items())]


def _checked_manifest(root: Path, manifest: str) -> tuple[Path, dict[int, dict]]:
    """The manifest file, refused unless it and every file it names are inside root."""
    path = _inside(root, manifest)
    if path.suffix != ".jsonl" or not path.is_file():
        raise LookalikeError(f"no move manifest '{manifest}' in {root}")
    moves = read_manifest(path)
    base = root.resolve()
    for move in moves.values():
        for name in (move["from"], move["to"]):
            if not Path(name).resolve().is_relative_to(base):
                raise LookalikeError(f"'{manifest}' moves files outside the indexed folder ({name}); "
                                     "undo it with `lookalike dupes --undo`")
    return path, moves


def undo(root: str | os.PathLike, manifest: str, progress=None,
         stop: Callable[[], bool] | None = None) -> list[str]:
    """Put back every file a manifest inside root moved (the page's or the CLI's); returns their relative
    paths. Refuses, before moving anything, when a different file has since appeared at an original place."""
    root = Path(root)
    path, moves = _checked_manifest(root, manifest)
    for move in moves.values():
        origin, target = Path(move["from"]), Path(move["to"])
        if origin.exists() and target.exists() and not filecmp.cmp(origin, target, shallow=False):
            raise LookalikeError(f"not undone: '{origin.relative_to(root.resolve()).as_posix()}' exists again; "
                                 "move it away first")
    base = root.resolve()
    return [origin.relative_to(base).as_posix() for what, origin, _ in restore_moves(path, progress, stop)
            if what != "missing"]


def manifests(root: str | os.PathLike) -> list[dict]:
    """Manifests in the trash folder with moves not yet undone, newest first: {manifest, created, files}."""
    root = Path(root)
    trash = root / TRASH_DIRNAME
    found = []
    for path in [*trash.glob(MANIFEST_GLOB), *trash.glob(f"*/{MANIFEST_GLOB}")]:
        try:
            moves = read_manifest(path)
        except LookalikeError:
            continue
        pending = sum(not m.get("undone") for m in moves.values())
        if pending:
            found.append({"manifest": path.relative_to(root).as_posix(), "created": path.stat().st_mtime,
                          "files": pending})
    return sorted(found, key=lambda m: -m["created"])
