"""Tests for tango3d_core.data.imageio: load_image and ImageLoadError.

Every image in here is built by the test itself (PIL, or a PNG written byte by byte when PIL
would have to hold the pixels: the 20000 x 20000 bomb)."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from tango3d_core.data import imageio
from tango3d_core.data.imageio import ImageLoadError, load_image

# ------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------


def _encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, *, depth: int = 8, colour_type: int = 0, pixel: bytes = b"\x80",
              level: int = 1) -> bytes:
    """A PNG of one colour written row by row: never holds the decoded image (20000 x 20000
    grey is 400 MB of pixels but ~1.7 MB of file at zlib level 1). ``pixel`` is one pixel's
    bytes (filter type 0 per row)."""
    row = b"\x00" + pixel * width
    comp = zlib.compressobj(level)
    idat = b"".join([comp.compress(row) for _ in range(height)] + [comp.flush()])
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _assert_error(source, fragment: str, **kwargs) -> ImageLoadError:
    with pytest.raises(Exception) as info:
        load_image(source, **kwargs)
    err = info.value
    assert type(err) is ImageLoadError, f"{type(err).__name__}: {err}"
    msg = str(err)
    assert fragment.lower() in msg.lower(), msg
    if isinstance(source, Path):
        assert source.name in msg and str(source.parent) not in msg, "messages name the file, never its path"
    return err


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    """20000 x 20000 grey: 400 megapixels behind a small file."""
    return png_bytes(20_000, 20_000)


# ------------------------------------------------------------------------------------
# images that load: modes, sizes, formats
# ------------------------------------------------------------------------------------


def test_one_pixel_from_path_and_bytes(tmp_path):
    data = _encode(Image.new("RGB", (1, 1), (12, 34, 56)), "PNG")
    (tmp_path / "dot.png").write_bytes(data)
    for src in (tmp_path / "dot.png", str(tmp_path / "dot.png"), data, bytearray(data), memoryview(data)):
        im = load_image(src)
        assert im.mode == "RGB" and im.size == (1, 1) and im.getpixel((0, 0)) == (12, 34, 56)
        assert im.info["format"] == "PNG" and im.info["source_size"] == (1, 1)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "WEBP", "GIF"])
def test_accepted_formats_round_trip(fmt):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    if fmt == "GIF":  # 256-colour palette: use few colours so the round trip is exact
        arr = (arr // 128) * 255
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    im = load_image(_encode(Image.fromarray(arr), fmt, **kwargs))
    assert im.size == (9, 7) and im.info["format"] == fmt
    np.testing.assert_array_equal(np.asarray(im), arr)


def test_cmyk_jpeg_becomes_rgb():
    data = _encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    im = load_image(data)
    assert im.mode == "RGB" and im.info["source_mode"] == "CMYK"
    r, g, b = np.asarray(im).reshape(-1, 3).mean(axis=0)
    assert r > 240 and g < 15 and b < 15  # cyan 0, magenta + yellow full: red


def test_16_bit_grey_is_scaled_not_clipped():
    values = np.array([[0, 1, 128, 257], [32768, 40000, 65279, 65535]], dtype=np.uint16)
    data = _encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")  # PIL's own RGB conversion clips these
    im = load_image(data)
    expected = np.array([[round(int(v) * 255 / 65535) for v in row] for row in values], dtype=np.uint8)
    got = np.asarray(im)
    assert im.info["source_mode"].startswith("I;16")
    np.testing.assert_array_equal(got[..., 0], expected)
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()


def test_16_bit_rgb_png():
    pixel = struct.pack(">HHH", 0x8000, 0x4000, 0xFFFF)
    im = load_image(png_bytes(3, 2, depth=16, colour_type=2, pixel=pixel))
    assert im.size == (3, 2) and im.getpixel((2, 1)) == (128, 64, 255)


def test_int32_and_float_modes_when_tiff_is_allowed():
    ints = np.array([[0, 65535], [32768, 70000]], dtype=np.int32)
    im = load_image(_encode(Image.fromarray(ints, mode="I"), "TIFF"), formats=("TIFF",))
    assert [im.getpixel(p)[0] for p in [(0, 0), (1, 0), (0, 1), (1, 1)]] == [0, 255, 128, 255]
    floats = np.array([[0.0, 0.5], [1.0, np.nan]], dtype=np.float32)
    im = load_image(_encode(Image.fromarray(floats, mode="F"), "TIFF"), formats=("TIFF",))
    assert [im.getpixel(p)[0] for p in [(0, 0), (1, 0), (0, 1), (1, 1)]] == [0, 128, 255, 0]


def test_one_bit_and_palette_images():
    one = Image.new("1", (8, 8), 0)
    one.putpixel((3, 3), 1)
    im = load_image(_encode(one, "BMP"))
    assert im.getpixel((3, 3)) == (255, 255, 255) and im.getpixel((0, 0)) == (0, 0, 0)
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    im = load_image(_encode(pal, "PNG"))
    assert im.info["source_mode"] == "P" and im.getpixel((2, 2)) == (10, 200, 30)


def _blend(rgb, alpha, bg):
    """Naive reference: straight alpha over an opaque background, per channel."""
    a = alpha / 255.0
    return np.round(np.asarray(rgb, float) * a + np.asarray(bg, float) * (1 - a))


@pytest.mark.parametrize("background", [(255, 255, 255), (0, 0, 0), (10, 120, 250)])
def test_alpha_is_composited_over_the_background(background):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    rgba[0, 0, 3], rgba[0, 1, 3] = 0, 255
    im = load_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"), background=background)
    got = np.asarray(im).astype(int)
    want = _blend(rgba[..., :3], rgba[..., 3:4].astype(float), background)
    assert np.abs(got - want).max() <= 1
    assert tuple(got[0, 0]) == background and tuple(got[0, 1]) == tuple(rgba[0, 1, :3])


def test_grey_alpha_and_palette_transparency():
    la = Image.new("LA", (4, 4), (200, 0))
    la.putpixel((1, 1), (50, 255))
    im = load_image(_encode(la, "PNG"), background=(0, 0, 255))
    assert im.getpixel((0, 0)) == (0, 0, 255) and im.getpixel((1, 1)) == (50, 50, 50)

    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putpixel((2, 2), 1)
    data = _encode(pal, "PNG", transparency=0)  # index 0 (red) is transparent
    im = load_image(data)
    assert im.getpixel((0, 0)) == (255, 255, 255) and im.getpixel((2, 2)) == (0, 255, 0)

    key = Image.new("RGB", (3, 3), (1, 2, 3))
    key.putpixel((0, 0), (9, 9, 9))
    im = load_image(_encode(key, "PNG", transparency=(1, 2, 3)), background=(7, 7, 7))
    assert im.getpixel((1, 1)) == (7, 7, 7) and im.getpixel((0, 0)) == (9, 9, 9)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_images_give_their_first_frame(fmt):
    frames = [Image.new("RGB", (10, 6), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    data = _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0, **kwargs)
    im = load_image(data)
    assert im.info["animated"] is True and im.size == (10, 6)
    assert im.getpixel((5, 3)) == (255, 0, 0)
    assert load_image(_encode(frames[1], fmt, **kwargs)).info["animated"] is False


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 10, 20))  # white stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: show it turned 90 degrees clockwise
    out = load_image(_encode(im, "JPEG", exif=exif, quality=95))
    assert out.size == (20, 40) and out.info["exif_transposed"] is True
    arr = np.asarray(out).mean(axis=2)
    assert arr[:10].mean() > 200 and arr[20:].mean() < 50  # the left stripe is now on top


def test_max_side_downscales_once_keeping_the_aspect_ratio():
    im = load_image(_encode(Image.new("RGBA", (400, 100), (255, 0, 0, 0)), "PNG"), max_side=64)
    assert im.size == (64, 16) and im.getpixel((3, 3)) == (255, 255, 255)
    assert load_image(_encode(Image.new("RGB", (30, 20)), "PNG"), max_side=64).size == (30, 20)
    assert load_image(_encode(Image.new("RGB", (1000, 1)), "PNG"), max_side=10).size == (10, 1)


def test_max_side_decodes_large_jpegs_at_reduced_scale():
    data = _encode(Image.new("RGB", (2400, 1600), (30, 60, 90)), "JPEG", quality=90)
    t0 = time.perf_counter()
    im = load_image(data, max_side=256)
    assert im.size == (256, 171) and im.info["source_size"] == (2400, 1600)
    assert np.abs(np.asarray(im).astype(int) - (30, 60, 90)).max() <= 3
    assert time.perf_counter() - t0 < 5.0


# ------------------------------------------------------------------------------------
# bounds: bytes before decoding, pixels from the header
# ------------------------------------------------------------------------------------


def _decode_spy(monkeypatch) -> list[str]:
    """Record every call that would decode (or even parse) image data."""
    calls: list[str] = []
    real_open, real_load = Image.open, ImageFile.ImageFile.load

    def spy_open(*args, **kwargs):
        calls.append("open")
        return real_open(*args, **kwargs)

    def spy_load(self):
        calls.append("load")
        return real_load(self)

    monkeypatch.setattr(imageio.Image, "open", spy_open)
    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    return calls


def test_byte_cap_is_checked_before_any_decoder_runs(tmp_path, monkeypatch):
    data = _encode(Image.new("RGB", (64, 64), (1, 2, 3)), "BMP")  # 12 kB
    path = tmp_path / "big.bmp"
    path.write_bytes(data)
    calls = _decode_spy(monkeypatch)
    _assert_error(path, "above the 1.0 kB limit", max_bytes=1024)
    _assert_error(data, "above the 1.0 kB limit", max_bytes=1024)
    assert calls == []
    assert load_image(path, max_bytes=len(data)).size == (64, 64)
    assert calls[0] == "open" and "load" in calls


def test_pixel_cap_is_read_from_the_header(tmp_path, bomb_png, monkeypatch):
    assert len(bomb_png) < 3 * 1024 * 1024  # a small file...
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png)
    calls = _decode_spy(monkeypatch)
    t0 = time.perf_counter()
    # PIL's own guard (DecompressionBombError above 2 x Image.MAX_IMAGE_PIXELS) fires first here.
    _assert_error(path, "header claims 400.0 megapixels; the limit is 40.0 megapixels (decompression-bomb")
    assert time.perf_counter() - t0 < 1.0
    assert calls == ["open"]  # ...refused from its header: no pixel was decoded
    _assert_error(path, "decompression-bomb guard", max_pixels=10**9)  # and it stays on above ours
    _assert_error(png_bytes(8000, 8000), "8000 x 8000 pixels (64.0 megapixels); the limit is 40.0 megapixels")
    assert calls.count("load") == 0
    _assert_error(png_bytes(300, 200), "300 x 200 pixels", max_pixels=300 * 200 - 1)
    assert load_image(png_bytes(300, 200), max_pixels=300 * 200).size == (300, 200)


@pytest.mark.parametrize("fmt", ["GIF", "JPEG", "BMP", "WEBP"])
def test_headers_that_claim_huge_sizes(fmt):
    """Each format's width/height fields patched to 20000 x 20000 in an otherwise small file."""
    small = _encode(Image.new("RGB", (8, 8), (5, 5, 5)), fmt)
    data = bytearray(small)
    if fmt == "GIF":  # logical screen and image descriptor, little-endian uint16
        struct.pack_into("<HH", data, 6, 20000, 20000)
        at = data.index(b"\x2c")
        struct.pack_into("<HH", data, at + 5, 20000, 20000)
    elif fmt == "JPEG":  # SOF0: FF C0, length, precision, height, width (big-endian)
        at = data.index(b"\xff\xc0")
        struct.pack_into(">HH", data, at + 5, 20000, 20000)
    elif fmt == "BMP":  # BITMAPINFOHEADER width, height at 18, 22
        struct.pack_into("<ii", data, 18, 20000, 20000)
    else:  # lossy WebP VP8 frame header: 14-bit width and height at offset 26
        assert data[12:16] == b"VP8 "
        struct.pack_into("<HH", data, 26, 16000, 16000)
    err = _assert_error(bytes(data), "pixels")
    assert "limit" in str(err)


# ------------------------------------------------------------------------------------
# inputs that are not usable images
# ------------------------------------------------------------------------------------


def _tiff() -> bytes:
    return _encode(Image.new("RGB", (4, 4)), "TIFF")


_NOT_IMAGES = {
    "empty.png": (b"", "empty"),
    "notes.png": (b"hello, I am a text file\n", "text file"),
    "model.jpg": (b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n", "PLY mesh"),
    "model.png": (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "text file"),
    "scene.webp": (b"glTF" + b"\x02\x00\x00\x00" + b"\x00" * 40, "GLB mesh"),
    "doc.png": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "PDF document"),
    "vector.png": (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
    "scan.jpg": (_tiff(), "TIFF image, not an image in an accepted format"),
    "noise.png": (np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not an image"),
    "header_only.png": (b"\x89PNG\r\n\x1a\n", "PNG image, but its header is damaged"),
    "bad_ihdr.png": (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + b"\xff" * 17, "damaged"),
}


@pytest.mark.parametrize("filename", sorted(_NOT_IMAGES))
def test_non_images_say_what_they_are(tmp_path, filename):
    data, fragment = _NOT_IMAGES[filename]
    path = tmp_path / filename
    path.write_bytes(data)
    _assert_error(path, fragment)


def test_refused_formats_can_be_allowed():
    assert load_image(_tiff(), formats=["tiff"]).size == (4, 4)
    _assert_error(_encode(Image.new("RGB", (4, 4)), "PNG"), "accepted format (GIF)", formats=("GIF",))


def test_corrupt_and_truncated_jpeg():
    rng = np.random.default_rng(2)
    data = _encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG", quality=90)
    _assert_error(data[: len(data) // 2], "corrupt or truncated")
    _assert_error(data[:200], "corrupt or truncated")
    _assert_error(data[:4], "JPEG image, but its header is damaged")
    # Scan data overwritten with markers the decoder cannot skip.
    broken = bytearray(data)
    sos = broken.index(b"\xff\xda")
    broken[sos + 20: sos + 60] = b"\xff\xd9" * 20
    try:
        im = load_image(bytes(broken))  # libjpeg may pad a damaged scan with grey: then it is an image
    except ImageLoadError as e:
        assert "corrupt or truncated" in str(e)
    else:
        assert im.mode == "RGB" and im.size == (64, 64)


def test_truncated_png_and_gif():
    png = _encode(Image.fromarray(np.random.default_rng(3).integers(0, 256, (50, 50, 3), dtype=np.uint8)), "PNG")
    _assert_error(png[: len(png) - 100], "corrupt or truncated")
    gif = _encode(Image.new("RGB", (40, 40), (200, 10, 10)).quantize(4), "GIF")
    _assert_error(gif[:30], "")


def test_global_truncated_images_switch_is_left_alone():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_paths_that_are_not_files(tmp_path):
    _assert_error(tmp_path / "missing.png", "does not exist")
    (tmp_path / "folder.png").mkdir()
    _assert_error(tmp_path / "folder.png", "folder")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.png")  # reading it would block forever
        _assert_error(tmp_path / "pipe.png", "not a regular file")


@pytest.mark.parametrize("kwargs", [
    {"max_bytes": 0}, {"max_bytes": True}, {"max_pixels": -1}, {"max_side": 0}, {"max_side": 2.5},
    {"formats": "PNG"}, {"formats": []}, {"formats": ["NOPE"]}, {"background": (0, 0)},
    {"background": (0, 0, 256)}, {"background": ("a", 0, 0)},
])
def test_bad_arguments(kwargs):
    with pytest.raises(ImageLoadError):
        load_image(_encode(Image.new("RGB", (2, 2)), "PNG"), **kwargs)


def test_bad_source_type_and_names_in_messages():
    with pytest.raises(ImageLoadError, match="path or bytes"):
        load_image(12345)  # type: ignore[arg-type]
    err = _assert_error(b"", "empty", name="../../etc/evil\x00name.png")
    assert "'evilname.png'" in str(err) and "/" not in str(err).split("'")[1]
    _assert_error(b"", "'upload'")


def test_memory_error_and_decoder_bugs_become_image_load_error(monkeypatch):
    data = _encode(Image.new("RGB", (4, 4)), "PNG")

    def raise_(exc):
        def load(self):
            raise exc

        return load

    monkeypatch.setattr(ImageFile.ImageFile, "load", raise_(MemoryError()))
    _assert_error(data, "out of memory")
    monkeypatch.setattr(ImageFile.ImageFile, "load", raise_(ZeroDivisionError("bug")))
    _assert_error(data, "ZeroDivisionError")
    monkeypatch.setattr(ImageFile.ImageFile, "load", raise_(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        load_image(data)


def test_public_names():
    assert issubclass(ImageLoadError, ValueError)
    assert imageio.MAX_IMAGE_PIXELS == 40_000_000 and imageio.MAX_IMAGE_BYTES == 25 * 1024 * 1024
    assert set(imageio.SUPPORTED_FORMATS) == {"PNG", "JPEG", "WEBP", "GIF", "BMP"}
    for name in ("load_image", "ImageLoadError", "SUPPORTED_FORMATS"):
        assert name in imageio.__all__
