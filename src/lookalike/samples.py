"""Real sample photos (scikit-image's and scikit-learn's bundled pictures) and edited copies of them.

Used by the demo and the tests: nothing is downloaded, and the edits are the ones users ask about —
re-saved metadata, a one-pixel change, resizes, recompression, crops.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                  "retina", "camera", "coins", "moon", "clock", "grass", "gravel", "brick")
SKLEARN_PHOTOS = ("china", "flower")


def sample_photos() -> dict[str, Image.Image]:
    """Sixteen real photographs by name (needs the `samples` extra: scikit-image, scikit-learn)."""
    try:
        import skimage.data
        from sklearn.datasets import load_sample_images
    except ImportError as exc:
        raise ImportError("sample photos need `pip install lookalike[samples]` (scikit-image, scikit-learn)") from exc
    photos = {}
    for name in SKIMAGE_PHOTOS:
        array = getattr(skimage.data, name)()
        photos[name] = Image.fromarray(np.asarray(array, dtype=np.uint8)).convert("RGB")
    bunch = load_sample_images()
    for name, array in zip(SKLEARN_PHOTOS, bunch.images, strict=True):
        photos[name] = Image.fromarray(array).convert("RGB")
    return photos


def _resaved(image: Image.Image) -> bytes:
    # PNG is lossless: same pixels, different bytes (a new text chunk), like a photo re-saved with new metadata.
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "re-saved by lookalike.samples with new metadata")
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def _one_pixel(image: Image.Image) -> Image.Image:
    edited = image.copy()
    x, y = edited.width // 3, edited.height // 3
    r, g, b = edited.convert("RGB").getpixel((x, y))  # type: ignore[misc]  # an RGB pixel is a 3-tuple
    edited.putpixel((x, y), (255 - r, 255 - g, 255 - b))
    return edited


def _centre_crop(image: Image.Image, keep: float) -> Image.Image:
    w, h = image.size
    cw, ch = int(w * keep), int(h * keep)
    left, top = (w - cw) // 2, (h - ch) // 2
    return image.crop((left, top, left + cw, top + ch))


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


# name → (file suffix, edit producing the file's bytes)
EDITS: dict[str, tuple[str, Callable[[Image.Image], bytes]]] = {
    "resaved": (".png", _resaved),
    "onepixel": (".png", lambda im: _png(_one_pixel(im))),
    "half": (".png", lambda im: _png(im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS))),
    "jpeg40": (".jpg", lambda im: _jpeg(im, 40)),
    "crop80": (".png", lambda im: _png(_centre_crop(im, 0.8))),
}


def write_sample_folder(folder: str | Path, photos: dict[str, Image.Image] | None = None,
                        edited: tuple[str, ...] = ("chelsea", "astronaut", "coffee")) -> list[Path]:
    """Write every photo as `<name>.png`, and edited copies of `edited` as `<name>_<edit>.<ext>`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    photos = photos or sample_photos()
    written = []
    for name, image in photos.items():
        path = folder / f"{name}.png"
        path.write_bytes(_png(image))
        written.append(path)
        if name in edited:
            for edit, (suffix, make) in EDITS.items():
                copy = folder / "edited" / f"{name}_{edit}{suffix}"
                copy.parent.mkdir(exist_ok=True)
                copy.write_bytes(make(image))
                written.append(copy)
    return written


def clip_weights_cached(repo_id: str = "openai/clip-vit-base-patch32") -> bool:
    """True when the CLIP checkpoint is already in the local Hugging Face cache (the demo then adds text search)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return all(isinstance(try_to_load_from_cache(repo_id, name), str)
               for name in ("config.json", "preprocessor_config.json"))


def main() -> None:
    import sys

    if sys.argv[1:] == ["--clip-cached"]:
        sys.exit(0 if clip_weights_cached() else 1)
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-photos")
    written = write_sample_folder(folder / "photos")
    query = folder / "query_chelsea_small.jpg"
    query.write_bytes(_jpeg(sample_photos()["chelsea"].resize((225, 150)), 60))
    print(f"wrote {len(written)} images to {folder / 'photos'} and a query image {query}")


if __name__ == "__main__":
    main()
