"""Errors of the ocr service (see toolfabric_server.common.errors for the hierarchy)::

    ToolInputError ── UnsupportedLanguage   a language pack that is not installed
"""

from __future__ import annotations

from toolfabric_server.common.errors import ToolInputError


class UnsupportedLanguage(ToolInputError):
    kind = "invalid_argument"
