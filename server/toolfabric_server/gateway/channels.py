"""Labelling streamed model text as thinking, answer or other, as it arrives.

Tags may be split across chunks (`<thi` + `nk>`). The tracker keeps only the channel in effect and
the last few characters seen (a tag is at most `_longest` characters, so a tag split across chunks
starts within that window): each chunk costs time in its own length, the whole stream is linear.
Text is emitted as soon as it arrives; a tag's own characters carry the channel outside it.
"""

from __future__ import annotations

import re
from functools import cache

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.model.dialects import DEFAULT_DIALECT, Dialect


@cache
def _tags(think: str, answer: str) -> tuple[re.Pattern[str], dict[str, pb.Channel], int]:
    """The dialect's channel tags: their pattern, the channel each opens, the longest tag's length."""
    channels = {think: pb.CHANNEL_THINK, answer: pb.CHANNEL_ANSWER}
    return re.compile(f"</?({re.escape(think)}|{re.escape(answer)})>"), channels, len(f"</{max(channels, key=len)}>")


class ChannelTracker:
    def __init__(self, dialect: Dialect = DEFAULT_DIALECT) -> None:
        self._tag, self._channels, self._longest = _tags(dialect.think_tag, dialect.answer_tag)
        self._channel: pb.Channel = pb.CHANNEL_UNSPECIFIED  # after every tag completed so far
        self._window = ""  # the last characters seen, where a split tag may have begun

    def feed(self, chunk: str) -> list[tuple[pb.Channel, str]]:
        """(channel, text) segments of `chunk`, in order."""
        text, start = self._window + chunk, len(self._window)
        segments: list[tuple[pb.Channel, str]] = []
        channel, pos = self._channel, start
        for match in self._tag.finditer(text):
            if match.end() <= start:  # completed in an earlier chunk: already applied
                continue
            closing = match.group(0).startswith("</")
            boundary = max(match.start() if closing else match.end(), start)
            if boundary > pos:
                segments.append((channel, text[pos:boundary]))
                pos = boundary
            channel = pb.CHANNEL_UNSPECIFIED if closing else self._channels[match.group(1)]
        if pos < len(text):
            segments.append((channel, text[pos:]))
        self._channel, self._window = channel, text[-(self._longest - 1):]
        return [s for s in segments if s[1]]
