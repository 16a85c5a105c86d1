"""Reading the fabric's observation blocks back out of a rendered prompt (for scripted policies)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_BLOCK = re.compile(r"<observation>\ntool: (\S+) \(call (\S+)\)\n(.*?)\n</observation>", re.DOTALL)
_IMAGE_NAME = re.compile(r"<sub-image \d+>")


@dataclass
class SeenObservation:
    tool: str
    call_id: str
    text: str

    @property
    def is_error(self) -> bool:
        return self.text.startswith("error (")

    def json(self) -> Any:
        """The tool's JSON payload, or None when the text is not JSON (errors, code output)."""
        body = self.text.split("\nNew images:", 1)[0]
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            return None

    def new_images(self) -> list[str]:
        _, _, tail = self.text.partition("\nNew images:")
        return _IMAGE_NAME.findall(tail)


def observations_in(text: str) -> list[SeenObservation]:
    return [SeenObservation(m.group(1), m.group(2), m.group(3)) for m in _BLOCK.finditer(text)]
