"""The gRPC `Step` RPC's messages ↔ the step service's items and outcomes."""

from __future__ import annotations

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1.names import MODE_NAMES
from toolfabric_server.gateway.stepping.service import StepItem, StepOutcome


def items(request: pb.StepRequest) -> list[StepItem]:
    return [StepItem(trajectory_id=a.trajectory_id, action=a.action, finish=a.finish, is_last_step=a.is_last_step,
                     images=list(a.images), model=a.model, mode=MODE_NAMES.get(a.mode, ""),
                     question=a.question)
            for a in request.actions]


def response(outcomes: list[StepOutcome]) -> pb.StepResponse:
    return pb.StepResponse(observations=[
        pb.StepObservation(trajectory_id=o.trajectory_id, text=o.text, done=o.done, valid=o.valid, error=o.error,
                           images=[pb.ImageRef(name=i.name, blob=i.ref, width=i.width, height=i.height,
                                               origin=i.origin, mime_type=i.mime_type, step=i.step)
                                   for i in o.images])
        for o in outcomes])
