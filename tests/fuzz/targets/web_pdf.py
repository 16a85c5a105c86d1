"""Web reading: PDF bytes through pypdf into text with [page N] markers, then passage selection.

Promises checked: only UndecodableContent comes out (pypdf's own errors never escape); the text is
bounded (pages capped at MAX_PDF_PAGES, memory by the engine's RSS limit); the selected passages
fit the token budget. Hangs are caught by the engine's per-input timeout (the fetch total timeout).
"""

from __future__ import annotations

import logging

import pypdf  # noqa: F401  (extract_pdf imports it lazily; importing it here gets it instrumented)

from toolfabric_server.web.errors import UndecodableContent
from toolfabric_server.web.extract import extract_pdf
from toolfabric_server.web.passages import CHARS_PER_TOKEN, select

INSTRUMENT = ("toolfabric_server.web.extract", "pypdf")
BUDGET_TOKENS = 200
logging.getLogger("pypdf").setLevel(logging.CRITICAL)  # it logs every repair it attempts


def fuzz_one(data: bytes) -> None:
    try:
        page = extract_pdf(data, "https://example.org/doc.pdf")
    except UndecodableContent:
        return
    assert isinstance(page.title, str) and isinstance(page.content, str)
    chosen = select(page.content, "astronaut mission", BUDGET_TOKENS)
    assert len(chosen.content) <= BUDGET_TOKENS * CHARS_PER_TOKEN + 2
