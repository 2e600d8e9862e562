"""Text towers on ONNX Runtime with the `tokenizers` library: a text query without torch or transformers.

The first text query of a model exports its text tower (`text.onnx`, fp32: text vectors are kept within cosine
0.9999 of torch) and saves the fast tokenizer (`tokenizer.json`) with the padding and truncation settings
transformers applied (`text.json`). Later processes tokenize with `tokenizers` (≈ 0.1 s to load CLIP's BPE) and run
the graph, whose weights ONNX Runtime memory-maps: a query reads a few rows of the 49k-token table, not 100 MB.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lookalike.models import runtime as runtimes
from lookalike.models.cache import ModelCache

GRAPH = "text.onnx"
TOKENIZER = "tokenizer.json"
SETTINGS = "text.json"  # {"inputs", "max_length", "padding": "longest" | "max_length", "pad_id", "pad_token"}


def is_exported(cache: ModelCache) -> bool:
    return all(cache.path(name).exists() for name in (GRAPH, TOKENIZER, SETTINGS))


class OnnxTextEncoder:
    """Tokenize as transformers did at export time, run the cached graph; `export()` writes the three files."""

    def __init__(self, cache: ModelCache, export: Callable[[], object]) -> None:
        from tokenizers import Tokenizer

        with runtimes._lock:
            if not is_exported(cache):
                export()
        settings = cache.read_json(SETTINGS) or {}
        self.inputs: list[str] = settings["inputs"]
        self.tokenizer = Tokenizer.from_file(str(cache.path(TOKENIZER)))
        self.tokenizer.enable_truncation(int(settings["max_length"]))
        if settings.get("pad_id") is not None:
            length = int(settings["max_length"]) if settings["padding"] == "max_length" else None
            self.tokenizer.enable_padding(pad_id=int(settings["pad_id"]), pad_token=settings["pad_token"],
                                          length=length)
        else:
            self.tokenizer.no_padding()
        self.session = runtimes.OnnxSession(cache.path(GRAPH))

    def __call__(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        feeds = {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64)}
        if "attention_mask" in self.inputs:
            feeds["attention_mask"] = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return self.session.run(feeds)


def save_tokenizer(cache: ModelCache, tokenizer, inputs: list[str], max_length: int, padding: str) -> None:
    """Write `tokenizer.json` and `text.json` for a transformers fast tokenizer (its `backend_tokenizer`)."""
    import os

    cache.folder.mkdir(parents=True, exist_ok=True)
    temporary = cache.path(f"{TOKENIZER}.tmp{os.getpid()}")
    tokenizer.backend_tokenizer.save(str(temporary))
    os.replace(temporary, cache.path(TOKENIZER))
    cache.write_json(SETTINGS, {"inputs": inputs, "max_length": max_length, "padding": padding,
                                "pad_id": tokenizer.pad_token_id, "pad_token": tokenizer.pad_token})
