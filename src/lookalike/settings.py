"""What a stored index *is*, in one typed, frozen object kept in its catalog.

Whatever decides what a persistent index is and how it runs (memory budget, exact-search limit, shard size,
external vector store, model runtime, the models beside the main one and their copy variants) is set once by
options (`lookalike index --memory-budget 8G --runtime onnx`) or by the Python API's arguments, stored in the
catalog and read back on every open. Environment variables never change it (they only say where caches live):
an indexer and a server started with different environments would otherwise rebuild each other's structure.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from lookalike.errors import LookalikeError

# up to this many images the float16 vectors are searched exhaustively: 5.3 ms per query at 100k, and the PQ
# re-rank structure (0.34–0.80 ms at 100k) only pays for its build and tuning well above 50k
# (benchmarks/search_latency.py)
DEFAULT_EXACT_LIMIT = 50_000
# below this many images per shard the thread hand-off (~0.2 ms) costs more than the parallel scan saves
# (100k in 2 shards: 0.55 ms vs 0.34 ms in one; 1M in 2 shards: 4.1 ms vs 5.1–6.1 ms in one)
DEFAULT_SHARD_MIN_SIZE = 250_000
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)I?B?\s*", re.IGNORECASE)
_SCALE = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


class SettingsError(LookalikeError):
    """A setting that cannot be used, with what to write instead."""


def parse_size(text: str | int) -> int:
    """Bytes from `8G`, `512M`, `300K`, `1.5GiB` or a plain number of bytes."""
    if isinstance(text, int):
        return text
    match = _SIZE.fullmatch(text)
    if not match:
        raise SettingsError(f"{text!r} is not a size: write e.g. 8G, 512M or a number of bytes")
    return int(float(match[1]) * _SCALE[match[2].upper()])


@dataclass(frozen=True)
class IndexSettings:
    memory_budget: int | None = None  # bytes of RAM for the search structure; past it, IVF-PQ on disk
    exact_limit: int = DEFAULT_EXACT_LIMIT  # exhaustive float16 search up to this many images
    shard_min_size: int = DEFAULT_SHARD_MIN_SIZE  # images per shard before a collection is split per core
    store: str | None = None  # an external vector store (milvus://host:port/collection); None: embedded FAISS
    runtime: str | None = None  # how image towers run: auto, torch, bf16, onnx, onnx-int8; None: auto
    models: tuple[str, ...] = ()  # models beside the main one (`--model clip,sscd`), canonical ids
    copy_variants: tuple[str, ...] = ()  # the copy model's extra vectors: dihedral, regions (lookalike.copies)

    def __post_init__(self) -> None:
        from lookalike.models.runtime import RUNTIMES

        for name in ("models", "copy_variants"):  # JSON gives lists; a frozen settings object holds tuples
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.runtime is not None and self.runtime not in RUNTIMES:
            raise SettingsError(f"unknown runtime '{self.runtime}': choose one of {', '.join(RUNTIMES)}")
        if self.memory_budget is not None and self.memory_budget <= 0:
            raise SettingsError("the memory budget must be positive (e.g. --memory-budget 8G)")
        if self.exact_limit < 0 or self.shard_min_size < 1:
            raise SettingsError("exact_limit must be ≥ 0 and shard_min_size ≥ 1")

    def changed(self, **values: Any) -> IndexSettings:
        """A copy with the values that are not None replaced (options the user did not give stay as stored)."""
        return replace(self, **{key: value for key, value in values.items() if value is not None})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: dict[str, Any] | None) -> IndexSettings:
        """The stored settings; fields a later version added take their defaults."""
        known = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in (stored or {}).items() if key in known})

    def describe(self) -> dict[str, Any]:
        """The settings as `info` shows them."""
        return {**asdict(self), "runtime": self.runtime or "auto", "memory_budget": None if self.memory_budget is None
                else f"{self.memory_budget / 2**20:,.0f} MiB"}


DEFAULT_SETTINGS = IndexSettings()
