"""How the step API reads an action: with the dialect of the model that wrote it."""

from __future__ import annotations

from services.model import settings as model_config
from services.model.dialects import ParsedStep, dialect_for


def parse_action(model: str, text: str) -> ParsedStep:
    """`text` (one step of `model`'s output) as calls, an answer, a plan, or problems."""
    model_settings = model_config.model()
    return dialect_for(model, model_settings.dialects, model_settings.default_dialect).parse(text)
