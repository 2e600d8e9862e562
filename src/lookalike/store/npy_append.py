"""Growing a memory-mapped .npy file in place, so large-index mode appends additions instead of rewriting 10 GB."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def append_rows(path: Path, keep: int, rows: np.ndarray) -> np.memmap:
    """Appends `rows` to the 2-d .npy at `path` after its first `keep` rows (dropping any a crashed append left),
    rewriting the header's shape in place; returns the file memory-mapped again."""
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(f)
        data_start = f.tell()
        if fortran_order or dtype != rows.dtype or shape[1:] != rows.shape[1:]:
            raise ValueError(f"{path} does not hold rows like these")
        f.truncate(data_start + keep * int(np.prod(shape[1:])) * dtype.itemsize)
        f.seek(0, os.SEEK_END)
        f.write(np.ascontiguousarray(rows).tobytes())
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                  "shape": (keep + len(rows), *shape[1:])}
        text = repr(header).encode("latin1")
        prefix = 6 + 2 + (2 if version == (1, 0) else 4)  # magic, version, header length
        room = data_start - prefix - 1  # the header text is space-padded and ends with a newline
        if len(text) > room:
            raise ValueError(f"no room to grow the header of {path}")
        f.seek(prefix)
        f.write(text.ljust(room) + b"\n")
    return np.load(path, mmap_mode="r")
