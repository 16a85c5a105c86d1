"""R1V4's reading of a full response, written from its documented format (r1v4/README.md, parse_utils):
every `<think>`, `<tool_call>`, `<observation>` and `<answer>` found in order; round i is the i-th think,
the i-th tool call and the i-th observation (JSON, or the raw text when it is not JSON); a think past the
last call is the final round's, with the first answer. Written here, not copied, to check the stream."""

from __future__ import annotations

import json
import re
from typing import Any

_TAGS = {tag: re.compile(rf"<{tag}>(.*?)</{tag}>", re.DOTALL) for tag in ("think", "tool_call", "observation",
                                                                         "answer")}


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw.strip())
    except ValueError:
        return raw.strip()


def read_rounds(full: str) -> dict[str, Any]:
    found = {tag: pattern.findall(full) for tag, pattern in _TAGS.items()}
    thinks, calls, observations = found["think"], found["tool_call"], found["observation"]
    rounds = [{"round_num": i + 1, "think": thinks[i].strip() if i < len(thinks) else "",
               "tool_call": _json_or_text(call),
               "observation": _json_or_text(observations[i]) if i < len(observations) else None}
              for i, call in enumerate(calls)]
    final_think = thinks[-1].strip() if len(thinks) > len(calls) else ""
    answer = found["answer"][0].strip() if found["answer"] else ""
    return {"rounds": rounds, "final_round": {"think": final_think, "answer": answer}}
