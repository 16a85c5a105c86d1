"""One dialect per model family (chat template, output parser, stop strings), chosen per model by settings.

To add a family: write a module here with a class satisfying `Dialect` and list it in `registry.DIALECTS`.
"""

from toolfabric_server.model.dialects.base import Answer, Dialect, ParsedStep, RawCall
from toolfabric_server.model.dialects.registry import DEFAULT_DIALECT, DIALECTS, dialect_for, dialect_named

__all__ = ["DEFAULT_DIALECT", "DIALECTS", "Answer", "Dialect", "ParsedStep", "RawCall", "dialect_for", "dialect_named"]
