"""The model cache: one folder per model holding everything its ONNX path needs after the first export.

A cold `lookalike search` must not import torch or transformers (≈ 3.5 s and 500 MiB before the first vector,
issue #15). So the first use of a model writes, next to its ONNX graphs, the facts transformers would otherwise
be imported to read: family, output size, preprocessing (`model.json`) and, for text models, the tokenizer
(`tokenizer.json` + `text.json`, read by the small `tokenizers` library). Later processes open the folder with
`os.stat` calls and a few small JSON reads.

The folder is found without loading the model: its name hashes the model id and the checkpoint's identity —
the snapshot revision for a Hugging Face hub id (the commit the files come from), the size and modification time
of the weight, config and tokenizer files for a local folder (a re-saved checkpoint gets a new folder).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path

FORMAT = 1  # bump when the layout or the meaning of a file in it changes
CHECKPOINT_FILES = re.compile(
    r".*\.(safetensors|bin|pt|pth)$|(config|preprocessor_config|tokenizer|tokenizer_config|special_tokens_map|"
    r"vocab)\.json$|merges\.txt$|.*\.model$"
)


def cache_home() -> Path:
    """$LOOKALIKE_CACHE, or ~/.cache/lookalike; a private temporary folder when that cannot be written (a read-only
    home, a container without ~/.cache): exports are then redone per process instead of model loading failing."""
    global _fallback
    folder = Path(os.environ.get("LOOKALIKE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "lookalike"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return folder
    except OSError as exc:
        if _fallback is None:  # private to this process: nobody else can plant a model file in it
            _fallback = Path(tempfile.mkdtemp(prefix="lookalike-cache-"))
            logging.getLogger("lookalike").warning("cannot write the model cache %s (%s); using %s for this run",
                                                   folder, exc.strerror or exc, _fallback)
        return _fallback


_fallback: Path | None = None


def cache_root() -> Path:
    return cache_home() / "onnx"


class ModelCache:
    """`root/<name>-<key>/`: graphs (`vision.onnx`, `vision.int8.onnx`, `text.onnx`), their optimised copies,
    and small JSON files. Every file is written under a temporary name and renamed, so readers never see half."""

    def __init__(self, model_id: str, identity: str) -> None:
        key = hashlib.sha256(f"{FORMAT}|{model_id}|{identity}".encode()).hexdigest()[:16]
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", model_id.removeprefix("hf:").rstrip("/").split("/")[-1])[-40:]
        self.folder = cache_root() / f"{name}-{key}"

    @classmethod
    def for_checkpoint(cls, model_id: str, folder: Path) -> ModelCache:
        return cls(model_id, checkpoint_identity(folder))

    @classmethod
    def for_file(cls, model_id: str, path: Path) -> ModelCache:
        return cls(model_id, _stat_identity([Path(path)]))

    def path(self, name: str) -> Path:
        return self.folder / name

    def read_json(self, name: str) -> dict | None:
        try:
            return json.loads(self.path(name).read_text())
        except (OSError, ValueError):
            return None

    def write_json(self, name: str, payload: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.path(f"{name}.tmp{os.getpid()}")
        temporary.write_text(json.dumps(payload, indent=1, sort_keys=True))
        os.replace(temporary, self.path(name))


def checkpoint_identity(folder: Path) -> str:
    """A hub snapshot is named by its commit; a local folder is identified by its files' sizes and times."""
    folder = Path(folder)
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return f"{folder.parent.parent.name}@{folder.name}"
    return _stat_identity(sorted(p for p in folder.iterdir() if CHECKPOINT_FILES.fullmatch(p.name)))


def _stat_identity(paths: list[Path]) -> str:
    parts = []
    for path in paths:
        stat = path.stat()
        parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return ";".join(parts)


def checkpoint_folder(source: str) -> Path | None:
    """The folder holding `source`'s files: the directory itself, or the Hugging Face cache snapshot of a hub id
    (found without a network request). None when the files are not on disk yet."""
    if os.path.isdir(source):
        return Path(source)
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(source, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def hardware_tag() -> str:
    """ORT_ENABLE_ALL graphs may hold kernels for this CPU's instruction set, so saved ones are keyed by it."""
    import platform

    flags = ""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line for line in info if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = platform.processor()
    return hashlib.sha256(f"{platform.machine()}|{flags}".encode()).hexdigest()[:8]
