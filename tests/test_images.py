import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.errors import ImageError
from lookalike.images import file_digest, load_image, open_query_image, scan


def _png(path, color=(200, 10, 10), size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def test_scan_is_recursive_and_skips_hidden_junk_and_non_images(tmp_path):
    _png(tmp_path / "b.png")
    _png(tmp_path / "a" / "deep" / "c.JPG".lower())
    _png(tmp_path / "ünïcode folder" / "photo with spaces.png")
    _png(tmp_path / ".hidden" / "x.png")
    _png(tmp_path / ".secret.png")
    _png(tmp_path / "@eaDir" / "thumb.png")
    _png(tmp_path / "node_modules" / "icon.png")
    (tmp_path / "notes.txt").write_text("not an image")
    result = scan(tmp_path)
    assert sorted(f.relpath for f in result.files) == ["a/deep/c.jpg", "b.png", "ünïcode folder/photo with spaces.png"]
    assert result.problems == []
    assert {f.relpath for f in scan(tmp_path, include_hidden=True).files} >= {".hidden/x.png", ".secret.png"}


def test_scan_survives_symlink_loops_and_reports_broken_links(tmp_path):
    _png(tmp_path / "sub" / "a.png")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")
    os.symlink(tmp_path / "missing.png", tmp_path / "broken.png")
    result = scan(tmp_path)
    assert [f.relpath for f in result.files] == ["sub/a.png"]
    assert result.problems == [("broken.png", "broken symlink")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_scan_reports_unreadable_folder(tmp_path):
    locked = tmp_path / "locked"
    _png(locked / "a.png")
    locked.chmod(0)
    try:
        assert scan(tmp_path).problems == [("locked", "permission denied")]
    finally:
        locked.chmod(0o755)


def test_file_digest_depends_on_bytes_only(tmp_path):
    a = _png(tmp_path / "a.png")
    b = tmp_path / "b.png"
    b.write_bytes(a.read_bytes())
    assert file_digest(a) == file_digest(b)
    _png(b, color=(0, 0, 0))
    assert file_digest(a) != file_digest(b)


def test_exif_orientation_is_applied_and_original_size_reported(tmp_path):
    image = Image.new("RGB", (60, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 20))  # blue strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.size == (20, 60)
    assert loaded.info["original_size"] == (20, 60)
    top = np.asarray(loaded)[2, 10]
    assert top[2] > 200 and top[0] < 80  # the blue strip is now on top


def test_alpha_is_composited_on_grey_and_palette_and_16bit_work(tmp_path):
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    rgba.save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png").getpixel((5, 5)) == (128, 128, 128)
    Image.new("P", (10, 10), 3).save(tmp_path / "palette.gif")
    assert load_image(tmp_path / "palette.gif").mode == "RGB"
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(tmp_path / "deep.png")
    assert load_image(tmp_path / "deep.png").getpixel((1, 1)) == (255, 255, 255)


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    r, g, _ = load_image(tmp_path / "anim.gif").getpixel((5, 5))
    assert r > 200 and g < 50


def test_heic_round_trip(tmp_path, photos):
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    photos["chelsea"].save(tmp_path / "cat.heic", quality=90)
    loaded = load_image(tmp_path / "cat.heic")
    assert loaded.size == photos["chelsea"].size
    diff = np.abs(np.asarray(loaded, np.int16) - np.asarray(photos["chelsea"], np.int16)).mean()
    assert diff < 10


def test_jpeg_draft_mode_decodes_large_photos_smaller_but_not_below_request(tmp_path, photos):
    big = photos["hubble_deep_field"].resize((3000, 2600))
    big.save(tmp_path / "big.jpg", quality=90)
    drafted = load_image(tmp_path / "big.jpg", draft_size=224)
    assert min(drafted.size) >= 224 and drafted.width < 3000
    assert drafted.info["original_size"] == (3000, 2600)
    assert load_image(tmp_path / "big.jpg").size == (3000, 2600)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"this is a text file pretending to be a jpeg", "not an image"),
    ],
)
def test_bad_files_raise_readable_reasons(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason):
        load_image(path)


def test_truncated_jpeg_is_reported(tmp_path, photos):
    buffer = io.BytesIO()
    photos["coffee"].save(buffer, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_image(tmp_path / "cut.jpg")


def test_missing_file_and_pixel_limit(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nope.png")
    _png(tmp_path / "wide.png", size=(4000, 3000))
    with pytest.raises(ImageError, match="too large"):
        load_image(tmp_path / "wide.png", pixel_limit=10_000_000)


def test_open_query_image_accepts_bytes_and_pil(photos):
    buffer = io.BytesIO()
    photos["rocket"].save(buffer, "PNG")
    assert open_query_image(buffer.getvalue()).size == photos["rocket"].size
    assert open_query_image(photos["rocket"].convert("L")).mode == "RGB"


def _zero_png(width: int, height: int) -> bytes:
    """A valid greyscale PNG of any size in a few hundred KB (all-zero rows compress to nothing)."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    raw = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_the_pixel_limit_is_lookalikes_own_not_pillows(monkeypatch):
    """Fault 7: Pillow's bomb check (2 x MAX_IMAGE_PIXELS) fired first, so LOOKALIKE_MAX_PIXELS could not raise it."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # Pillow alone would refuse anything over 2,000 pixels
    data = _zero_png(120, 120)  # 14,400 pixels
    monkeypatch.setenv("LOOKALIKE_MAX_PIXELS", "20000")
    assert load_image(data).size == (120, 120)
    monkeypatch.setenv("LOOKALIKE_MAX_PIXELS", "10000")
    with pytest.raises(ImageError, match="14,400 pixels, over the 10,000 limit"):
        load_image(data)


@pytest.mark.slow
def test_over_the_documented_limit_is_refused_before_decoding():
    data = _zero_png(20_000, 13_000)  # 260 MP, > 250 MP: refused from the header alone
    with pytest.raises(ImageError, match="over the 250,000,000 limit"):
        load_image(data)


@pytest.mark.slow
def test_a_200_megapixel_image_decodes_under_the_default_limit():
    image = load_image(_zero_png(16_000, 12_500))
    assert image.size == (16_000, 12_500)


def test_concurrent_decodes_stay_within_the_pixel_budget(monkeypatch, photos):
    """Fault 7: 8 threads decoding PNGs just under the limit held 3.85 GB at once."""
    from concurrent.futures import ThreadPoolExecutor

    from lookalike import images

    budget = images.PixelBudget(3 * 512 * 512)
    peak = []
    real_hold = budget.hold

    def watched(pixels):
        context = real_hold(pixels)

        class Watch:
            def __enter__(self):
                context.__enter__()
                peak.append(budget.in_flight)

            def __exit__(self, *exc):
                return context.__exit__(*exc)

        return Watch()

    monkeypatch.setattr(budget, "hold", watched)
    monkeypatch.setattr(images, "_budget", budget)
    data = io.BytesIO()
    photos["astronaut"].save(data, "PNG")  # 512 x 512
    with ThreadPoolExecutor(8) as pool:
        decoded = list(pool.map(lambda _: load_image(data.getvalue()), range(24)))
    assert all(d.size == (512, 512) for d in decoded) and len(peak) == 24
    assert max(peak) <= budget.capacity and budget.in_flight == 0
    big = images.PixelBudget(100)
    with big.hold(1_000):  # larger than the whole budget: decodes alone instead of waiting forever
        assert big.in_flight == 100


@pytest.mark.parametrize(("mode", "values", "expected_mean"), [
    ("F", np.linspace(0, 1, 256, dtype=np.float32), 127.5),  # float intensities in [0, 1]
    ("F", np.linspace(-1000, 50_000, 256, dtype=np.float32), 127.5),  # HDR / scientific floats
    ("I", np.linspace(0, 2**31 - 1, 256).astype(np.int32), 127.5),  # 32-bit counts
    ("I;16", np.linspace(0, 65535, 256).astype(np.uint16), 127.5),  # 16-bit
])
def test_high_bit_depth_tiffs_are_scaled_not_clipped(tmp_path, mode, values, expected_mean):
    """Fault 10: float and 32-bit TIFFs decoded all black or all white."""
    array = np.tile(values, (64, 1))  # a horizontal ramp
    image = Image.fromarray(array, mode) if mode != "I;16" else Image.fromarray(array)
    image.save(tmp_path / "deep.tif")
    decoded = np.asarray(load_image(tmp_path / "deep.tif"))
    assert decoded.mean() == pytest.approx(expected_mean, abs=2)
    assert decoded[:, 0].max() <= 1 and decoded[:, -1].min() >= 254  # a full ramp, black to white


CLIPART = Path("/usr/share/openclipart/png")
WHITE_ARTWORK = [Path("/usr/share/icons/desktop-base/256x256/emblems/emblem-debian-white.png"),
                 CLIPART / "recreation/sports/football_pitch__andy_bur_01.png"]


@pytest.mark.skipif(not all(p.is_file() for p in WHITE_ARTWORK), reason="needs apt packages openclipart-png, "
                    "desktop-base")
def test_different_transparent_images_stay_different(efficientnet, tmp_path):
    """White artwork on transparency (a logo, a pitch, white silhouettes of real clip-art shapes) used to become
    blank on white and match each other at 1.0."""
    shapes = [CLIPART / "people/silhouette_female_2.png", CLIPART / "animals/bison_leif_lodahl_01.png",
              CLIPART / "signs_and_symbols/padlock_silhouette_a.j.__01.png"]
    paths = list(WHITE_ARTWORK)
    for number, shape in enumerate(p for p in shapes if p.is_file()):
        alpha = Image.open(shape).convert("RGBA").getchannel("A")
        white = Image.new("RGBA", alpha.size, (255, 255, 255, 0))
        white.putalpha(alpha)
        white.save(tmp_path / f"silhouette{number}.png")
        paths.append(tmp_path / f"silhouette{number}.png")
    images = [load_image(p) for p in paths]
    assert len(images) >= 4
    vectors = efficientnet.embed_images(images)
    similarity = vectors @ vectors.T
    assert similarity[np.triu_indices(len(images), 1)].max() < 0.9
    assert np.asarray(images[0]).std() > 20  # the logo is visible, not a blank page
