"""Web reading: a response's headers and body through decompression, sniffing, charset decoding,
HTML/text extraction and passage selection — what web_visit does after the fetch.

Input: `Content-Type` line, `Content-Encoding` line, then the body. Promises checked: only the
fetch service's documented errors (BodyTooLarge, UndecodableContent, UnsupportedContentType) come
out; decompressed output never exceeds the body limit; extracted text stays proportional to the
body (memory is bounded); the selected passages fit the token budget. Hangs are caught by the
engine's per-input timeout, set to the fetch service's total timeout.
"""

from __future__ import annotations

import readability  # noqa: F401  (extract imports it lazily; importing it here gets it instrumented)

from toolfabric_server.web.decoding import (
    HTML_TYPES,
    PDF_TYPES,
    TEXT_TYPES,
    BoundedDecoder,
    is_vague,
    media_type,
    sniff,
)
from toolfabric_server.web.errors import BodyTooLarge, UndecodableContent, UnsupportedContentType
from toolfabric_server.web.extract import extract
from toolfabric_server.web.passages import CHARS_PER_TOKEN, select

INSTRUMENT = ("toolfabric_server.web", "charset_normalizer", "trafilatura", "readability", "justext", "courlan",
              "htmldate")
MAX_BODY = 256 * 1024
BUDGET_TOKENS = 200
QUERY = "who commanded the first space shuttle mission astronaut"
CHUNK = 4096  # bodies arrive in pieces, as they do from the network


def fuzz_one(data: bytes) -> None:
    content_type, _, rest = data.partition(b"\n")
    encoding, _, raw = rest.partition(b"\n")
    try:
        mtype, charset = media_type(content_type.decode("latin-1"))
        decoder = BoundedDecoder(encoding.decode("latin-1"), MAX_BODY)
        body = b"".join(decoder.feed(raw[i : i + CHUNK]) for i in range(0, len(raw), CHUNK))
        assert len(body) <= MAX_BODY
        if is_vague(mtype):
            mtype = sniff(body)
        if mtype in PDF_TYPES or mtype not in HTML_TYPES | TEXT_TYPES:
            return  # PDFs have their own target; other types are refused before extraction
        page = extract("https://example.org/a/page.html", mtype, body, charset)
    except (BodyTooLarge, UndecodableContent, UnsupportedContentType):
        return
    assert isinstance(page.title, str) and len(page.title) <= 300
    assert len(page.content) <= 8 * len(body) + 4096, f"{len(page.content)} characters from {len(body)} bytes"
    assert len(page.images) <= 30
    chosen = select(page.content, QUERY, BUDGET_TOKENS)
    assert len(chosen.content) <= BUDGET_TOKENS * CHARS_PER_TOKEN + 2, f"{len(chosen.content)} characters selected"
    page.to_json()
