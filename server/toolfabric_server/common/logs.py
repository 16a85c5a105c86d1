"""What may reach a log line: never a secret, a key or a credential-bearing URL; tool results by size.

`install()` puts two filters on every handler of the root logger (and is called again by the
workers once Celery has set up its own): `Redact` rewrites each record's final text, masking
userinfo in URLs (``https://user:pass@host`` → ``https://***@host``), credential query parameters
(``sig``, ``token``, ``key``, ``password`` …), ``Bearer`` values and toolfabric API keys;
`ResultsBySize` turns Celery's "Task … succeeded: <the whole result>" into the result's kind and size.
Filters sit on handlers, not loggers, so records of every library pass through them.
"""

from __future__ import annotations

import logging
import re
from typing import Any

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"]+@")
_QUERY = re.compile(r"(?P<name>[?&](?:sig|signature|token|access_token|api_key|apikey|key|password|passwd|secret|"
                    r"auth|x-amz-signature|x-goog-signature)=)[^&\s'\"#]+", re.IGNORECASE)
_BEARER = re.compile(r"(?P<name>\bBearer\s+)[^\s'\",]+", re.IGNORECASE)
_API_KEY = re.compile(r"\btfk_[A-Za-z0-9]+_[A-Za-z0-9_-]+")
MASK = "***"


def redact(text: str) -> str:
    text = _USERINFO.sub(lambda m: m["scheme"] + MASK + "@", text)
    text = _QUERY.sub(lambda m: m["name"] + MASK, text)
    text = _BEARER.sub(lambda m: m["name"] + MASK, text)
    return _API_KEY.sub("tfk_" + MASK, text)


def describe(value: Any) -> str:
    """A tool result as its kind and size, never its content."""
    if isinstance(value, dict):
        kind = value.get("type") or value.get("kind") or "object"
        return f"{kind} result, {len(repr(value))} chars, keys {sorted(map(str, value))[:8]}"
    if isinstance(value, (list, tuple)):
        return f"list of {len(value)}, {len(repr(value))} chars"
    return f"{type(value).__name__}, {len(repr(value))} chars"


class ResultsBySize(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, dict) and "return_value" in args:
            record.args = {**args, "return_value": describe(args["return_value"])}
            if isinstance(getattr(record, "data", None), dict):
                record.data = record.args  # Celery also hands its context as `extra`
        return True


class Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return True
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install(level: str | int | None = None, logger: logging.Logger | None = None, **basic: Any) -> None:
    """Logging for a toolfabric process: `basicConfig(level, **basic)` when given, and the filters on every
    handler of `logger` (the root logger by default; idempotent)."""
    if level is not None:
        logging.basicConfig(level=level, **basic)
        # basicConfig does nothing once the root logger has a handler (the CLI sets one up first): the
        # level asked for (TOOLFABRIC_LOG_LEVEL) is set either way.
        logging.getLogger().setLevel(level.upper() if isinstance(level, str) else level)
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, ResultsBySize) for f in handler.filters):
            handler.addFilter(ResultsBySize())  # first: it replaces the result before the text is made
            handler.addFilter(Redact())
