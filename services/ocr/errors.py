"""Errors of the ocr service (see services.common.errors for the hierarchy)::

    ToolInputError ── UnsupportedLanguage   a language pack that is not installed
"""

from __future__ import annotations

from services.common.errors import ToolInputError


class UnsupportedLanguage(ToolInputError):
    kind = "invalid_argument"
