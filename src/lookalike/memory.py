"""Process memory: large buffers come from the OS and go back to it when freed.

glibc's allocator serves blocks above its mmap threshold (128 KiB) with their own mappings, returned to the OS on
free, but it raises that threshold to the size of each such block freed, up to 32 MiB. After the first decoded
photos and model activations are freed, every later image buffer comes from the heap, and the heap of each
thread keeps its peak: indexing the benchmarks/vs_immaculate.py folder with sscd-distilled peaked at 260-294 MiB.
With the threshold pinned at 256 KiB the same runs peaked at 220-237 MiB, at the same speed.
"""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
LARGE_BUFFER = 256 * 1024

_pinned = False


def return_large_buffers_to_the_os() -> bool:
    """Pin glibc's mmap threshold (once per process); False where the C library is not glibc."""
    global _pinned
    if _pinned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    _pinned = bool(mallopt(M_MMAP_THRESHOLD, LARGE_BUFFER))
    return _pinned
