"""Labelling streamed model text as thinking, answer or other, as it arrives.

Tags may be split across chunks (`<thi` + `nk>`), so the tracker keeps the whole step's text and
labels each new chunk by the innermost tag open at each of its characters.
"""

from __future__ import annotations

import re

from toolfabric.v1 import fabric_pb2 as pb

_TAG = re.compile(r"</?(think|answer)>")


class ChannelTracker:
    def __init__(self) -> None:
        self._text = ""

    def feed(self, chunk: str) -> list[tuple[pb.Channel, str]]:
        """(channel, text) segments of `chunk`, in order."""
        start = len(self._text)
        self._text += chunk
        segments: list[tuple[pb.Channel, str]] = []
        channel, pos = self._channel_at(start), start
        # Tags are matched in a window that may begin before this chunk (a tag split across chunks).
        for match in _TAG.finditer(self._text, max(0, start - 8)):
            if match.end() <= start:
                continue
            boundary = match.end() if not match.group(0).startswith("</") else match.start()
            boundary = max(boundary, start)
            if boundary > pos:
                segments.append((channel, self._text[pos:boundary]))
                pos = boundary
            channel = pb.CHANNEL_UNSPECIFIED if match.group(0).startswith("</") else _CHANNELS[match.group(1)]
        if pos < len(self._text):
            segments.append((channel, self._text[pos:]))
        return [s for s in segments if s[1]]

    def _channel_at(self, index: int) -> pb.Channel:
        channel = pb.CHANNEL_UNSPECIFIED
        for match in _TAG.finditer(self._text, 0, index):
            channel = pb.CHANNEL_UNSPECIFIED if match.group(0).startswith("</") else _CHANNELS[match.group(1)]
        return channel


_CHANNELS: dict[str, pb.Channel] = {"think": pb.CHANNEL_THINK, "answer": pb.CHANNEL_ANSWER}
