"""Region decoding of JPEGs gives exactly the pixels of a full decode, for any box and JPEG layout."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.vision.conftest import MAX_PIXELS
from toolfabric_server.common import images, jpegcrop
from toolfabric_server.common.errors import InvalidImage

pytestmark = pytest.mark.skipif(not jpegcrop.available(), reason="libturbojpeg is not installed")

# Chroma subsampling (Pillow's codes: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0), progressive, restart markers, gray.
LAYOUTS = {
    "420": {"subsampling": 2},
    "422": {"subsampling": 1},
    "444": {"subsampling": 0},
    "progressive": {"subsampling": 2, "progressive": True},
    "restart markers": {"subsampling": 2, "restart_marker_blocks": 4},
    "gray": {"mode": "L"},
}


@cache
def photo(layout: str) -> bytes:
    """A noisy 301x203 picture (sizes off the MCU grid), so every block and edge differs."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (203, 301, 3), dtype=np.uint8)
    rgb[40:120, 60:200] = (250, 20, 30)  # a sharp colour edge, where chroma upsampling shows
    options = dict(LAYOUTS[layout])
    img = Image.fromarray(rgb).convert(options.pop("mode", "RGB"))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **options)
    return buf.getvalue()


@st.composite
def boxes(draw: st.DrawFn) -> tuple[int, int, int, int]:
    x1, y1 = draw(st.integers(0, 300)), draw(st.integers(0, 202))
    return x1, y1, draw(st.integers(x1 + 1, 301)), draw(st.integers(y1 + 1, 203))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(LAYOUTS)), boxes())
def test_region_decode_equals_the_full_decode_sliced(layout: str, box: tuple[int, int, int, int]) -> None:
    data = photo(layout)
    x1, y1, x2, y2 = box
    region = images.decode_region_bgr(data, box, MAX_PIXELS)
    assert np.array_equal(region, images.decode_bgr(data, MAX_PIXELS)[y1:y2, x1:x2])
    assert np.array_equal(region, jpegcrop.region_bgr(data, *box))  # the region path itself, not a fallback


def test_region_of_a_truncated_jpeg_is_an_invalid_image() -> None:
    data = photo("420")
    with pytest.raises(InvalidImage, match="truncated"):
        images.decode_region_bgr(data[: len(data) // 2], (0, 0, 10, 10), MAX_PIXELS)


def test_region_outside_the_image_is_refused() -> None:
    with pytest.raises(ValueError, match="not inside the 301x203 image"):
        images.decode_region_bgr(photo("420"), (0, 0, 302, 10), MAX_PIXELS)


def test_damaged_jpeg_region_has_the_pixels_of_the_full_decode() -> None:
    # Found by fuzzing: a JPEG with corrupt entropy data that decoders still decode; the lossless
    # transform resynchronised differently, so damaged files now take the full decode.
    data = (Path(__file__).resolve().parents[1] / "fuzz" / "crashes" / "images"
            / "crash-09299a35dd681fdf2990d3b48ab3becfaba70f2e").read_bytes()
    region = images.decode_region_bgr(data, (11, 5, 16, 8), MAX_PIXELS)
    assert np.array_equal(region, images.decode_bgr(data, MAX_PIXELS)[5:8, 11:16])
    with pytest.raises(UserWarning, match="Corrupt JPEG data"):
        jpegcrop.region_bgr(data, 11, 5, 16, 8)
