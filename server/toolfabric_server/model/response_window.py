"""How often a streaming model on Triton sends a response: a step's first piece at once, then at most one per window.

An engine produces a token (the baseline a word) every few milliseconds; a gRPC response per token cost the gateway a
read and an event-loop wake-up each (~320 per demo trajectory, issue 24), while the gateway merges the text of
`TOOLFABRIC_GATEWAY_TEXT_WINDOW_MS` into one event anyway (model/coalesce.py). So the model side holds its output back
for the same window and sends it as one response: the text concatenated, the token ids and logprobs in order, the
token count summed. The last response goes at once (and carries what was held), a cancelled request is answered as
before. Set per model by the config parameter `response_window_ms` (default 20, the gateway's default; 0 = a
response per token). Plain Python: imported inside Triton's python stub, by the baseline and the engines alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

DEFAULT_MS = 20.0
PARAMETER = "response_window_ms"


def window_s(model_config: dict[str, Any]) -> float:
    """The window of a model's Triton config (`parameters { key: "response_window_ms" … }`), in seconds."""
    raw = model_config.get("parameters", {}).get(PARAMETER, {}).get("string_value", "")
    ms = float(raw) if raw not in ("", None) else DEFAULT_MS
    if ms < 0:
        raise ValueError(f"{PARAMETER} must be ≥ 0, not {ms}")
    return ms / 1000


class ResponseWindow:
    """Says when the next response of one request may go: the first at once, then once a window has passed."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        self._last: float | None = None

    def due(self) -> bool:
        """Whether a response may go now; when it says yes, the caller sends and the next window starts."""
        if self._window_s <= 0:
            return True
        now = self._clock()
        if self._last is not None and now - self._last < self._window_s:
            return False
        self._last = now
        return True
