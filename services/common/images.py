"""Decoding images safely: type allowlist, pixel limit before decoding, every colour layout.

Used by the gateway to validate client images and by the workers to load blobs. Pillow reads
only the header to report the size, so the pixel limit is enforced before any pixel buffer is
allocated (decompression bombs). Everything is normalised to 8-bit BGR for OpenCV, with EXIF
orientation applied, alpha composited on white, CMYK/16-bit/palette/grayscale converted.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from services.common.errors import InvalidImage

# Pillow format name → MIME type, for the types the fabric accepts.
ACCEPTED = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}


@dataclass(frozen=True)
class ImageInfo:
    format: str
    mime_type: str
    width: int
    height: int
    mode: str


def inspect(data: bytes, max_pixels: int) -> ImageInfo:
    """Header-only check: is this an accepted image type within the pixel limit?"""
    if not data:
        raise InvalidImage("image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InvalidImage(
            f"not a recognised image ({len(data)} bytes, starts with {data[:8]!r}); "
            f"accepted types: {', '.join(sorted(ACCEPTED.values()))}"
        ) from None
    except Image.DecompressionBombError as exc:
        raise InvalidImage(f"image rejected as a decompression bomb: {exc}") from None
    fmt = img.format or ""
    if fmt not in ACCEPTED:
        raise InvalidImage(f"unsupported image type {fmt or 'unknown'}; accepted: {', '.join(sorted(ACCEPTED))}")
    width, height = img.size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"image has an empty size {width}x{height}")
    if width * height > max_pixels:
        raise InvalidImage(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels} "
            "(checked before decoding)"
        )
    return ImageInfo(fmt, ACCEPTED[fmt], width, height, img.mode)


def decode_bgr(data: bytes, max_pixels: int) -> np.ndarray:
    """Fully decode to an 8-bit, 3-channel BGR array (raises InvalidImage if corrupt)."""
    inspect(data, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            img.load()
            img = ImageOps.exif_transpose(img) or img
            rgb = _to_rgb8(img)
    except InvalidImage:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"image data is corrupt or truncated: {exc}") from None
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _to_rgb8(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        gray = scaled.clip(0, 255).astype(np.uint8)
        return np.stack([gray, gray, gray], axis=-1)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def encode_png(bgr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise InvalidImage("could not encode image as PNG")
    return buf.tobytes()
