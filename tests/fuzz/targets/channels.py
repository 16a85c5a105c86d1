"""Streamed model text: the channel tracker labelling chunks as thinking / answer / other.

The input is the step's text; its first bytes also choose where the stream is cut into chunks,
so tags split across chunks (`<thi` + `nk>`) are explored. Promises checked: feeding never
raises; the segments of each chunk put together are exactly the chunk; every character outside a
tag gets the same channel however the text was chunked (as if it had come in one piece).
"""

from __future__ import annotations

import re

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.gateway.channels import ChannelTracker

INSTRUMENT = ("toolfabric_server.gateway.channels",)
_TAG = re.compile(r"</?(think|answer)>")
_CHANNELS = {"think": pb.CHANNEL_THINK, "answer": pb.CHANNEL_ANSWER}


def chunks(text: str, data: bytes) -> list[str]:
    sizes = [1 + b % 17 for b in data[:24]] or [len(text) or 1]
    out, pos, i = [], 0, 0
    while pos < len(text):
        out.append(text[pos : pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
        i += 1
    return out


def reference(text: str) -> tuple[list[int], set[int]]:
    """The channel of every character of the whole text, and the positions that belong to tags."""
    labels, in_tag = [pb.CHANNEL_UNSPECIFIED] * len(text), set()
    channel, pos = pb.CHANNEL_UNSPECIFIED, 0
    for match in _TAG.finditer(text):
        labels[pos : match.start()] = [channel] * (match.start() - pos)
        in_tag.update(range(match.start(), match.end()))
        channel = pb.CHANNEL_UNSPECIFIED if match.group(0).startswith("</") else _CHANNELS[match.group(1)]
        pos = match.start()
    labels[pos:] = [channel] * (len(text) - pos)
    return labels, in_tag


def fuzz_one(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    tracker, labels = ChannelTracker(), []
    for chunk in chunks(text, data):
        segments = tracker.feed(chunk)
        assert "".join(t for _, t in segments) == chunk, "segments do not add up to the chunk"
        for channel, piece in segments:
            labels += [channel] * len(piece)
    expected, in_tag = reference(text)
    wrong = [i for i in range(len(text)) if i not in in_tag and labels[i] != expected[i]]
    assert not wrong, f"characters {wrong[:5]} labelled {[labels[i] for i in wrong[:5]]}, expected " \
                      f"{[expected[i] for i in wrong[:5]]}"
