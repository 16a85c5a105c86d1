"""Server-sent events as the WHATWG spec reads them: the `data` of each event, for OpenAI-style streams."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator


async def event_data(lines: AsyncIterable[str]) -> AsyncIterator[str]:
    """The data of each event in a stream of lines (line ends removed): `data:` lines joined by newlines, dispatched
    on a blank line; comments (`:` …) and the other fields are skipped. An event the stream cut off before its blank
    line is not dispatched (the spec's rule), so a truncated stream cannot pass off half an event as whole."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
