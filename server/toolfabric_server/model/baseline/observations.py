"""Reading the fabric's observation blocks back out of a rendered prompt (for scripted policies).

The blocks are read by the dialect that wrote them (model/dialects/observations.py), so the
baseline reads exactly what the prompt says; the baseline plays an R1V4 (qwen3vl) model.
"""

from __future__ import annotations

import json
import re
from typing import Any

from toolfabric_server.model.dialects import DIALECTS
from toolfabric_server.model.dialects.observations import ObservationBlock

DIALECT = DIALECTS["qwen3vl"]
_IMAGE_NAME = re.compile(r"<sub-image \d+>")


class SeenObservation(ObservationBlock):
    """A block as the policy uses it: its JSON payload and the images it made."""

    def json(self) -> Any:
        """The tool's JSON payload, or None when the text is not JSON (errors, code output)."""
        try:
            return json.loads(self.body)
        except json.JSONDecodeError:
            return None

    def new_images(self) -> list[str]:
        return _IMAGE_NAME.findall(self.image_listing())


def observations_in(text: str) -> list[SeenObservation]:
    return [SeenObservation(b.tool, b.call_id, b.text) for b in DIALECT.read_observations(text)]
