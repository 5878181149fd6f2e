"""Image input: read one untrusted image file (or its bytes) into a bounded RGB ``PIL.Image``.

Public API:

* :func:`load_image` reads PNG, JPEG, WebP, GIF and BMP (the default ``formats``) and returns
  a fully decoded RGB image, whatever the file's colour mode.
* :class:`ImageLoadError` (a ``ValueError``) is the only exception :func:`load_image` raises.
  Its message names the file by its base name and says what is wrong.

Uploads to the explorer are the norm here, so each step is bounded before the next one runs:

1. **Bytes.** The size is checked against ``max_bytes`` before a decoder sees anything (for a
   path: ``stat``, then at most ``max_bytes + 1`` bytes are read, so a file that grows meanwhile
   is caught too). Only regular files are read (a FIFO would block forever).
2. **Format.** Only the decoders in ``formats`` are tried (``PIL.Image.open(formats=...)``), so
   a TIFF, PSD or SVG never reaches a parser we did not ask for; a recognised non-image (a
   mesh, a PDF, text) gets a message that says what it is.
3. **Pixels.** The width and height come from the header (PIL's lazy ``open``) and are checked
   against ``max_pixels`` before any pixel is decoded. This is the decompression-bomb guard: a
   20000 x 20000 PNG of one colour is a few hundred kB on disk and 1.2 GB decoded. PIL's own
   global guard (``Image.MAX_IMAGE_PIXELS``) still applies on top.
4. **Decoding.** Only the first frame is decoded (animated GIF/PNG/WebP); a truncated or
   corrupt file is an error (``ImageFile.LOAD_TRUNCATED_IMAGES`` is left as it is, False by
   default). Peak memory is a few times ``max_pixels`` x 4 bytes.

Colour handling (what the returned RGB image holds):

* ``1``, ``L``, ``P``, ``RGB``, ``CMYK``, ``YCbCr``: PIL's conversion to RGB (CMYK is converted
  naively, without an ICC profile).
* 16-bit greyscale (``I;16*``, and ``I``): values in [0, 65535] are scaled to [0, 255]
  (``round(v * 255 / 65535)``), not clipped as PIL's own conversion does (which turns every
  value above 255 white). ``F`` (float): values in [0, 1] are scaled by 255, others clipped to
  [0, 255]; NaN becomes 0. 16-bit RGB(A) PNGs are reduced to 8 bits by PIL on open.
* Transparency (``RGBA``, ``LA``, ``PA``, a palette or colour key with ``transparency``): the
  image is composited over ``background`` (opaque white by default), so a transparent pixel
  becomes the background colour and a half-transparent one a 50 % blend.
* EXIF orientation is applied (a phone photo shows upright). Unreadable EXIF data is ignored:
  it is metadata, not a reason to refuse the pixels.
* ``max_side``: a larger image is downscaled once (Lanczos; JPEGs are decoded at a reduced
  scale first with ``draft``) so its longest side is ``max_side``; alpha is resized
  premultiplied, before compositing.

The returned image's ``info`` holds ``format`` (e.g. ``"PNG"``), ``source_mode``,
``source_size`` ``(width, height)`` as stored in the file, ``animated`` (bool: more frames
were present and ignored) and ``exif_transposed`` (bool).
"""

from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Sequence
from typing import Final

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ._text import fmt_bytes

__all__ = [
    "DEFAULT_BACKGROUND",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "SUPPORTED_FORMATS",
    "ImageLoadError",
    "ImageSource",
    "load_image",
]

MAX_IMAGE_BYTES: Final[int] = 25 * 1024 * 1024
"""Default cap (bytes) on the encoded file."""

MAX_IMAGE_PIXELS: Final[int] = 40_000_000
"""Default cap on width x height as stored in the file (40 MP: a large phone photo)."""

SUPPORTED_FORMATS: Final[tuple[str, ...]] = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
"""PIL format names decoded by default. TIFF, PSD, ICO and the rest are refused unless the
caller lists them: every extra decoder is more attack surface for untrusted files."""

DEFAULT_BACKGROUND: Final[tuple[int, int, int]] = (255, 255, 255)
"""Colour (RGB, 0-255) that transparent pixels are composited over."""

ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview

_ALPHA_MODES: Final = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_INT16_MODES: Final = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})

# What a file is when PIL's allowed decoders do not recognise it: (prefix, offset, name).
_MAGIC: Final[tuple[tuple[bytes, int, str], ...]] = (
    (b"\x89PNG\r\n\x1a\n", 0, "PNG image"),
    (b"\xff\xd8\xff", 0, "JPEG image"),
    (b"GIF87a", 0, "GIF image"),
    (b"GIF89a", 0, "GIF image"),
    (b"BM", 0, "BMP image"),
    (b"WEBP", 8, "WebP image"),
    (b"II*\x00", 0, "TIFF image"),
    (b"MM\x00*", 0, "TIFF image"),
    (b"8BPS", 0, "Photoshop (PSD) file"),
    (b"\x00\x00\x01\x00", 0, "Windows icon (ICO) file"),
    (b"ftypheic", 4, "HEIC image"),
    (b"ftypheix", 4, "HEIC image"),
    (b"ftypmif1", 4, "HEIF image"),
    (b"ftypavif", 4, "AVIF image"),
    (b"ftyp", 4, "video (MP4/MOV) file"),
    (b"%PDF", 0, "PDF document"),
    (b"PK\x03\x04", 0, "ZIP archive"),
    (b"\x1f\x8b", 0, "gzip archive"),
    (b"ply", 0, "PLY mesh"),
    (b"glTF", 0, "GLB mesh"),
    (b"solid", 0, "STL mesh"),
    (b"OFF", 0, "OFF mesh"),
)


class ImageLoadError(ValueError):
    """An image cannot be used; the message says which file and why."""


def _err(name: str, what: str) -> ImageLoadError:
    return ImageLoadError(f"Cannot load image '{name}': {what}")


def _fmt_pixels(n: int) -> str:
    return f"{n / 1e6:.1f} megapixels" if n >= 100_000 else f"{n:,} pixels"


def load_image(
    source: ImageSource,
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_side: int | None = None,
    formats: Sequence[str] = SUPPORTED_FORMATS,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
    name: str | None = None,
) -> Image.Image:
    """Decode one image file (or its bytes) into an RGB image, within fixed bounds.

    Args:
        source: A path, or the encoded bytes (``bytes``, ``bytearray``, ``memoryview``).
        max_bytes: Cap on the encoded size, checked before decoding.
        max_pixels: Cap on width x height as the header states it, checked before decoding.
        max_side: If given (>= 1), a larger image is downscaled so that its longest side is
            ``max_side`` pixels (aspect ratio kept, each side at least 1).
        formats: PIL format names to accept (see :data:`SUPPORTED_FORMATS`).
        background: RGB colour (0-255 each) that transparency is composited over.
        name: Name shown in messages (default: the path's base name, or ``"upload"`` for
            bytes). Never used as a path.

    Returns:
        A loaded ``PIL.Image.Image`` in mode ``"RGB"``, size (width, height) with
        ``width * height <= max_pixels``; ``info`` as described in the module docstring.

    Raises:
        ImageLoadError: for any input that cannot be used and for invalid arguments. No other
            exception type escapes (out-of-memory included); ``KeyboardInterrupt`` propagates.
    """
    shown = _display_name(source, name)
    try:
        return _load_image(source, shown, max_bytes=max_bytes, max_pixels=max_pixels, max_side=max_side,
                           formats=formats, background=background)
    except ImageLoadError:
        raise
    except MemoryError:
        raise _err(shown, "ran out of memory while decoding it (the image is too large for this machine)") from None
    except RecursionError:
        raise _err(shown, "its structure is nested too deeply to read (corrupt or hostile file)") from None
    except Exception as exc:  # a decoder failed in a way no check caught: the file is malformed
        detail = " ".join(str(exc).split())[:200]
        raise _err(shown, f"the file is corrupt or truncated ({type(exc).__name__}: {detail})") from exc


def _display_name(source: object, name: str | None) -> str:
    if name is not None:
        base = os.path.basename(str(name).replace("\\", "/"))
        return "".join(c for c in base if c.isprintable())[:80] or "upload"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "upload"
    try:
        return os.path.basename(os.fspath(source)) or str(source)  # type: ignore[arg-type]
    except Exception:
        return repr(source)[:80]


def _check_args(max_bytes: object, max_pixels: object, max_side: object, formats: object,
                background: object) -> tuple[str, ...]:
    def positive_int(value: object) -> bool:
        return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= 1

    if not positive_int(max_bytes):
        raise ImageLoadError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    if not positive_int(max_pixels):
        raise ImageLoadError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if max_side is not None and not positive_int(max_side):
        raise ImageLoadError(f"max_side must be a positive integer or None, got {max_side!r}")
    if isinstance(formats, str) or not isinstance(formats, Sequence) or not formats:
        raise ImageLoadError(f"formats must be a non-empty sequence of PIL format names, got {formats!r}")
    Image.init()
    fmts = tuple(str(f).upper() for f in formats)
    if formats is SUPPORTED_FORMATS:  # the default: whichever of them this Pillow build reads (WebP is optional)
        fmts = tuple(f for f in fmts if f in Image.OPEN)
    unknown = [f for f in fmts if f not in Image.OPEN]
    if unknown:
        raise ImageLoadError(f"unknown image formats {unknown}; PIL reads {sorted(Image.OPEN)}")
    if (not isinstance(background, (tuple, list)) or len(background) != 3
            or not all(not isinstance(c, bool) and isinstance(c, (int, np.integer)) and 0 <= c <= 255
                       for c in background)):
        raise ImageLoadError(f"background must be 3 integers in [0, 255], got {background!r}")
    return fmts


def _read_bytes(source: ImageSource, name: str, max_bytes: int) -> bytes:
    """The encoded bytes, refused (unread) when over ``max_bytes``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        n = memoryview(source).nbytes
        if n > max_bytes:
            raise _err(name, f"it is {fmt_bytes(n)}, above the {fmt_bytes(max_bytes)} limit")
        data = bytes(source)
    else:
        try:
            path = os.fspath(source)
        except TypeError:
            raise ImageLoadError(f"source must be a path or bytes, got {type(source).__name__}") from None
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise _err(name, "the file does not exist") from None
        except PermissionError:
            raise _err(name, "permission denied") from None
        except (OSError, ValueError) as e:  # e.g. a name with NUL, a too-long path
            raise _err(name, f"the file cannot be accessed ({type(e).__name__})") from None
        if stat.S_ISDIR(st.st_mode):
            raise _err(name, "it is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise _err(name, "it is not a regular file")
        if st.st_size > max_bytes:
            raise _err(name, f"it is {fmt_bytes(st.st_size)}, above the {fmt_bytes(max_bytes)} limit")
        try:
            with open(path, "rb") as f:
                data = f.read(max_bytes + 1)
        except PermissionError:
            raise _err(name, "permission denied") from None
        except OSError as e:
            raise _err(name, f"the file cannot be read ({type(e).__name__})") from None
        if len(data) > max_bytes:  # it grew after the stat
            raise _err(name, f"it is larger than the {fmt_bytes(max_bytes)} limit")
    if not data:
        raise _err(name, "the file is empty")
    return data


def _what_is(data: bytes) -> str | None:
    for magic, offset, kind in _MAGIC:
        if data[offset:offset + len(magic)] == magic:
            return kind
    head = data[:512].lstrip()
    if head[:1] in (b"<",) and (b"<svg" in head.lower() or b"<?xml" in head.lower()):
        return "SVG/XML document"
    if head[:1] in (b"{", b"[") or head[:2] in (b"v ", b"# ", b"o ", b"mt"):
        try:
            head.decode("utf-8")
            return "text file"
        except UnicodeDecodeError:
            return None
    try:
        data[:4096].decode("utf-8")
        return "text file"
    except UnicodeDecodeError:
        return None


def _unrecognised(data: bytes, fmts: tuple[str, ...]) -> str:
    accepted = ", ".join(fmts)
    kind = _what_is(data)
    if kind is None:
        return f"it is not an image in an accepted format ({accepted})"
    if kind.endswith("image") and kind.split()[0].upper() in fmts:
        # the magic says so but the decoder refused the header: damaged
        return f"it looks like a {kind}, but its header is damaged"
    return f"it is a {kind}, not an image in an accepted format ({accepted})"


def _load_image(source: ImageSource, name: str, *, max_bytes: int, max_pixels: int, max_side: int | None,
                formats: Sequence[str], background: tuple[int, int, int]) -> Image.Image:
    fmts = _check_args(max_bytes, max_pixels, max_side, formats, background)
    max_bytes, max_pixels = int(max_bytes), int(max_pixels)
    data = _read_bytes(source, name, max_bytes)

    try:
        im = Image.open(io.BytesIO(data), formats=list(fmts))
    except UnidentifiedImageError:
        raise _err(name, _unrecognised(data, fmts)) from None
    except Image.DecompressionBombError as e:  # PIL's own global guard, above ours
        m = re.search(r"\((\d+) pixels\)", str(e))
        size = _fmt_pixels(int(m.group(1))) if m else "far too many pixels"
        raise _err(name, f"its header claims {size}; the limit is {_fmt_pixels(max_pixels)} "
                         "(decompression-bomb guard)") from None
    with im:
        fmt, mode = im.format or "?", im.mode
        w, h = im.size
        if w < 1 or h < 1:
            raise _err(name, f"its header says it is {w} x {h} pixels")
        if w * h > max_pixels:
            raise _err(name, f"it is {w} x {h} pixels ({_fmt_pixels(w * h)}); the limit is {_fmt_pixels(max_pixels)}")
        animated = False
        try:
            animated = bool(getattr(im, "is_animated", False))
        except Exception:  # a broken later frame: only the first one is used anyway
            animated = True
        if animated:
            im.seek(0)
        if max_side is not None and fmt == "JPEG" and max(w, h) > max_side:
            im.draft(im.mode, (max_side, max_side))  # DCT scaling: decode at 1/2, 1/4 or 1/8
        im.load()
        transposed = _orientation(im) not in (None, 1)
        try:
            out = ImageOps.exif_transpose(im)
        except Exception:  # unreadable EXIF: keep the pixels as stored
            out, transposed = im.copy(), False
        rgb = _to_rgb_or_rgba(out, name)
    if max_side is not None and max(rgb.size) > max_side:
        s = max_side / max(rgb.size)
        size = (max(1, round(rgb.width * s)), max(1, round(rgb.height * s)))
        rgb = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if rgb.mode == "RGBA":
        base = Image.new("RGBA", rgb.size, tuple(int(c) for c in background) + (255,))
        rgb = Image.alpha_composite(base, rgb).convert("RGB")
    rgb.info = {"format": fmt, "source_mode": mode, "source_size": (w, h), "animated": animated,
                "exif_transposed": transposed}
    return rgb


def _orientation(im: Image.Image) -> int | None:
    try:
        return im.getexif().get(0x0112)
    except Exception:
        return None


def _to_rgb_or_rgba(im: Image.Image, name: str) -> Image.Image:
    """RGB, or RGBA when the image has any transparency (composited later, after resizing)."""
    mode = im.mode
    if mode in _INT16_MODES:
        a = np.asarray(im).astype(np.int64)
        a = np.clip(a, 0, 65535)
        grey = ((a * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        finite_max = float(a.max()) if a.size else 0.0
        if finite_max <= 1.0:
            a = a * 255.0
        grey = np.clip(np.round(a), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode in _ALPHA_MODES or "transparency" in im.info:
        try:
            return im.convert("RGBA")
        except ValueError:
            pass  # a transparency key PIL cannot apply: ignore it
    try:
        return im.convert("RGB")
    except ValueError:
        raise _err(name, f"its colour mode {mode} cannot be converted to RGB") from None
