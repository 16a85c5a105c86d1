"""Decoding images safely: type allowlist, pixel limit before decoding, every colour layout.

Used by the gateway to validate client images and by the workers to load blobs. Pillow reads
only the header to report the size, so the pixel limit is enforced before any pixel buffer is
allocated (decompression bombs). Everything is normalised to 8-bit BGR for OpenCV, with EXIF
orientation applied, alpha composited on white, CMYK/16-bit/palette/grayscale converted.

Plain 8-bit JPEG/PNG/WebP/BMP — nearly every photo — is decoded by OpenCV straight into BGR,
about 1.5x faster than Pillow plus a colour conversion; everything else goes through Pillow.
A JPEG without its end marker is truncated: OpenCV would pad it with grey, so it goes to
Pillow, which says so. `decode_region_bgr` decodes only a box of a JPEG (jpegcrop.py), for crops.

Whatever a decoder raises on hostile bytes becomes InvalidImage in one place, `_decoder`.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from toolfabric_server.common import jpegcrop
from toolfabric_server.common.errors import InvalidImage
from toolfabric_server.common.settings import CommonSettings

log = logging.getLogger(__name__)

# TOOLFABRIC_MAX_IMAGE_PIXELS_PER_BYTE's default; a process passes the value it read at start.
PIXELS_PER_BYTE: int = CommonSettings.model_fields["max_image_pixels_per_byte"].default

# Pillow format name → MIME type, for the types the fabric accepts.
ACCEPTED = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
_EXIF_ORIENTATION = 0x0112
# Orientations 5 to 8 turn the image a quarter: its displayed width is the stored height.
_QUARTER_TURNS = {5, 6, 7, 8}
_OPENCV_FORMATS = {"JPEG", "PNG", "WEBP", "BMP"}
_OPENCV_MODES = {"RGB", "L"}
# Images up to this size are never refused for their pixels per byte (icons, strips, blank thumbnails).
_DENSITY_FLOOR = 4_000_000


@dataclass(frozen=True)
class ImageInfo:
    format: str
    mime_type: str
    # As displayed, i.e. after the EXIF orientation is applied (what decode_bgr returns).
    width: int
    height: int
    mode: str
    orientation: int = 1
    has_alpha: bool = False


@contextmanager
def _decoder(problem: str) -> Iterator[None]:
    """The one place where a third-party decoder's failure on untrusted bytes becomes InvalidImage.

    Pillow and OpenCV raise whatever their parsers trip over on hostile input (TypeError from a
    TIFF rational where an integer belongs, struct.error, IndexError, cv2.error, …): all of it
    means the bytes are not an image we can use, never a fault of the caller.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except InvalidImage:
        raise
    except Image.DecompressionBombError as exc:
        raise InvalidImage(f"image rejected as a decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:  # what Pillow documents for bad data
        raise InvalidImage(f"{problem}: {exc}") from None
    except Exception as exc:
        raise InvalidImage(f"{problem} ({type(exc).__name__}: {exc})") from None


def _open(data: bytes) -> Image.Image:
    if not data:
        raise InvalidImage("image is empty (0 bytes)")
    try:
        with _decoder("image header is corrupt"):
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InvalidImage(
            f"not a recognised image ({len(data)} bytes, starts with {data[:8]!r}); "
            f"accepted types: {', '.join(sorted(ACCEPTED.values()))}"
        ) from None


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block must not reject an otherwise good image
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _oriented_by_pillow(img: Image.Image) -> bool:
    """Pillow (11+) reports a TIFF's size as displayed, orientation applied; other formats as stored."""
    tags = getattr(img, "tag_v2", None)
    return tags is not None and img.size != (tags.get(256), tags.get(257))


def inspect(data: bytes, max_pixels: int, max_pixels_per_byte: int = PIXELS_PER_BYTE) -> ImageInfo:
    """Header-only check: is this an accepted image type within the pixel limit, and does the file not
    declare far more pixels than its size could plausibly hold (`max_pixels_per_byte`)? Both are refused
    before a single pixel is decoded."""
    img = _open(data)
    with _decoder("image header is corrupt"):
        info = _info(img, max_pixels)
    density = max_pixels_per_byte
    pixels = info.width * info.height
    if pixels > _DENSITY_FLOOR and pixels > len(data) * density:
        raise InvalidImage(f"image declares {info.width}x{info.height} = {pixels} pixels in only {len(data)} bytes "
                           f"({pixels // len(data)} pixels per byte), over the limit of {density} "
                           "(TOOLFABRIC_MAX_IMAGE_PIXELS_PER_BYTE; checked before decoding)")
    return info


def _info(img: Image.Image, max_pixels: int) -> ImageInfo:
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
    orientation = _orientation(img)
    if orientation in _QUARTER_TURNS and not _oriented_by_pillow(img):
        width, height = height, width
    has_alpha = img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info
    return ImageInfo(fmt, ACCEPTED[fmt], width, height, img.mode, orientation, has_alpha)


def decode_bgr(data: bytes, max_pixels: int, max_pixels_per_byte: int = PIXELS_PER_BYTE) -> np.ndarray:
    """Fully decode to an 8-bit, 3-channel BGR array (raises InvalidImage if corrupt)."""
    info = inspect(data, max_pixels, max_pixels_per_byte)
    with _decoder("image data is corrupt or truncated"):
        if _opencv_decodes(info, data):
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if bgr is not None and bgr.shape[:2] == (info.height, info.width):
                return bgr
        opened = Image.open(io.BytesIO(data))
        opened.load()
        rgb = _to_rgb8(ImageOps.exif_transpose(opened) or opened)
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def decode_region_bgr(data: bytes, box: tuple[int, int, int, int], max_pixels: int,
                      max_pixels_per_byte: int = PIXELS_PER_BYTE) -> np.ndarray:
    """`decode_bgr(data)[y1:y2, x1:x2]`, decoding only that region when the image is a plain JPEG.

    `box` is (x1, y1, x2, y2) in displayed pixels, inside the image. For a crop of a photo this
    skips most of the decode (see jpegcrop.py); any other image is decoded in full and sliced.
    """
    info = inspect(data, max_pixels, max_pixels_per_byte)
    x1, y1, x2, y2 = box
    if not (0 <= x1 < x2 <= info.width and 0 <= y1 < y2 <= info.height):
        raise ValueError(f"box {box} is not inside the {info.width}x{info.height} image")
    if info.format == "JPEG" and info.orientation == 1 and _opencv_decodes(info, data) and jpegcrop.available():
        try:
            return jpegcrop.region_bgr(data, x1, y1, x2, y2)
        except Exception as exc:  # not transformable (odd sampling, corrupt): the full decode says what is wrong
            log.debug("JPEG region decode fell back to a full decode: %s", exc)
    return np.ascontiguousarray(decode_bgr(data, max_pixels, max_pixels_per_byte)[y1:y2, x1:x2])


def _opencv_decodes(info: ImageInfo, data: bytes) -> bool:
    """Would OpenCV decode this exactly as the Pillow path does (colours, orientation, errors)?"""
    if info.format not in _OPENCV_FORMATS or info.mode not in _OPENCV_MODES or info.has_alpha:
        return False
    if info.format == "JPEG":
        # OpenCV applies JPEG EXIF orientation itself; a missing end marker means truncated data.
        return data.rstrip(b"\0\r\n ")[-2:] == b"\xff\xd9"
    return info.orientation == 1


def _to_rgb8(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        gray = scaled.clip(0, 255).astype(np.uint8)
        return np.stack([gray, gray, gray], axis=-1)
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode in ("P", "L", "RGB") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def encode_png(bgr: np.ndarray, compression: int = 1, fast: bool = False) -> bytes:
    """PNG bytes of a gray, BGR or BGRA array (zlib level 1, OpenCV's default, is the fast one).

    `fast` uses fpng for colour arrays instead: lossless standard PNG, 10-20x faster than zlib
    level 1 for files about 15% larger (bench/vision.py measures both); gray arrays keep zlib.
    """
    # fpng writes sides past 65535 wrapped around (found by fuzzing): zlib for those.
    colour = bgr.dtype == np.uint8 and bgr.ndim == 3 and bgr.shape[2] in (3, 4)
    if fast and colour and max(bgr.shape[:2]) <= _FPNG_MAX_SIDE and _fpng() is not None:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB if bgr.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
        return bytes(_fpng().from_ndarray(rgb))
    ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise InvalidImage("could not encode image as PNG")
    return buf.tobytes()


_FPNG_MAX_SIDE = 65535


@lru_cache(maxsize=1)
def _fpng() -> Any:
    try:
        import fpng

        return fpng
    except ImportError:  # an optional speed-up: zlib does the same job more slowly
        log.warning("fpng is not installed; PNG results are encoded with zlib")
        return None


def encode_jpeg(bgr: np.ndarray, quality: int = 92) -> bytes:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise InvalidImage("could not encode image as JPEG")
    return buf.tobytes()


def is_plain_png(info: ImageInfo) -> bool:
    """An 8-bit RGB/gray PNG without alpha or EXIF rotation: every reader decodes it like decode_bgr."""
    return info.format == "PNG" and info.mode in _OPENCV_MODES and not info.has_alpha and info.orientation == 1


def plain_png(data: bytes, max_pixels: int, compression: int = 1) -> bytes:
    """The image as a PNG that any reader decodes to what decode_bgr returns (plain PNGs as they are)."""
    if is_plain_png(inspect(data, max_pixels)):
        return data
    return encode_png(decode_bgr(data, max_pixels), compression)
