"""Decoding untrusted image bytes: every bad input is a clear InvalidImage, every layout is BGR 8-bit."""

from __future__ import annotations

import io
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.vision.conftest import MAX_PIXELS, jpeg, png, scene
from toolfabric_server.common import images
from toolfabric_server.common.errors import InvalidImage


def _pil_bytes(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_empty_bytes_are_rejected() -> None:
    with pytest.raises(InvalidImage, match="empty"):
        images.decode_bgr(b"", MAX_PIXELS)


def test_non_image_bytes_say_what_was_received() -> None:
    with pytest.raises(InvalidImage, match=r"not a recognised image.*%PDF"):
        images.inspect(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n", MAX_PIXELS)
    with pytest.raises(InvalidImage, match="not a recognised image"):
        images.decode_bgr(b"<html><body>hello</body></html>", MAX_PIXELS)


def test_recognised_but_unaccepted_type_names_the_type() -> None:
    ppm = _pil_bytes(Image.new("RGB", (8, 8)), "PPM")
    with pytest.raises(InvalidImage, match="unsupported image type PPM"):
        images.inspect(ppm, MAX_PIXELS)


def test_corrupt_png_body_is_rejected() -> None:
    data = bytearray(png(scene(64, 48)))
    data[60:200] = b"\x00" * 140  # clobber the IDAT stream, keep the header
    with pytest.raises(InvalidImage, match="corrupt or truncated"):
        images.decode_bgr(bytes(data), MAX_PIXELS)


def test_truncated_png_is_rejected() -> None:
    data = png(scene())
    with pytest.raises(InvalidImage, match="corrupt or truncated"):
        images.decode_bgr(data[: len(data) // 2], MAX_PIXELS)


def test_truncated_jpeg_is_rejected_not_padded_with_grey() -> None:
    data = jpeg(scene())
    with pytest.raises(InvalidImage, match="truncated"):
        images.decode_bgr(data[: len(data) // 2], MAX_PIXELS)


def test_decompression_bomb_is_rejected_from_its_header_before_decoding() -> None:
    # 8000x8000 black pixels compress to a few tens of KB but would decode to 192 MB.
    raw = b"".join(b"\x00" + b"\x00" * 8000 for _ in range(8000))
    ihdr = (8000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    assert len(bomb) < 200_000
    started = time.perf_counter()
    with pytest.raises(InvalidImage, match=r"64000000 pixels, over the limit of 40000000 \(checked before decoding"):
        images.decode_bgr(bomb, MAX_PIXELS)
    assert time.perf_counter() - started < 0.5  # only the header was read


def test_sixteen_bit_grayscale_is_scaled_to_eight_bits() -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (4, 1))
    data = _pil_bytes(Image.fromarray(ramp), "PNG")  # Pillow picks I;16
    assert images.inspect(data, MAX_PIXELS).mode.startswith("I")
    bgr = images.decode_bgr(data, MAX_PIXELS)
    assert bgr.dtype == np.uint8 and bgr.shape == (4, 256, 3)
    assert bgr[0, 0].tolist() == [0, 0, 0] and bgr[0, -1].tolist() == [255, 255, 255]
    assert abs(int(bgr[0, 128, 0]) - 128) <= 1


def test_alpha_is_composited_on_white() -> None:
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[:, :5] = (255, 0, 0, 255)  # opaque red
    rgba[:, 5:] = (0, 255, 0, 0)  # fully transparent green
    bgr = images.decode_bgr(_pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"), MAX_PIXELS)
    assert bgr[0, 0].tolist() == [0, 0, 255]
    assert bgr[0, 9].tolist() == [255, 255, 255]


def test_palette_transparency_is_composited_on_white() -> None:
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.info["transparency"] = 1
    bgr = images.decode_bgr(_pil_bytes(img, "PNG", transparency=1), MAX_PIXELS)
    assert bgr[0, 0].tolist() == [255, 255, 255]


def test_cmyk_jpeg_decodes_to_its_colours() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    info = images.inspect(_pil_bytes(cmyk, "JPEG", quality=95), MAX_PIXELS)
    assert info.mode == "CMYK"
    b, g, r = images.decode_bgr(_pil_bytes(cmyk, "JPEG", quality=95), MAX_PIXELS)[8, 8].tolist()
    assert r > 200 and g < 60 and b < 60


def test_grayscale_becomes_three_equal_channels() -> None:
    gray = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (8, 1))
    for data in (_pil_bytes(Image.fromarray(gray, "L"), "PNG"), _pil_bytes(Image.fromarray(gray, "L"), "JPEG")):
        bgr = images.decode_bgr(data, MAX_PIXELS)
        assert bgr.shape == (8, 16, 3)
        assert np.array_equal(bgr[:, :, 0], bgr[:, :, 1]) and np.array_equal(bgr[:, :, 1], bgr[:, :, 2])


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_and_reported_in_the_size(orientation: int) -> None:
    stored = np.full((300, 400, 3), 255, np.uint8)
    stored[:60, :60] = (0, 0, 255)  # red marker at the stored top-left
    data = jpeg(stored, 95, exif_orientation=orientation)
    info = images.inspect(data, MAX_PIXELS)
    bgr = images.decode_bgr(data, MAX_PIXELS)
    assert (info.width, info.height) == (bgr.shape[1], bgr.shape[0])
    assert bgr.shape[:2] == ((400, 300) if orientation in (6, 8) else (300, 400))
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    assert np.abs(bgr.astype(int) - np.asarray(expected)[:, :, ::-1].astype(int)).mean() < 2


def test_png_exif_orientation_is_applied() -> None:
    pil = Image.fromarray(np.zeros((30, 40, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    bgr = images.decode_bgr(_pil_bytes(pil, "PNG", exif=exif.tobytes()), MAX_PIXELS)
    assert bgr.shape == (40, 30, 3)


def test_opencv_fast_path_matches_pillow_decoding() -> None:
    bgr = scene()
    data = jpeg(bgr)
    fast = images.decode_bgr(data, MAX_PIXELS)
    via_pil = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[:, :, ::-1]
    assert fast.shape == via_pil.shape
    assert np.abs(fast.astype(int) - via_pil.astype(int)).mean() < 1.5


def test_plain_png_passes_plain_pngs_through_and_converts_the_rest() -> None:
    plain = png(scene(64, 48))
    assert images.plain_png(plain, MAX_PIXELS) is plain
    rotated = jpeg(scene(64, 48), exif_orientation=6)
    converted = images.plain_png(rotated, MAX_PIXELS)
    assert images.inspect(converted, MAX_PIXELS).format == "PNG"
    # What a reader (cv2.imread in the sandbox) sees is exactly what decode_bgr returns.
    assert np.array_equal(cv2.imdecode(np.frombuffer(converted, np.uint8), cv2.IMREAD_COLOR),
                          images.decode_bgr(rotated, MAX_PIXELS))


FUZZ_CRASHES = Path(__file__).resolve().parents[1] / "fuzz" / "crashes" / "images"


def test_tiff_with_a_rational_where_an_integer_belongs_is_an_invalid_image() -> None:
    # Found by fuzzing: StripOffsets typed RATIONAL made Pillow raise TypeError inside decode_bgr,
    # which the gateway answered as UNKNOWN instead of INVALID_ARGUMENT.
    data = (FUZZ_CRASHES / "crash-03a6ea338fb73d32a3c2a0eda93928d85371351c").read_bytes()
    with pytest.raises(InvalidImage, match=r"image data is corrupt or truncated \(TypeError: 'IFDRational'"):
        images.decode_bgr(data, MAX_PIXELS)


def test_tiff_exif_orientation_is_reported_in_the_size_it_decodes_to() -> None:
    # Found by fuzzing: Pillow reports a rotated TIFF's size as displayed, so inspect turned it twice.
    pil = Image.fromarray(cv2.cvtColor(scene(64, 48), cv2.COLOR_BGR2RGB))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _pil_bytes(pil, "TIFF", exif=exif)
    info = images.inspect(data, MAX_PIXELS)
    bgr = images.decode_bgr(data, MAX_PIXELS)
    assert (info.width, info.height) == (48, 64) == (bgr.shape[1], bgr.shape[0])
    assert np.array_equal(bgr, images.decode_bgr(_pil_bytes(pil, "PNG", exif=exif.tobytes()), MAX_PIXELS))


@pytest.mark.parametrize("channels", [3, 4])
def test_fast_png_encoding_is_lossless_standard_png(channels: int) -> None:
    rng = np.random.default_rng(5)
    arr = rng.integers(0, 256, (37, 53, channels), dtype=np.uint8)  # noise: nothing to hide errors in
    data = images.encode_png(arr, fast=True)
    assert images.inspect(data, MAX_PIXELS).format == "PNG"
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), arr)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)))[:, :, :3], arr[:, :, 2::-1])  # another reader


def test_fast_png_encoding_keeps_gray_images_gray() -> None:
    gray = np.arange(48 * 64, dtype=np.uint32).reshape(48, 64).astype(np.uint8)
    data = images.encode_png(gray, fast=True)
    assert images.inspect(data, MAX_PIXELS).mode == "L"
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), gray)


def test_fast_png_encoding_of_a_side_over_65535_pixels_stays_correct() -> None:
    # Found by fuzzing: fpng wrote a 65540-pixel width as 4; such images go through zlib.
    wide = np.random.default_rng(6).integers(0, 256, (2, 65_540, 3), dtype=np.uint8)
    data = images.encode_png(wide, fast=True)
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), wide)
