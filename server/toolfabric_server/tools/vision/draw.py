"""Marking findings on an image: boxes, points and lines, each with an optional label.

Line widths and text sizes scale with the image so marks stay visible on a 4000-pixel photo and
do not swamp a 300-pixel crop. Labels sit on a filled tag in the mark's colour, above the mark
(or inside it at the top edge). OpenCV's fonts are ASCII: other characters are drawn as '?'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from toolfabric_server.common.errors import ToolInputError
from toolfabric_server.tools.vision.boxes import Coords, to_pixel_point, to_pixels

_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class Mark:
    kind: str  # "box" | "point" | "line"
    xy: Sequence[float]
    colour: tuple[int, int, int]
    label: str = ""


def _ascii(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:80]


def _text_colour(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    b, g, r = bg
    return (0, 0, 0) if 0.114 * b + 0.587 * g + 0.299 * r > 140 else (255, 255, 255)


def draw(img: np.ndarray, marks: Sequence[Mark], coords: Coords, thickness: int | None = None) -> np.ndarray:
    h, w = img.shape[:2]
    out = img.copy()
    line = thickness or max(1, round(max(w, h) / 400))
    scale = max(0.4, max(w, h) / 1600)
    text_line = max(1, round(scale * 1.5))
    for i, mark in enumerate(marks, 1):
        if mark.kind == "point":
            if len(mark.xy) != 2:
                raise ToolInputError(f"mark {i}: a point is [x, y], got {len(mark.xy)} numbers")
            x, y = to_pixel_point(mark.xy[0], mark.xy[1], coords, w, h)
            centre = (round(x), round(y))
            cv2.circle(out, centre, max(3, line * 3), mark.colour, -1, cv2.LINE_AA)
            cv2.circle(out, centre, max(3, line * 3), _text_colour(mark.colour), max(1, line // 2), cv2.LINE_AA)
            anchor = (centre[0] + line * 4, centre[1] - line * 4)
        elif mark.kind in ("box", "line"):
            if len(mark.xy) != 4:
                raise ToolInputError(f"mark {i}: a {mark.kind} is [x1, y1, x2, y2], got {len(mark.xy)} numbers")
            if mark.kind == "box":
                x1, y1, x2, y2 = to_pixels(mark.xy, coords, w, h)
                cv2.rectangle(out, (round(x1), round(y1)), (round(x2), round(y2)), mark.colour, line, cv2.LINE_AA)
                anchor = (round(x1), round(y1))
            else:
                x1, y1 = to_pixel_point(mark.xy[0], mark.xy[1], coords, w, h)
                x2, y2 = to_pixel_point(mark.xy[2], mark.xy[3], coords, w, h)
                cv2.line(out, (round(x1), round(y1)), (round(x2), round(y2)), mark.colour, line, cv2.LINE_AA)
                anchor = (round(min(x1, x2)), round(min(y1, y2)))
        else:
            raise ToolInputError(f"mark {i}: unknown kind {mark.kind!r}; use box, point or line")
        if mark.label:
            _label(out, _ascii(mark.label), anchor, mark.colour, scale, text_line)
    return out


def _label(img: np.ndarray, text: str, anchor: tuple[int, int], bg: tuple[int, int, int], scale: float,
           weight: int) -> None:
    h, w = img.shape[:2]
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, weight)
    pad = max(2, weight * 2)
    x = min(max(anchor[0], 0), max(w - tw - 2 * pad, 0))
    top = anchor[1] - th - base - 2 * pad
    if top < 0:  # no room above: put the tag just inside the mark
        top = max(anchor[1], 0)
    top = min(top, max(h - th - base - 2 * pad, 0))
    cv2.rectangle(img, (x, top), (x + tw + 2 * pad, top + th + base + 2 * pad), bg, -1)
    cv2.putText(img, text, (x + pad, top + pad + th), _FONT, scale, _text_colour(bg), weight, cv2.LINE_AA)
