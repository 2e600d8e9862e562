"""A cold `lookalike search` on an ONNX runtime never imports torch or transformers (issue #15).

Real CLI processes on a tiny CLIP built by conftest: the first `index` and the first text query export the
towers (and do import torch, which proves the probe sees it); every later process must answer from the model
cache alone, with the same numbers.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lookalike.models import runtime as runtimes

HEAVY = ("torch", "transformers")
# Runs the CLI like the `lookalike` script does, then reports which modules the process imported.
PROBE = """
import atexit, json, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["lookalike", *sys.argv[1:]]
from lookalike.cli import main
main()
"""


def _cli(args: list[str], cwd: Path, env: dict) -> tuple[list[dict], set[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    marker = next(line for line in done.stderr.splitlines() if line.startswith("MODULES "))
    modules = {name.split(".")[0] for name in json.loads(marker.removeprefix("MODULES "))}
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")], modules


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_clip_dir, sample_folder_template):
    tmp = tmp_path_factory.mktemp("cold")
    folder = tmp / "photos"
    shutil.copytree(sample_folder_template, folder)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "LOOKALIKE_CACHE": str(tmp / "cache"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    _, modules = _cli(["index", str(folder), "--model", str(tiny_clip_dir)], folder, env)
    assert "torch" in modules  # the first use exports the image tower: the probe does see torch
    _, modules = _cli(["search", "--text", "first text query exports the text tower", "--json"], folder, env)
    assert "torch" in modules
    return folder, env


@pytest.mark.slow  # the fixture exports with the torch ONNX exporter, then several CLI processes run
def test_cold_image_search_imports_neither_torch_nor_transformers(indexed):
    folder, env = indexed
    [result], modules = _cli(["search", "chelsea.png", "--json", "--top", "5"], folder, env)
    assert not modules & set(HEAVY), modules & set(HEAVY)
    assert {"onnxruntime", "numpy", "PIL", "faiss"} <= modules
    # The image ties with its re-save and its one-pixel edit (one picture at the model's 224 px), and the tiny
    # random test model puts the half-size copy level with them: the image is among the best, at ~1.0.
    scores = {hit["relative_path"]: hit["score"] for hit in result["results"]}
    assert scores["chelsea.png"] > 0.999 and scores["edited/chelsea_resaved.png"] > 0.999


@pytest.mark.slow
def test_cold_text_search_imports_neither_and_scores_like_torch(indexed):
    folder, env = indexed
    [cold], modules = _cli(["search", "--text", "a photo of a cat", "--json", "--top", "30"], folder, env)
    assert not modules & set(HEAVY), modules & set(HEAVY)
    assert "tokenizers" in modules
    _cli(["index", str(folder), "--runtime", "torch"], folder, env)  # a stored setting, read by the next process
    try:
        [torch_run], modules = _cli(["search", "--text", "a photo of a cat", "--json", "--top", "30"], folder, env)
    finally:
        _cli(["index", str(folder), "--runtime", "auto"], folder, env)
    assert "torch" in modules
    cold_scores = {r["relative_path"]: r["score"] for r in cold["results"]}
    torch_scores = {r["relative_path"]: r["score"] for r in torch_run["results"]}
    assert cold_scores.keys() == torch_scores.keys()
    assert np.allclose([cold_scores[p] for p in cold_scores], [torch_scores[p] for p in cold_scores], atol=2e-3)


def test_cli_and_api_imports_do_not_pull_heavy_modules():
    done = subprocess.run([sys.executable, "-c", "import sys, lookalike, lookalike.api, lookalike.cli, "
                           "lookalike.search, lookalike.models.registry, lookalike.models.efficientnet, "
                           "lookalike.models.hf; print(sorted(sys.modules))"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
    modules = {name.split(".")[0] for name in eval(done.stdout)}  # noqa: S307 - our own repr of a list of names
    assert not modules & {"torch", "transformers", "onnx", "onnxruntime", "faiss"}


EMBED_PROBE = """
import json, sys
from PIL import Image
from lookalike.models.registry import load_embedder
vector = load_embedder(sys.argv[1]).embed_images([Image.open(sys.argv[2]).convert("RGB")])[0]
print(json.dumps({"vector": vector.tolist(), "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


@pytest.fixture(scope="module")
def tiny_siglip_dir(tmp_path_factory) -> Path:
    """SigLIP's image side (text needs a SentencePiece tokenizer, which tests cannot build offline)."""
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    folder = tmp_path_factory.mktemp("tiny-siglip")
    torch.manual_seed(0)
    text = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=16)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=64,
                  patch_size=16)
    SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).save_pretrained(folder)
    SiglipImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("family", ["efficientnet-lite0", "dinov2", "siglip", "clip"])
def test_every_onnx_family_embeds_in_a_cold_process_without_torch(family, request, tmp_path, monkeypatch,
                                                                  sample_folder_template):
    """First use in this process (exports, default runtime); a new process gives the same vector from the cache."""
    from lookalike.models.registry import _build, canonical_model_id

    fixtures = {"dinov2": "tiny_dino_dir", "siglip": "tiny_siglip_dir", "clip": "tiny_clip_dir"}
    name = str(request.getfixturevalue(fixtures[family])) if family in fixtures else family
    model_id = canonical_model_id(name)
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path))
    monkeypatch.setattr(runtimes, "_process_default", "auto")
    photo = sample_folder_template / "coffee.png"
    from PIL import Image

    first = _build(model_id).embed_images([Image.open(photo).convert("RGB")])[0]
    src = str(Path(__file__).resolve().parents[1] / "src")
    done = subprocess.run([sys.executable, "-c", EMBED_PROBE, model_id, str(photo)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": src}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    cold = json.loads(done.stdout)
    assert not set(cold["modules"]) & set(HEAVY)
    assert float(np.dot(first, cold["vector"])) >= 0.9999
