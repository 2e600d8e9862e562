"""Fast runtimes must give the same answers: cosine ≥ 0.99 to torch fp32 for every real photo, and the same
neighbours. Checked on EfficientNet-Lite0's real weights and on a full-size (random) CLIP ViT-B/32."""

import numpy as np
import pytest

from lookalike.errors import LookalikeError
from lookalike.models import runtime as runtimes
from lookalike.models.efficientnet import EfficientNetLiteEmbedder


@pytest.fixture(scope="module")
def real_photos(photos):
    images = list(photos.values())
    return images + [im.transpose(0) for im in images] + [im.resize((im.width // 2, im.height // 2)) for im in images]


pytestmark = pytest.mark.usefixtures("module_model_cache")  # exports land in a cache of this module's own


def _fidelity(embedder, images, runtime):
    embedder.use_runtime("torch")
    batch = np.stack([embedder.prepare(im) for im in images])
    reference = embedder.embed_prepared(batch)
    assert embedder.use_runtime(runtime) == runtime
    fast = embedder.embed_prepared(batch)
    embedder.use_runtime("torch")
    cosines = (reference * fast).sum(axis=1)
    neighbours_ref = np.argsort(-(reference @ reference.T), axis=1)[:, :10]
    neighbours_fast = np.argsort(-(fast @ fast.T), axis=1)[:, :10]
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(neighbours_ref, neighbours_fast, strict=True)])
    return cosines.min(), overlap


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnx", "bf16"])
def test_efficientnet_fast_runtimes_keep_fidelity(real_photos, runtime):
    cosine, overlap = _fidelity(EfficientNetLiteEmbedder(), real_photos, runtime)
    assert cosine >= 0.99 and overlap >= 0.95


@pytest.fixture(scope="module")
def full_size_clip(tmp_path_factory):
    """ViT-B/32 at full size with random weights: compute and quantisation error do not depend on training."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from lookalike.models.hf import HuggingFaceEmbedder

    folder = tmp_path_factory.mktemp("clip-b32")
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(projection_dim=512)).save_pretrained(folder)
    CLIPImageProcessor().save_pretrained(folder)
    return HuggingFaceEmbedder(str(folder), "hf:random-clip-b32")


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnx-int8", "onnx"])
def test_clip_fast_runtimes_keep_fidelity(full_size_clip, real_photos, runtime):
    cosine, overlap = _fidelity(full_size_clip, real_photos, runtime)
    assert cosine >= 0.99 and overlap >= 0.9


def test_auto_picks_int8_for_transformers_and_fp32_onnx_for_cnns(monkeypatch):
    monkeypatch.setattr(runtimes, "onnx_available", lambda: True)
    assert runtimes.resolve("auto", transformer=True) == "onnx-int8"
    assert runtimes.resolve("auto", transformer=False) == "onnx"
    monkeypatch.setattr(runtimes, "onnx_available", lambda: False)
    assert runtimes.resolve("auto", transformer=True) == "torch"
    with pytest.raises(LookalikeError, match="lookalike\\[onnx\\]"):
        runtimes.resolve("onnx", transformer=False)


@pytest.mark.slow
def test_exports_are_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path))
    embedder = EfficientNetLiteEmbedder()
    embedder.use_runtime("onnx")
    files = list((tmp_path / "onnx").glob("efficientnet-lite0-*/vision.onnx"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    EfficientNetLiteEmbedder().use_runtime("onnx")
    assert files[0].stat().st_mtime_ns == stamp


def test_unknown_runtime_is_refused():
    with pytest.raises(LookalikeError, match="unknown runtime"):
        runtimes.check_runtime("tpu")
    with pytest.raises(LookalikeError, match="unknown runtime"):
        runtimes.set_default_runtime("tpu")


@pytest.mark.slow
def test_an_unwritable_cache_folder_does_not_stop_model_loading(tmp_path, monkeypatch, real_photos):
    """Fault 10: an unwritable cache directory crashed model loading."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be (unwritable even for root)")
    monkeypatch.setenv("LOOKALIKE_CACHE", str(blocker))
    embedder = EfficientNetLiteEmbedder()
    assert embedder.use_runtime("onnx") == "onnx"
    reference = EfficientNetLiteEmbedder()
    reference.use_runtime("torch")
    images = real_photos[:2]
    assert (embedder.embed_images(images) * reference.embed_images(images)).sum(axis=1).min() > 0.99


def _exported_graph_vectors(graph, batch, one_by_one=False):
    """What earlier versions ran: a session on the exported graph, optimised at load, weights pre-packed.
    (int8 activations are quantised per batch, so a query alone is compared with a query alone.)"""
    import onnxruntime as ort

    from lookalike.models.base import l2_normalize

    session = ort.InferenceSession(str(graph), ort.SessionOptions(), providers=["CPUExecutionProvider"])
    runs = [batch[i:i + 1] for i in range(len(batch))] if one_by_one else [batch]
    return l2_normalize(np.concatenate([session.run(None, {"pixel_values": part})[0] for part in runs]))


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnx-int8", "onnx"])
def test_cached_sessions_keep_the_vectors_of_the_exported_graph(full_size_clip, real_photos, runtime):
    """The saved optimised graph with memory-mapped weights, with and without pre-packing, in an embedder that
    read everything from the cache: cosine ≥ 0.9999 to the exported graph's vectors on real photos."""
    from lookalike.models.hf import HuggingFaceEmbedder

    full_size_clip.use_runtime(runtime)
    batch = np.stack([full_size_clip.prepare(im) for im in real_photos])
    assert len(batch) >= runtimes.PREPACK_FROM
    packed = full_size_clip.embed_prepared(batch)
    cold = HuggingFaceEmbedder(full_size_clip.source, full_size_clip.id)  # from model.json, as a new process
    assert cold.preprocessing() == full_size_clip.preprocessing() and cold.dim == full_size_clip.dim
    assert cold.use_runtime(runtime) == runtime
    single = np.concatenate([cold.embed_prepared(batch[i:i + 1]) for i in range(len(batch))])
    assert cold.runtime.session._packed is False
    graph = full_size_clip.model_cache.path("vision.int8.onnx" if runtime == "onnx-int8" else "vision.onnx")
    assert (_exported_graph_vectors(graph, batch) * packed).sum(axis=1).min() >= 0.9999
    assert (_exported_graph_vectors(graph, batch, one_by_one=True) * single).sum(axis=1).min() >= 0.9999
    assert len(list(graph.parent.glob(f"{graph.stem}.opt-*.onnx"))) == 1
