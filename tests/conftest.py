"""Shared fixtures: real photos, folders of them with edited copies, and tiny Hugging Face checkpoints built here.

Nothing is downloaded: HF_HUB_OFFLINE=1 makes any accidental hub access fail loudly.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from lookalike.models import runtime as _runtimes  # noqa: E402
from lookalike.models.base import Embedder  # noqa: E402
from lookalike.samples import sample_photos, write_sample_folder  # noqa: E402

# In-process tests compare numbers against torch fp32; the end-to-end tests (subprocesses) run the default, auto.
_runtimes.set_default_runtime("torch")


@pytest.fixture(scope="session")
def photos():
    return sample_photos()


@pytest.fixture(scope="session")
def sample_folder_template(tmp_path_factory, photos) -> Path:
    folder = tmp_path_factory.mktemp("template") / "photos"
    write_sample_folder(folder, photos)
    return folder


@pytest.fixture
def sample_folder(tmp_path, sample_folder_template) -> Path:
    """A fresh copy per test: 16 real photos plus edited copies of chelsea, astronaut and coffee in edited/."""
    folder = tmp_path / "photos"
    shutil.copytree(sample_folder_template, folder)
    return folder


@pytest.fixture(scope="module")
def module_model_cache(tmp_path_factory):
    """A model cache (LOOKALIKE_CACHE) of the test module's own, so each graph is exported once per module."""
    patch = pytest.MonkeyPatch()
    patch.setenv("LOOKALIKE_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def efficientnet():
    from lookalike.models.registry import load_embedder

    return load_embedder("efficientnet-lite0")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte gets a printable symbol."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    symbols = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            symbols.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, symbols), strict=True))


def write_tiny_clip_tokenizer(folder: Path) -> int:
    symbols = list(_bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return len(vocab)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A randomly initialised CLIP (both towers, tokenizer, image processor) saved like a hub checkpoint."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("tiny-clip")
    vocab_size = write_tiny_clip_tokenizer(folder)
    text = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=77, bos_token_id=vocab_size - 2,
                eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=64, patch_size=16)
    import torch

    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)).save_pretrained(folder)
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_dino_dir(tmp_path_factory) -> Path:
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    folder = tmp_path_factory.mktemp("tiny-dinov2")
    import torch

    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             image_size=64, patch_size=16)).save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 72}, crop_size={"height": 64, "width": 64},
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
    return folder


class CountingEmbedder:
    """Wraps an embedder and counts images through the model: proves what an incremental run re-embeds."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.images_embedded = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        self.images_embedded += len(batch)
        return self.inner.embed_prepared(batch)


@pytest.fixture
def counting(efficientnet) -> CountingEmbedder:
    return CountingEmbedder(efficientnet)


@pytest.fixture
def local_http():
    """serve(body) → base URL of a loopback HTTP server answering `body` (and /redirect → /image);
    `body` may be a dict of path → bytes (404 elsewhere)."""
    import http.server
    import threading

    servers = []

    def serve(body: bytes) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "/image")
                    self.end_headers()
                    return
                payload = body.get(self.path) if isinstance(body, dict) else body
                if payload is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
