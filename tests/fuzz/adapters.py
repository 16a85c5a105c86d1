"""The one seam between the fuzz targets and the model-output parser they exercise.

When the parser moves (a `Dialect` per model family), this function is the only line to change.
"""

from __future__ import annotations

from toolfabric_server.model.dialect import ParsedStep, parse_step


def parse_model_output(text: str) -> ParsedStep:
    """One model step parsed by the dialect the fabric serves by default."""
    return parse_step(text)
