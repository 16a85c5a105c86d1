"""A trajectory's events in R1V4's tag form, as OpenAI chat-completion chunks or one completion.

The content is what R1V4's hosted API streams, one round at a time (gateway/http/rounds.py): the model's
thinking as it is generated (`<think>…</think>`, one per round), each tool call as
`<tool_call>{json}</tool_call>` followed by `<observation>{json}</observation>` with the JSON the tool
returned, and `<think>…</think><answer>…</answer>` last. toolfabric's own fields
(trajectory id, trace id, outcome, detailed usage) ride under the `toolfabric` key, which strict
OpenAI clients ignore.
"""

from __future__ import annotations

import time
from typing import Any

from google.protobuf.json_format import MessageToDict

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1.names import status_name
from toolfabric_server.gateway.http.rounds import RoundWriter, observation_json

__all__ = ["Transcript", "observation_json", "usage_json"]

# How the trajectory ended → OpenAI's finish_reason.
_FINISH = {pb.STATUS_COMPLETED: "stop", pb.STATUS_BUDGET_EXHAUSTED: "length", pb.STATUS_CANCELLED: "stop",
           pb.STATUS_FAILED: "stop"}


def usage_json(usage: pb.Usage) -> dict[str, Any]:
    """OpenAI's usage object; `token_unit` says what the counts are ("words" for the baseline policy)."""
    return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens, "token_unit": usage.token_unit or "tokens"}


class Transcript:
    """Follows one trajectory's events; builds chunks as they come, or the whole completion at the end."""

    def __init__(self, model: str, conversation_id: str = "") -> None:
        self.model, self.created, self.conversation_id = model, int(time.time()), conversation_id
        self.trajectory_id = self.trace_id = ""
        self.status: pb.Status = pb.STATUS_RUNNING
        self.reason = self.answer = ""
        self.usage = pb.Usage()
        self.error: pb.Error | None = None
        self.parts: list[str] = []
        self.rounds = RoundWriter()

    @property
    def id(self) -> str:
        return f"chatcmpl-{self.trajectory_id}"

    def feed(self, event: pb.RunEvent) -> str:
        """Takes an event in; returns the content it adds."""
        self.trajectory_id = event.trajectory_id
        kind = event.WhichOneof("event")
        if kind == "started":
            self.trace_id = event.started.trace_id
        elif kind == "answer":
            self.answer = event.answer.text
        elif kind == "usage":
            self.usage = event.usage
        elif kind == "error" and event.error.fatal:
            self.error = event.error
        elif kind == "finished":
            self.status, self.reason = event.finished.status, event.finished.reason
        piece = self.rounds.feed(event)
        if piece:
            self.parts.append(piece)
        return piece

    def extension(self, *, final: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"trajectory_id": self.trajectory_id, "trace_id": self.trace_id,
                               "conversation_id": self.conversation_id}
        if final:
            out |= {"status": status_name(self.status), "reason": self.reason,
                    "answer": self.answer,
                    "usage": MessageToDict(self.usage, preserving_proto_field_name=True)}
        return out

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None, *,
              extension: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                               "model": self.model,
                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
        if extension is not None:
            out["toolfabric"] = extension
        return out

    def final_chunk(self) -> dict[str, Any]:
        return self.chunk({}, _FINISH.get(self.status, "stop"), extension=self.extension(final=True))

    def usage_chunk(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": usage_json(self.usage)}

    def completion(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(self.parts)},
                             "finish_reason": _FINISH.get(self.status, "stop")}],
                "usage": usage_json(self.usage), "toolfabric": self.extension(final=True)}
