"""Images: inspect → decode → encode, for every accepted type (PNG, JPEG, WebP, GIF, BMP, TIFF).

Promises checked: only `InvalidImage` comes out (never a decoder's own TypeError, struct.error,
cv2.error …); what decodes matches what `inspect` reported (size as displayed, after EXIF
orientation) and stays within the pixel limit; a region decode equals the full decode's pixels;
both PNG encoders (zlib, fpng) round-trip exactly, and `plain_png` decodes to the same pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from toolfabric_server.common import images
from toolfabric_server.common.errors import InvalidImage

INSTRUMENT = ("toolfabric_server.common.images", "toolfabric_server.common.jpegcrop", "PIL", "turbojpeg")
# Small enough that a fuzzed header asking for a huge canvas is refused before decoding.
MAX_PIXELS = 2_000_000
Image.init()  # import every format plugin now, inside the instrumented import (Pillow loads them lazily)


def fuzz_one(data: bytes) -> None:
    try:
        info = images.inspect(data, MAX_PIXELS)
        bgr = images.decode_bgr(data, MAX_PIXELS)
    except InvalidImage:
        return
    assert info.mime_type == images.ACCEPTED[info.format]
    assert bgr.dtype == np.uint8 and bgr.ndim == 3 and bgr.shape[2] == 3, (bgr.dtype, bgr.shape)
    assert bgr.shape[:2] == (info.height, info.width), f"inspect said {info.width}x{info.height}, decoded {bgr.shape}"
    assert bgr.shape[0] * bgr.shape[1] <= MAX_PIXELS
    for fast in (False, True):
        png = images.encode_png(bgr, fast=fast)
        assert np.array_equal(images.decode_bgr(png, MAX_PIXELS), bgr), f"PNG encoding (fast={fast}) is not lossless"
    h, w = bgr.shape[:2]
    x1, y1 = len(data) % w, (len(data) // 7) % h  # a box that moves as the input changes
    box = (x1, y1, x1 + 1 + (len(data) // 3) % (w - x1), y1 + 1 + (len(data) // 5) % (h - y1))
    assert np.array_equal(images.decode_region_bgr(data, box, MAX_PIXELS), bgr[box[1] : box[3], box[0] : box[2]]), \
        f"the region {box} differs from the full decode"
    assert np.array_equal(images.decode_bgr(images.plain_png(data, MAX_PIXELS), MAX_PIXELS), bgr), \
        "plain_png decodes to different pixels"
