"""The fixed image operations: pure functions from a BGR uint8 array to a new array.

No I/O and no settings here; arguments arrive validated by the tool schemas, and whatever a
schema cannot express (sizes against the image, pixel limits) raises ToolInputError saying
what to change. Inputs may be read-only cached arrays: nothing here writes into its input.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from toolfabric_server.common.errors import ToolInputError
from toolfabric_server.tools.vision.boxes import PixelBox

# Fill colours by name (BGR), for rotate's new corners and for drawing.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (0, 0, 255), "green": (0, 200, 0), "blue": (255, 0, 0), "yellow": (0, 255, 255),
    "cyan": (255, 255, 0), "magenta": (255, 0, 255), "orange": (0, 165, 255), "purple": (128, 0, 128),
    "white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128),
}
# Non-local-means costs about a second per megapixel on one core: beyond this, ask for a crop.
NLMEANS_MAX_PIXELS = 4_000_000


def colour(value: str) -> tuple[int, int, int]:
    """A colour name or '#rrggbb' → BGR."""
    key = value.strip().lower()
    if key in COLOURS:
        return COLOURS[key]
    if key.startswith("#") and len(key) == 7:
        try:
            r, g, b = (int(key[i : i + 2], 16) for i in (1, 3, 5))
        except ValueError:
            pass
        else:
            return (b, g, r)
    raise ToolInputError(f"unknown colour {value!r}; use #rrggbb or one of {', '.join(COLOURS)}")


def _check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    if width < 1 or height < 1:
        raise ToolInputError(f"{what} would be {width}x{height} pixels, which is empty")
    if width * height > max_pixels:
        raise ToolInputError(
            f"{what} would be {width}x{height} = {width * height} pixels, over the limit of {max_pixels}"
        )


def crop(img: np.ndarray, box: PixelBox) -> np.ndarray:
    return np.ascontiguousarray(img[box.y1 : box.y2, box.x1 : box.x2])


def zoom_factor(box: PixelBox, target_side: int, max_zoom: float, factor: float | None = None) -> float:
    """Upscale so the crop's longer side reaches `target_side`, never beyond `max_zoom`, never down."""
    if factor is not None:
        return min(max(factor, 1.0), max_zoom)
    return min(max(target_side / max(box.width, box.height), 1.0), max_zoom)


def zoom(img: np.ndarray, box: PixelBox, factor: float, max_pixels: int) -> np.ndarray:
    return enlarge(img[box.y1 : box.y2, box.x1 : box.x2], factor, max_pixels)


def enlarge(region: np.ndarray, factor: float, max_pixels: int) -> np.ndarray:
    """The region (already cut out) upscaled by `factor`, bicubic."""
    height, width = region.shape[:2]
    new_w, new_h = round(width * factor), round(height * factor)
    if (new_w, new_h) == (width, height):
        return np.ascontiguousarray(region)
    _check_pixels(new_w, new_h, max_pixels, "the zoomed image")
    return cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_CUBIC)


def resize(img: np.ndarray, width: int | None, height: int | None, scale: float | None,
           max_pixels: int) -> np.ndarray:
    """To a width and/or height (the other keeps the aspect ratio), or by a scale factor."""
    h, w = img.shape[:2]
    if scale is not None:
        new_w, new_h = round(w * scale), round(h * scale)
    elif width is not None and height is not None:
        new_w, new_h = width, height
    elif width is not None:
        new_w, new_h = width, round(h * width / w)
    elif height is not None:
        new_w, new_h = round(w * height / h), height
    else:
        raise ToolInputError("resize needs width, height or scale")
    _check_pixels(new_w, new_h, max_pixels, "the resized image")
    if (new_w, new_h) == (w, h):
        return img.copy()
    # Area averaging is the alias-free way down; bicubic is the sharp way up.
    shrinking = new_w * new_h < w * h
    return cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def rotate(img: np.ndarray, angle: float, expand: bool, fill: tuple[int, int, int], max_pixels: int) -> np.ndarray:
    """Counter-clockwise by `angle` degrees; with `expand` the canvas grows to keep every pixel."""
    turns = angle % 360
    if turns == 0:
        return img.copy()
    exact = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}
    if turns in exact and (expand or turns == 180 or img.shape[0] == img.shape[1]):
        return cv2.rotate(img, exact[int(turns)])  # lossless, no resampling
    h, w = img.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), turns, 1.0)
    out_w, out_h = w, h
    if expand:
        cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
        out_w, out_h = math.ceil(h * sin + w * cos - 1e-6), math.ceil(h * cos + w * sin - 1e-6)
        matrix[0, 2] += out_w / 2 - w / 2
        matrix[1, 2] += out_h / 2 - h / 2
    _check_pixels(out_w, out_h, max_pixels, "the rotated image")
    return cv2.warpAffine(img, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def flip(img: np.ndarray, direction: str) -> np.ndarray:
    codes = {"horizontal": 1, "vertical": 0, "both": -1}
    return cv2.flip(img, codes[direction])


def adjust(img: np.ndarray, brightness: float, contrast: float, gamma: float) -> np.ndarray:
    """out = ((x - 128) * contrast + 128 + brightness), then gamma; one lookup table, so O(pixels)."""
    x = np.arange(256, dtype=np.float64)
    y = np.clip((x - 128.0) * contrast + 128.0 + brightness, 0, 255)
    y = 255.0 * (y / 255.0) ** (1.0 / gamma)
    lut = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    return cv2.LUT(img, lut)


def equalize(img: np.ndarray, method: str, clip_limit: float, tile_grid: int) -> np.ndarray:
    """Histogram equalisation of lightness only (colours keep their hue)."""
    lab = cv2.cvtColor(img, cv2.COLOR_BGR2LAB)
    lightness = lab[:, :, 0]
    if method == "clahe":
        lightness = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile_grid, tile_grid)).apply(lightness)
    else:
        lightness = cv2.equalizeHist(lightness)
    lab[:, :, 0] = lightness
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)


def sharpen(img: np.ndarray, amount: float, radius: float) -> np.ndarray:
    """Unsharp mask: add back `amount` times the detail a Gaussian blur of `radius` removes."""
    blurred = cv2.GaussianBlur(img, (0, 0), radius)
    return cv2.addWeighted(img, 1.0 + amount, blurred, -amount, 0)


def denoise(img: np.ndarray, method: str, strength: float) -> np.ndarray:
    if method == "nlmeans":
        h, w = img.shape[:2]
        if h * w > NLMEANS_MAX_PIXELS:
            raise ToolInputError(
                f"nlmeans denoising is limited to {NLMEANS_MAX_PIXELS // 1_000_000} MP and this image is "
                f"{w}x{h}; crop or resize it first, or use method 'bilateral'"
            )
        return cv2.fastNlMeansDenoisingColored(img, None, strength, strength, 7, 21)
    if method == "bilateral":
        return cv2.bilateralFilter(img, 9, strength * 5, 9)
    ksize = max(3, round(strength / 5) * 2 + 1)
    if method == "median":
        return cv2.medianBlur(img, min(ksize, 15))
    return cv2.GaussianBlur(img, (ksize, ksize), 0)


def grayscale(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def threshold(img: np.ndarray, method: str, value: int, invert: bool, block_size: int, offset: float) -> np.ndarray:
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    kind = cv2.THRESH_BINARY_INV if invert else cv2.THRESH_BINARY
    if method == "adaptive":
        block = block_size if block_size % 2 else block_size + 1
        return cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, kind, block, offset)
    if method == "otsu":
        return cv2.threshold(gray, 0, 255, kind | cv2.THRESH_OTSU)[1]
    return cv2.threshold(gray, value, 255, kind)[1]


def edges(img: np.ndarray, method: str, low: float | None, high: float | None) -> np.ndarray:
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if method == "sobel":
        gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
        return cv2.convertScaleAbs(cv2.magnitude(gx, gy))
    blurred = cv2.GaussianBlur(gray, (3, 3), 0)
    if high is None:
        # Otsu's split of the intensities adapts Canny to the image's contrast.
        otsu = float(cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)[0])
        high = otsu if otsu >= 10 else 100.0
    if low is None:
        low = high / 2
    return cv2.Canny(blurred, low, max(high, low))
