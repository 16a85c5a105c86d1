"""Building Run requests from friendly arguments, and folding events into a result (shared by both clients)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1.names import DEFAULT_MODE, MODES

ImageLike = Union[bytes, str, Path]
MAX_MESSAGE_BYTES = 128 * 1024 * 1024


def image_input(image: ImageLike) -> pb.ImageInput:
    """Bytes are sent as is; an http(s) string is a URL the gateway downloads; anything else is a file path."""
    if isinstance(image, bytes):
        return pb.ImageInput(data=image)
    if isinstance(image, str) and image.startswith(("http://", "https://")):
        return pb.ImageInput(url=image)
    return pb.ImageInput(data=Path(image).read_bytes())


def call_metadata(timeout_s: Optional[float]) -> Tuple[Tuple[str, str], ...]:
    """A Run's declared timeout: the gateway measures its admission wait from the call with it."""
    return (("toolfabric-call-timeout-ms", str(int(timeout_s * 1000))),) if timeout_s else ()


def trace_metadata() -> tuple[tuple[str, str], ...]:
    """The caller's trace context (W3C traceparent) as gRPC metadata: a traced caller's trace holds the trajectory.

    Only a caller that has OpenTelemetry installed can be traced; the SDK does not require it."""
    try:
        from opentelemetry import propagate
    except ImportError:
        return ()

    carrier: dict[str, str] = {}
    propagate.inject(carrier)  # nothing when the caller has no active span
    return tuple(carrier.items())


def run_request(question: str, images: list[ImageLike] | tuple[ImageLike, ...] = (), *, mode: str = DEFAULT_MODE,
                max_steps: int = 0, max_tool_calls: int = 0, deadline_s: float = 0.0,
                temperature: float | None = None, max_tokens: int | None = None, seed: int | None = None,
                model: str = "", labels: dict[str, str] | None = None, eval_run: str = "",
                conversation_id: str = "", parent_trajectory_id: str = "",
                enable_search: Optional[bool] = None, execute_plan: bool = False,
                tools: Sequence[str] = ()) -> pb.RunRequest:
    """`parent_trajectory_id` continues an earlier turn (its questions, answers and images are the context);
    `execute_plan` (mode "plan") runs the plan the model makes and answers, rather than answering with the plan;
    `tools` offers the model only those tools (empty: every tool of the mode)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, not {mode!r}")
    sampling = pb.SamplingParameters()
    if temperature is not None:
        sampling.temperature = temperature
    if max_tokens is not None:
        sampling.max_tokens = max_tokens
    if seed is not None:
        sampling.seed = seed
    request = pb.RunRequest(
        question=question, images=[image_input(i) for i in images], mode=MODES[mode], model=model,
        budgets=pb.Budgets(max_steps=max_steps, max_tool_calls=max_tool_calls, deadline_s=deadline_s),
        sampling=sampling, labels=labels or {}, eval_run=eval_run,
        conversation_id=conversation_id, parent_trajectory_id=parent_trajectory_id, execute_plan=execute_plan,
        tools=list(tools),
    )
    if enable_search is not None:
        request.enable_search = enable_search
    return request


def step_request(trajectory_ids: Sequence[str], actions: Sequence[str], *,
                 finish: Optional[Sequence[bool]] = None, is_last_step: Optional[Sequence[bool]] = None,
                 images: Optional[Sequence[Sequence[ImageLike]]] = None, mode: str = "", model: str = "",
                 questions: Optional[Sequence[str]] = None) -> pb.StepRequest:
    """verl-tool's parallel lists as one StepRequest (images, mode, model, question matter on a first action)."""
    n = len(trajectory_ids)
    for name, value in (("actions", actions), ("finish", finish), ("is_last_step", is_last_step),
                        ("images", images), ("questions", questions)):
        if value is not None and len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries for {n} trajectory ids; the lists must be parallel")
    if mode and mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, not {mode!r}")
    return pb.StepRequest(actions=[
        pb.StepAction(trajectory_id=trajectory_ids[i], action=actions[i], finish=bool(finish and finish[i]),
                      is_last_step=bool(is_last_step and is_last_step[i]),
                      images=[image_input(x) for x in (images[i] if images else ())],
                      mode=MODES[mode] if mode else pb.MODE_UNSPECIFIED, model=model,
                      question=questions[i] if questions else "")
        for i in range(n)])


@dataclass
class RunResult:
    """The outcome of one Run: the answer, how it ended, and every event of the trajectory."""

    trajectory_id: str = ""
    trace_id: str = ""
    answer: str | None = None
    status: str = "STATUS_UNSPECIFIED"
    reason: str = ""
    usage: pb.Usage | None = None
    events: list[pb.RunEvent] = field(default_factory=list)

    def add(self, event: pb.RunEvent) -> None:
        self.events.append(event)
        self.trajectory_id = self.trajectory_id or event.trajectory_id
        kind = event.WhichOneof("event")
        if kind == "started":
            self.trace_id = event.started.trace_id
        elif kind == "answer":
            self.answer = event.answer.text
        elif kind == "usage":
            self.usage = event.usage
        elif kind == "finished":
            self.status = pb.Status.Name(event.finished.status)
            self.reason = event.finished.reason

    @property
    def tool_calls(self) -> list[pb.ToolCall]:
        return [e.tool_call for e in self.events if e.WhichOneof("event") == "tool_call"]

    @property
    def observations(self) -> list[pb.Observation]:
        return [e.observation for e in self.events if e.WhichOneof("event") == "observation"]
