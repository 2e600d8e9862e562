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
    env = {**os.environ, "LOOKALIKE_CACHE": str(tmp / "cache"), "LOOKALIKE_RUNTIME": "auto", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    _, modules = _cli(["index", str(folder), "--model", str(tiny_clip_dir)], folder, env)
    assert "torch" in modules  # the first use exports the image tower: the probe does see torch
    _, modules = _cli(["search", "--text", "first text query exports the text tower", "--json"], folder, env)
    assert "torch" in modules
    return folder, env


@pytest.mark.slow  # the fixture exports with the torch ONNX exporter, then several CLI processes run
def test_cold_image_search_imports_neither_torch_nor_transformers(indexed):
    folder, env = indexed
    [result], modules = _cli(["search", "chelsea.png", "--json", "--top", "3"], folder, env)
    assert not modules & set(HEAVY), modules & set(HEAVY)
    assert {"onnxruntime", "numpy", "PIL", "faiss"} <= modules
    top = result["results"][0]
    assert top["relative_path"] == "chelsea.png" and top["score"] > 0.999


@pytest.mark.slow
def test_cold_text_search_imports_neither_and_scores_like_torch(indexed):
    folder, env = indexed
    [cold], modules = _cli(["search", "--text", "a photo of a cat", "--json", "--top", "30"], folder, env)
    assert not modules & set(HEAVY), modules & set(HEAVY)
    assert "tokenizers" in modules
    [torch_run], modules = _cli(["--runtime", "torch", "search", "--text", "a photo of a cat", "--json", "--top",
                                 "30"], folder, env)
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
