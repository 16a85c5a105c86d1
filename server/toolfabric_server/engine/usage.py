"""What a trajectory used: tokens, steps, tool calls per tool, time per phase, the tools' own counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from toolfabric.v1 import fabric_pb2 as pb


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    token_unit: str = ""  # as the model's engine reports it ("words" for the baseline)
    image_tokens: int = 0
    steps: int = 0
    tool_calls: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=lambda: {"model": 0.0, "tools": 0.0})
    counters: dict[str, float] = field(default_factory=dict)

    def proto(self, total_s: float) -> pb.Usage:
        return pb.Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens, steps=self.steps,
                        tool_calls=self.tool_calls, phase_seconds={**self.phases, "total": total_s},
                        counters=self.counters, token_unit=self.token_unit or "tokens",
                        image_tokens=self.image_tokens)
