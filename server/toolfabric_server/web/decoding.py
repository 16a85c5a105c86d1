"""Bytes → usable body: bounded decompression, content-type sniffing, charset detection.

Decompression is done here rather than by httpx so the output is bounded at every step:
zlib's `max_length` never produces more than the bytes still allowed, so a gzip bomb is cut
off after `max_bytes` of output with only that much memory used.
"""

from __future__ import annotations

import codecs
import re
import zlib

from charset_normalizer import from_bytes

from toolfabric_server.web.errors import BodyTooLarge, UndecodableContent

# What we advertise in Accept-Encoding: only codings decoded here with bounded output.
ACCEPT_ENCODING = "gzip, deflate"


class BoundedDecoder:
    """Decodes one Content-Encoding incrementally, raising BodyTooLarge past `max_bytes`."""

    def __init__(self, encoding: str, max_bytes: int) -> None:
        enc = encoding.strip().lower()
        if enc in ("", "identity"):
            self._zlib = None
        elif enc in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._zlib = zlib.decompressobj()  # zlib-wrapped; raw deflate is retried below
        else:
            raise UndecodableContent(f"server sent Content-Encoding {encoding!r}, which was not asked for")
        self._encoding = enc
        self._max = max_bytes
        self._out = 0
        self._started = False

    def feed(self, data: bytes) -> bytes:
        if self._zlib is None:
            return self._count(data)
        parts = []
        try:
            while data:
                chunk = self._zlib.decompress(data, self._max - self._out + 1)
                self._started = True
                parts.append(self._count(chunk))
                data = self._zlib.unconsumed_tail
                if not data and self._zlib.unused_data and self._encoding != "deflate":
                    data = self._zlib.unused_data  # next gzip member
                    self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        except zlib.error as exc:
            if self._encoding == "deflate" and not self._started:
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                self._started = True
                return self.feed(data)
            raise UndecodableContent(f"body is not valid {self._encoding} data: {exc}") from None
        return b"".join(parts)

    def _count(self, chunk: bytes) -> bytes:
        self._out += len(chunk)
        if self._out > self._max:
            raise BodyTooLarge(
                f"response body is larger than {self._max} bytes after decompression; cut off"
                if self._zlib is not None
                else f"response body is larger than {self._max} bytes; cut off"
            )
        return chunk


HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/x-markdown"})
PDF_TYPES = frozenset({"application/pdf", "application/x-pdf"})
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/tiff"})
PAGE_TYPES = HTML_TYPES | TEXT_TYPES | PDF_TYPES | IMAGE_TYPES
# Types a server may use for anything: sniffed before deciding.
_VAGUE = frozenset({"", "application/octet-stream", "binary/octet-stream"})


def media_type(content_type: str | None) -> tuple[str, str | None]:
    """`text/html; charset=ISO-8859-1` → ("text/html", "iso-8859-1")."""
    if not content_type:
        return "", None
    main, *params = content_type.split(";")
    charset = None
    for p in params:
        key, _, value = p.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip("'\"").lower() or None
    return main.strip().lower(), charset


def is_vague(mtype: str) -> bool:
    return mtype in _VAGUE


def sniff(body: bytes) -> str:
    """A media type from the first bytes, for responses without a useful Content-Type."""
    head = body[:512]
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    lowered = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in lowered:
        return "text/html"
    if looks_binary(body):
        return "application/octet-stream"
    return "text/plain"


_CONTROL = frozenset(range(0, 32)) - {9, 10, 12, 13, 27}


def looks_binary(body: bytes, sample: int = 8192) -> bool:
    """True for bytes no text encoding produces: NULs or many C0 control bytes."""
    head = body[:sample]
    if not head:
        return False
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    controls = sum(1 for b in head if b in _CONTROL)
    return b"\x00" in head or controls / len(head) > 0.02


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_:.-]+)""", re.IGNORECASE)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Labels servers put on UTF-8 pages by mistake (or by default): UTF-8 wins when the bytes are valid UTF-8.
_LEGACY_DEFAULTS = frozenset({"iso-8859-1", "latin-1", "latin1", "us-ascii", "ascii", "windows-1252", "cp1252"})


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    try:
        return codecs.lookup(label).name
    except (LookupError, ValueError):  # ValueError: a NUL inside the label
        return None


def decode_text(body: bytes, declared: str | None, html: bool) -> tuple[str, str]:
    """Decode a text body; returns (text, encoding used). Raises UndecodableContent for binary junk."""
    if looks_binary(body):
        raise UndecodableContent(
            "the body is binary data, not text (it contains NUL or control bytes) although the server "
            "called it text"
        )
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body.decode(name, errors="replace"), name
    candidates: list[str] = []
    header = _codec(declared)
    if header:
        candidates.append(header)
    if html:
        meta = _META_CHARSET.search(body[:4096])
        if meta:
            found = _codec(meta.group(1).decode("ascii", "ignore"))
            if found:
                candidates.append(found)
    if candidates and candidates[0] in {_codec(x) for x in _LEGACY_DEFAULTS} and _is_utf8(body):
        candidates.insert(0, "utf-8")
    candidates.append("utf-8")
    for name in dict.fromkeys(candidates):
        try:
            return body.decode(name), name
        except (UnicodeDecodeError, LookupError):
            continue
    guessed = detect(body)
    return body.decode(guessed, errors="replace"), guessed


def detect(body: bytes) -> str:
    """charset-normalizer's guess; among near-equal guesses windows-1252, the web's usual legacy charset
    (short Western European text is ambiguous between the Latin code pages)."""
    results = from_bytes(body[:200_000])
    best = results.best()
    if best is None:
        return "utf-8"
    close = [m.encoding for m in results if m.chaos <= best.chaos + 0.1]
    return "cp1252" if "cp1252" in close else best.encoding


def _is_utf8(body: bytes) -> bool:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not text.isascii()
