"""Decoding only a region of a JPEG: a lossless crop in the compressed domain, then a small decode.

A crop or zoom needs a small part of a photo, yet a full decode of a 12 MP JPEG costs several
times the crop's encoding. libjpeg-turbo's lossless transform (TurboJPEG `tjTransform`, as
jpegtran does) cuts the region out of the compressed data — entropy decoding only, no inverse
DCT, no colour conversion for the rest — and only that region is decoded. Its origin must sit on
the MCU grid; one MCU of margin on every side gives the chroma upsampling the same neighbours as
in the full image, so the pixels equal the full decode's exactly (tests/vision/test_jpegcrop.py
checks it as a property). Where libturbojpeg is missing, `available()` is False and callers
decode in full.
"""

from __future__ import annotations

import logging
import warnings
from functools import lru_cache
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _turbo() -> Any:
    try:
        from turbojpeg import TurboJPEG

        return TurboJPEG()
    except (ImportError, OSError, RuntimeError) as exc:  # no libturbojpeg on this machine
        log.warning("JPEG region decoding is off (%s); crops decode the whole image", exc)
        return None


def available() -> bool:
    return _turbo() is not None


def region_bgr(data: bytes, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """The BGR pixels of [x1, x2) x [y1, y2) of a baseline or progressive JPEG, as a full decode has them.

    The box must lie inside the image. Raises whatever libturbojpeg raises (or warns) on data it
    cannot transform cleanly; the caller then decodes in full, which handles damaged data as always.
    """
    from turbojpeg import TJPF_BGR, tjMCUHeight, tjMCUWidth

    turbo = _turbo()
    with warnings.catch_warnings():
        # libjpeg-turbo warns about corrupt data it decodes anyway; a decoder resynchronises after
        # such damage differently from the transform (found by fuzzing), so only clean data takes this path.
        warnings.simplefilter("error")
        width, height, subsampling, _ = turbo.decode_header(data)
        if not 0 <= subsampling < len(tjMCUWidth):
            raise ValueError(f"unsupported chroma subsampling {subsampling}")
        mcu_w, mcu_h = tjMCUWidth[subsampling], tjMCUHeight[subsampling]
        left = max(0, x1 - mcu_w) // mcu_w * mcu_w
        top = max(0, y1 - mcu_h) // mcu_h * mcu_h
        right, bottom = min(width, x2 + mcu_w), min(height, y2 + mcu_h)
        # preserve=True keeps an MCU-aligned origin as it is and lets the region reach the image edge
        # (without it the wrapper trims the partial MCUs at the right and bottom edges away).
        cut = turbo.crop(data, left, top, right - left, bottom - top, preserve=True)
        pixels = turbo.decode(cut, pixel_format=TJPF_BGR)
    if pixels.shape[:2] != (bottom - top, right - left):
        raise ValueError(f"the transform cut {pixels.shape[1]}x{pixels.shape[0]}, not {right - left}x{bottom - top}")
    return np.ascontiguousarray(pixels[y1 - top : y2 - top, x1 - left : x2 - left])
