"""How the step API reads an action: with the dialect of the model that wrote it.

The one place the step API touches model dialects, so a per-model registry replaces one call here.
"""

from __future__ import annotations

from services.model.dialect import ParsedStep, parse_step


def parse_action(model: str, text: str) -> ParsedStep:
    """`text` (one step of `model`'s output) as calls, an answer, a plan, or problems."""
    del model  # one dialect (R1V4/Qwen3-VL) today; the per-model registry will choose by name
    return parse_step(text)
