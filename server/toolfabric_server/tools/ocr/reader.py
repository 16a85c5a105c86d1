"""Text lines in an image, with Tesseract (through pytesseract) — no Redis, no Celery."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import cv2
import numpy as np
import pytesseract

from toolfabric_server.common.errors import ToolTimeout, ToolUnavailable
from toolfabric_server.tools.ocr.errors import UnsupportedLanguage


@dataclass(frozen=True)
class Line:
    text: str
    confidence: float
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in the image's pixels

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@lru_cache(maxsize=1)
def installed_languages() -> frozenset[str]:
    try:
        return frozenset(pytesseract.get_languages(config=""))
    except pytesseract.TesseractNotFoundError as exc:
        raise ToolUnavailable("Tesseract is not installed on this worker (Debian: apt-get install "
                              "tesseract-ocr)") from exc


def check_languages(lang: str, allowed: list[str]) -> None:
    wanted = lang.split("+")
    missing = [w for w in wanted if w not in allowed or w not in installed_languages()]
    if missing:
        usable = sorted(set(allowed) & installed_languages())
        raise UnsupportedLanguage(f"language {'+'.join(missing)!r} is not available; use one of {usable}")


def read_lines(bgr: np.ndarray, lang: str, psm: int, min_confidence: float, min_side: int,
               timeout_s: float) -> list[Line]:
    """Lines of words Tesseract is at least `min_confidence` sure of, top to bottom."""
    scale = 1.0
    longer = max(bgr.shape[:2])
    if 0 < longer < min_side:
        scale = min(min_side / longer, 4.0)
        bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
    try:
        data = pytesseract.image_to_data(gray, lang=lang, config=f"--psm {psm}", timeout=timeout_s,
                                         output_type=pytesseract.Output.DICT)
    except pytesseract.TesseractNotFoundError as exc:
        raise ToolUnavailable("Tesseract is not installed on this worker") from exc
    except RuntimeError as exc:  # pytesseract's timeout
        if "timeout" in str(exc).lower():
            raise ToolTimeout(f"Tesseract took longer than {timeout_s:g}s (TOOLFABRIC_OCR_TIMEOUT_S)") from exc
        raise
    words: dict[tuple[int, int, int], list[tuple[str, float, int, int, int, int]]] = {}
    for i, text in enumerate(data["text"]):
        conf = float(data["conf"][i])
        if not text.strip() or conf < min_confidence:
            continue
        key = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
        words.setdefault(key, []).append((text.strip(), conf, data["left"][i], data["top"][i],
                                          data["width"][i], data["height"][i]))
    lines = []
    for group in words.values():
        x1 = min(w[2] for w in group)
        y1 = min(w[3] for w in group)
        x2 = max(w[2] + w[4] for w in group)
        y2 = max(w[3] + w[5] for w in group)
        box = (round(x1 / scale), round(y1 / scale), round(x2 / scale), round(y2 / scale))
        lines.append(Line(" ".join(w[0] for w in group), round(sum(w[1] for w in group) / len(group), 1), box))
    return sorted(lines, key=lambda line: (line.box[1], line.box[0]))
