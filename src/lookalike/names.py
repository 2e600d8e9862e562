"""File names as they really are, and as they can safely be shown.

A POSIX file name is any bytes but `/` and NUL: old cameras, zip archives and Windows code pages leave names that
are not UTF-8 (`bad\\xff.jpg`). Python hands them over as `str` with lone surrogates (PEP 383,
`surrogateescape`), which SQLite, JSON encoders and terminals refuse or mangle — one such name used to stop
indexing for good. So the catalog stores a name that is not valid UTF-8 as its raw bytes (`to_db`/`from_db`,
lossless), JSON carries it with `\\udcXX` escapes (which decode back to the same `str`), and people see it
escaped (`display`): invalid bytes as `\\xff`, control characters (terminal escape codes, bidi overrides) as
`\\x1b` / `\\u202e`, so a hostile name can neither crash a run nor drive the terminal.
"""

from __future__ import annotations


def to_db(name: str) -> str | bytes:
    """What SQLite can store for `name`: the text itself, or the file system's bytes when it is not UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape")
    return name


def from_db(value: str | bytes) -> str:
    """The inverse of `to_db`: the same `str` that `os.scandir` produced."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def display(name: str) -> str:
    """`name` fit for a terminal or a web page: printable characters kept, everything else escaped."""
    if name.isprintable():
        return name
    return "".join(char if char.isprintable() else _escape(char) for char in name)


def json_text(name: str) -> str:
    """`name` for a JSON document that must be valid UTF-8: unchanged when it is, else its invalid bytes escaped
    as `\\xNN` (the server's answers; the CLI's `--json` keeps names lossless with `\\udcNN` escapes instead)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "".join(_escape(c) if 0xD800 <= ord(c) <= 0xDFFF else c for c in name)
    return name
