"""One coordinate contract inside the vision service, converters at the edge.

Inside: a `PixelBox` — integer pixel edges (x1, y1, x2, y2) of the image as displayed (EXIF
orientation applied), x to the right and y down from the top-left corner, x2/y2 exclusive, so
`array[y1:y2, x1:x2]` is the region and `x2 - x1` its width.

At the edge, boxes arrive in one of three conventions (`coords`):
- "pixel":      pixels of the image (DeepEyes' `bbox_2d`);
- "qwen1000":   0-1000 relative to width/height (Qwen2.5/3-VL grounding and `image_zoom_in_tool`);
- "normalized": 0-1 relative (Pixel-Reasoner).
Points use the same conventions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from toolfabric_server.tools.vision.errors import BadBox

Coords = Literal["pixel", "qwen1000", "normalized"]
_SCALE = {"pixel": None, "qwen1000": 1000.0, "normalized": 1.0}


@dataclass(frozen=True)
class PixelBox:
    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1

    def as_list(self) -> list[int]:
        return [self.x1, self.y1, self.x2, self.y2]


@dataclass(frozen=True)
class Fitted:
    """A box made usable: `box` is what is cut; `notes` say what was changed from the request."""

    box: PixelBox
    notes: tuple[str, ...] = ()


def to_pixel_point(x: float, y: float, coords: Coords, width: int, height: int) -> tuple[float, float]:
    """A point in the given convention → pixel coordinates (floats, not clamped)."""
    scale = _SCALE[coords]
    for v in (x, y):
        if not math.isfinite(v):
            raise BadBox(f"coordinates must be finite numbers, got {v}")
    if scale is None:
        return float(x), float(y)
    return x / scale * width, y / scale * height


def to_pixels(bbox: Sequence[float], coords: Coords, width: int, height: int) -> tuple[float, float, float, float]:
    """[x1, y1, x2, y2] in the given convention → float pixel edges (not clamped, not rounded)."""
    if len(bbox) != 4:
        raise BadBox(f"a box is [x1, y1, x2, y2], got {len(bbox)} numbers")
    x1, y1 = to_pixel_point(bbox[0], bbox[1], coords, width, height)
    x2, y2 = to_pixel_point(bbox[2], bbox[3], coords, width, height)
    if x2 < x1 or y2 < y1:
        raise BadBox(
            f"box {_fmt(bbox)} has its corners swapped: give [x1, y1, x2, y2] with x1 <= x2 (left, right) "
            "and y1 <= y2 (top, bottom)"
        )
    return x1, y1, x2, y2


def fit_box(bbox: Sequence[float], coords: Coords, width: int, height: int, *, min_side: int,
            max_aspect: float, image_name: str = "the image") -> Fitted:
    """A requested box as pixels inside the image: clamped, grown to `min_side`, aspect-checked.

    Raises BadBox if the box lies entirely outside the image or is too elongated to be useful.
    """
    x1, y1, x2, y2 = to_pixels(bbox, coords, width, height)
    unit = {"pixel": "pixels", "qwen1000": "0-1000 relative", "normalized": "0-1 relative"}[coords]
    if x1 >= width or y1 >= height or x2 <= 0 or y2 <= 0:
        raise BadBox(
            f"box {_fmt(bbox)} ({unit}) lies outside {image_name}, which is {width}x{height} pixels"
            + (f"; in {unit} the image spans {_span(coords)}" if coords != "pixel" else
               f"; pixel boxes must lie within [0, 0, {width}, {height}]")
        )
    notes: list[str] = []
    cx1, cy1 = max(0, math.floor(x1)), max(0, math.floor(y1))
    cx2, cy2 = min(width, math.ceil(x2)), min(height, math.ceil(y2))
    if (cx1, cy1, cx2, cy2) != (math.floor(x1), math.floor(y1), math.ceil(x2), math.ceil(y2)):
        notes.append(f"box clamped to the image ({width}x{height})")
    cx1, cx2, grew_x = _grow(cx1, cx2, min_side, width)
    cy1, cy2, grew_y = _grow(cy1, cy2, min_side, height)
    if grew_x or grew_y:
        notes.append(f"box grown to the minimum side of {min_side} pixels")
    box = PixelBox(cx1, cy1, cx2, cy2)
    long_side, short_side = max(box.width, box.height), min(box.width, box.height)
    if short_side == 0 or long_side / short_side > max_aspect:
        raise BadBox(
            f"box {_fmt(bbox)} selects a {box.width}x{box.height} pixel region: its aspect ratio "
            f"{long_side / max(short_side, 1):.0f}:1 is over the limit of {max_aspect:g}:1; "
            "give a box closer to the object's real shape"
        )
    return Fitted(box, tuple(notes))


def _grow(lo: int, hi: int, min_side: int, limit: int) -> tuple[int, int, bool]:
    """Widen [lo, hi) around its centre to `min_side` (or the whole axis), staying inside [0, limit)."""
    target = min(min_side, limit)
    if hi - lo >= target:
        return lo, hi, False
    centre = (lo + hi) / 2
    lo = round(centre - target / 2)
    lo = min(max(lo, 0), limit - target)
    return lo, lo + target, True


def _span(coords: Coords) -> str:
    top = 1000 if coords == "qwen1000" else 1
    return f"[0, 0, {top}, {top}]"


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"
