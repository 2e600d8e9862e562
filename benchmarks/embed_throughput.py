"""Embedding throughput, end to end (decode included): the tutorial recipe vs lookalike's pipeline.

Recipe (as in the tutorials): transformers CLIPModel ViT-B/32 + AutoProcessor, one image at a time, fp32.
lookalike: the same architecture through its own loader, threaded decoding (JPEG draft mode) overlapping
batched inference, on each runtime. Random weights (compute does not depend on them); images are real photos
saved as 640×480 and 12-megapixel JPEGs. Fidelity = the lowest cosine between a runtime's vector and the
torch fp32 vector of the same image.

    python benchmarks/embed_throughput.py [--small 256] [--large 64] [--runtimes torch,bf16,onnx,onnx-int8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def write_images(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    from lookalike.samples import sample_photos

    folder.mkdir(parents=True, exist_ok=True)
    photos = list(sample_photos().values())
    paths = []
    for i in range(count):
        photo = photos[i % len(photos)]
        image = photo.resize(size).rotate(i % 7, expand=False)
        path = folder / f"{i:04d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def save_random_clip(folder: Path) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    CLIPModel(CLIPConfig(projection_dim=512)).save_pretrained(folder)
    CLIPImageProcessor().save_pretrained(folder)
    return folder


def recipe(checkpoint: Path, paths: list[Path]) -> tuple[float, np.ndarray]:
    """One image at a time, fp32, the way the tutorials do it."""
    import torch
    from PIL import Image
    from transformers import AutoProcessor, CLIPModel

    model = CLIPModel.from_pretrained(checkpoint).eval()
    processor = AutoProcessor.from_pretrained(checkpoint)
    vectors = []
    start = time.perf_counter()
    for path in paths:
        image = Image.open(path).convert("RGB")
        inputs = processor(images=image, return_tensors="pt")
        with torch.no_grad():
            features = model.get_image_features(**inputs)
        features = getattr(features, "pooler_output", features)
        vectors.append(features[0].numpy())
    elapsed = time.perf_counter() - start
    vectors = np.stack(vectors)
    return len(paths) / elapsed, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def lookalike_pipeline(embedder, paths: list[Path], runtime: str) -> tuple[float, np.ndarray]:
    from lookalike.indexer import embed_files

    embedder.use_runtime(runtime)
    list(embed_files(paths[:4], embedder, batch_size=4))  # warm-up: export/load, first-call allocations
    start = time.perf_counter()
    vectors = [vector for _, vector, _ in embed_files(paths, embedder, batch_size=32)]
    elapsed = time.perf_counter() - start
    return len(paths) / elapsed, np.stack(vectors)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=256)
    parser.add_argument("--large", type=int, default=64)
    parser.add_argument("--runtimes", default="torch,bf16,onnx,onnx-int8")
    args = parser.parse_args()
    import torch

    from lookalike.models.hf import HuggingFaceEmbedder

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = save_random_clip(tmp / "clip")
        embedder = HuggingFaceEmbedder(str(checkpoint), "hf:benchmark-clip-b32")
        sets = {"640x480": write_images(tmp / "small", args.small, (640, 480)),
                "12 MP": write_images(tmp / "large", args.large, (4000, 3000))}
        for name, paths in sets.items():
            base_speed, _ = recipe(checkpoint, paths)
            print(f"{name}, {len(paths)} images: recipe (batch 1, fp32) {base_speed:.1f} img/s", flush=True)
            reference = None
            for runtime in args.runtimes.split(","):
                speed, vectors = lookalike_pipeline(embedder, paths, runtime)
                if reference is None:
                    reference = vectors if runtime == "torch" else lookalike_pipeline(embedder, paths, "torch")[1]
                fidelity = float((vectors * reference).sum(axis=1).min())
                print(f"  lookalike {runtime:<10} {speed:7.1f} img/s   {speed / base_speed:5.1f}x recipe   "
                      f"min cosine to fp32 {fidelity:.4f}", flush=True)


if __name__ == "__main__":
    main()
