"""One dialect per model family (chat template, output parser, stop strings), chosen per model by settings.

To add a family: write a module here with a class satisfying `Dialect` and list it in `registry.DIALECTS`.
"""

from services.model.dialects.base import Dialect, ParsedStep, RawCall
from services.model.dialects.registry import DIALECTS, dialect_for, dialect_named

__all__ = ["DIALECTS", "Dialect", "ParsedStep", "RawCall", "dialect_for", "dialect_named"]
