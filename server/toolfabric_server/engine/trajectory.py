"""One trajectory as the engine's step sees it, whoever drives it (the Run loop, or a trainer through Step).

`Scope` is what a step needs of the request: whose trajectory, its question, mode and model, which tools it may
use and how many calls. A Run's scope comes from its RunSpec (which adds the loop's own budgets: steps,
deadline); a stepped trajectory's from its stored state. `Trajectory` is the state its steps share.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from toolfabric_server.engine.images import ImageRegistry, RegisteredImage
from toolfabric_server.engine.tokens import TokenLedger
from toolfabric_server.engine.usage import Usage
from toolfabric_server.model.chat_template import ImagePart, Message
from toolfabric_server.model.dialects import Dialect


@dataclass(frozen=True)
class Scope:
    trajectory_id: str
    question: str
    mode: str
    model: str
    max_tool_calls: int
    tenant: str = ""  # who runs it ("" = anonymous, auth off)
    eval_run: str = ""
    # Services whose tools this trajectory may not use (enable_search=false turns search and fetch off).
    excluded_services: frozenset[str] = frozenset()
    # The request's narrower tool offer (names; empty = every tool of the mode): what the system prompt lists.
    tools: tuple[str, ...] = ()


@dataclass
class Trajectory:
    scope: Scope
    dialect: Dialect
    registry: ImageRegistry
    usage: Usage = field(default_factory=Usage)
    started: float = field(default_factory=time.monotonic)
    messages: list[Message] = field(default_factory=list)
    inputs: list[RegisteredImage] = field(default_factory=list)  # this turn's own input images
    tool_calls: int = 0  # calls sent so far (refused ones do not count)
    tools_exhausted: bool = False
    plan: list[dict[str, Any]] | None = None  # the plan being executed (RunSpec.execute_plan)
    plan_started: bool = False
    tokens: TokenLedger = field(default_factory=lambda: TokenLedger(None))

    @property
    def plan_json(self) -> str:
        return json.dumps(self.plan, ensure_ascii=False) if self.plan is not None else ""

    def image_count(self) -> int:
        return sum(1 for m in self.messages for p in m.parts if isinstance(p, ImagePart))
