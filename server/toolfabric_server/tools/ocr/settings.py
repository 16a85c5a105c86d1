"""Settings of the ocr service (TOOLFABRIC_OCR_*).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from toolfabric_server.common.settings import config


class OcrSettings(BaseSettings):
    """The `ocr` plugin service (tools/ocr): Tesseract reading text in the trajectory's images."""

    model_config = config("TOOLFABRIC_OCR_")

    # Tesseract language packs a call may ask for (Debian: tesseract-ocr-<lang>); the first is the default.
    languages: list[str] = Field(default_factory=lambda: ["eng"], min_length=1)
    # Page segmentation: 11 = sparse text (signs, labels, captions in photos), 3 = automatic page layout.
    page_segmentation: int = Field(default=11, ge=0, le=13)
    # Words Tesseract is less sure of than this (0-100) are dropped.
    min_confidence: float = Field(default=40.0, ge=0, le=100)
    # Images with a shorter longer side are upscaled to it first (Tesseract reads ~30 px text best).
    min_side: int = Field(default=1600, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)
    # Text returned to the model is cut to this many characters.
    max_output_chars: int = Field(default=4000, ge=100)
    # Readings are cached by image content and options this long (0 = no cache).
    cache_ttl_s: int = Field(default=24 * 3600, ge=0)
