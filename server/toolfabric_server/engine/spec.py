"""What a trajectory is asked to do: the validated request with its budgets resolved (`RunSpec`).

Doors build it (gateway/validation.py for Run and the HTTP API); the engine runs it; gateway/runs.py keeps
it beside the record (`to_json`/`from_json`) so another replica can resume the trajectory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from toolfabric_server.engine.images import RegisteredImage
from toolfabric_server.engine.trajectory import Scope


@dataclass
class PriorTurn:
    """One earlier exchange as the model sees it: the question with the images it came with, the answer."""

    question: str
    answer: str
    images: list[str] = field(default_factory=list)  # names of the images sent with the question



@dataclass
class InputImage:
    ref: str
    width: int
    height: int
    mime_type: str
    data: bytes


@dataclass
class RunSpec:
    """A validated Run request with budgets resolved."""

    trajectory_id: str
    question: str
    mode: str
    model: str
    max_steps: int
    max_tool_calls: int
    deadline_s: float
    sampling: dict[str, Any]
    inputs: list[InputImage] = field(default_factory=list)
    # Services whose tools this run may not use (enable_search=false turns search and fetch off).
    excluded_services: frozenset[str] = frozenset()
    # The request's narrower tool offer (names; empty = every tool of the mode): what the system prompt lists.
    tools: tuple[str, ...] = ()
    tenant: str = ""  # who runs it ("" = anonymous, auth off)
    labels: dict[str, str] = field(default_factory=dict)  # kept in the durable store, filtered on
    eval_run: str = ""
    # Conversations: earlier turns as prior context (never rerun) and their images, carried by name.
    conversation_id: str = ""
    parent_trajectory_id: str = ""
    history: list[PriorTurn] = field(default_factory=list)
    carried: list[RegisteredImage] = field(default_factory=list)
    execute_plan: bool = False  # plan mode: run the plan (engine/plans.py) rather than answer with it
    # When the gateway admitted the run (epoch s; 0 = when the loop starts) and how long it waited from the call.
    # The deadline counts from admission.
    admitted_at: float = 0.0
    admission_wait_s: float = 0.0

    def scope(self) -> Scope:
        """What each of the run's steps needs of it."""
        return Scope(trajectory_id=self.trajectory_id, question=self.question, mode=self.mode, model=self.model,
                     max_tool_calls=self.max_tool_calls, tenant=self.tenant, eval_run=self.eval_run,
                     excluded_services=self.excluded_services, tools=self.tools)


def to_json(spec: RunSpec) -> str:
    """The spec as stored beside the record (input bytes stay in the blob store)."""
    data = asdict(spec)
    data["inputs"] = [{k: v for k, v in i.items() if k != "data"} for i in data["inputs"]]
    data["excluded_services"] = sorted(spec.excluded_services)
    return json.dumps(data)


def from_json(raw: str) -> RunSpec:
    data = json.loads(raw)
    data["inputs"] = [InputImage(data=b"", **i) for i in data["inputs"]]
    data["excluded_services"] = frozenset(data.get("excluded_services", ()))
    data["tools"] = tuple(data.get("tools", ()))
    data["history"] = [PriorTurn(**t) for t in data.get("history", [])]
    data["carried"] = [RegisteredImage(**i) for i in data.get("carried", [])]
    return RunSpec(**data)
