"""Where an index lives: `PHOTOS_DIR/.lookalike/index.db` by default, found from a folder upwards like git finds
`.git`, or named with `--db` (a .db file or a folder holding one)."""

from __future__ import annotations

import os
from pathlib import Path

from lookalike.errors import IndexUnusableError
from lookalike.sources import is_remote, is_url_list, open_source

INDEX_DIRNAME = ".lookalike"
DB_FILENAME = "index.db"


def find_index(start: str | os.PathLike = ".") -> Path | None:
    """The nearest `.lookalike/index.db` at or above `start`, the way git finds `.git`."""
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        candidate = folder / INDEX_DIRNAME / DB_FILENAME
        if candidate.is_file():
            return candidate
    return None


def resolve_db(db: str | os.PathLike) -> Path:
    """`--db` names either the SQLite file or a folder to keep `index.db` in."""
    path = Path(db).expanduser()
    if path.suffix in (".db", ".sqlite", ".sqlite3") or path.is_file():
        return path.resolve()
    if not (path / DB_FILENAME).is_file() and (path / INDEX_DIRNAME / DB_FILENAME).is_file():
        return (path / INDEX_DIRNAME / DB_FILENAME).resolve()  # --db PHOTOS_DIR: the index inside it
    return (path / DB_FILENAME).resolve()


def locate(folder: str | os.PathLike | None, db: str | os.PathLike | None, create: bool
            ) -> tuple[Path, str | None]:
    """(the index's SQLite file, the folder or remote location to index, if named)."""
    remote = folder is not None and (is_remote(str(folder)) or is_url_list(str(folder)))
    if db is not None:
        db_file = resolve_db(db)
    elif remote:
        raise IndexUnusableError(f"{folder} is not a local folder: name where to keep its index with --db PATH")
    elif folder is not None:
        db_file = Path(folder).expanduser().resolve() / INDEX_DIRNAME / DB_FILENAME
    else:
        found = find_index()
        if found is None:
            raise IndexUnusableError(
                "no lookalike index here or in any parent folder: run `lookalike index PHOTOS_DIR` first, "
                "or pass --db PATH"
            )
        db_file = found
    exists = db_file.is_file()
    if not exists and not create:
        raise IndexUnusableError(f"no index at {db_file}: run `lookalike index PHOTOS_DIR` first")
    if not exists and folder is None:
        raise IndexUnusableError(f"no index at {db_file}: name the folder to index")
    location = None if folder is None else str(folder) if remote else str(Path(folder).expanduser().resolve())
    if not exists and location is not None and not open_source(location).exists():
        raise IndexUnusableError(f"{folder} is not a folder" + ("" if not remote else " that can be listed"))
    return db_file, location
