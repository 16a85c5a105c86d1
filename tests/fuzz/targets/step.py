"""Client input: the step API's request bodies, through either door, into the step service's checks.

The first byte picks the door: even, the rest is verl-tool's `POST /get_observation` JSON
(`parse_body`); odd, a gRPC `StepRequest` (protobuf bytes; `protos.items`). The items then go through
the step service's checks of a request (`_check_batch`) and of a new trajectory's inputs (its mode,
question and images: `_new_state`, `_add_images`, with run_request's real validator and Redis). The
action itself is the model's output (the `dialect` target fuzzes its parser); running its tool calls
needs Celery workers and is not part of this target.
Promises checked: bytes that are not a StepRequest fail protobuf's own parse (DecodeError); otherwise
only `InvalidRequest` — for the whole request (a 400 / INVALID_ARGUMENT) or for one item (its
`valid: false`) — never another exception, with a message short enough for a response.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from tests.fuzz.targets.run_request import BLOBS, LOOP, MAX_MESSAGE_CHARS, REDIS, VALIDATOR
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.engine.images import ImageRegistry
from toolfabric_server.gateway.exceptions import InvalidRequest
from toolfabric_server.gateway.fabric.step import items as grpc_items
from toolfabric_server.gateway.settings import GatewaySettings
from toolfabric_server.gateway.step.http import parse_body
from toolfabric_server.gateway.stepping.service import StepItem, StepService
from toolfabric_server.gateway.stepping.settings import StepSettings

INSTRUMENT = ("toolfabric_server.gateway.step.http", "toolfabric_server.gateway.fabric.step",
              "toolfabric_server.gateway.stepping.service", "toolfabric_server.gateway.validation",
              "toolfabric_server.common.images")
STEP = StepSettings(max_batch=64, max_images=4)
# No agent loop: the checks this target runs never reach the tools.
SERVICE = StepService(None, VALIDATOR, REDIS, BLOBS, STEP, GatewaySettings(), "r1v4")  # type: ignore[arg-type]


def _check(message: str) -> None:
    assert message and len(message) <= MAX_MESSAGE_CHARS, f"message of {len(message)} characters"


def fuzz_one(data: bytes) -> None:
    if not data:
        return
    door, body = data[0], data[1:]
    try:
        items = parse_body(body) if door % 2 == 0 else grpc_items(pb.StepRequest.FromString(body))
        SERVICE._check_batch(items)
    except DecodeError:
        return
    except InvalidRequest as exc:
        _check(str(exc))
        return
    for item in items:
        LOOP.run_until_complete(_admit(item))


async def _admit(item: StepItem) -> None:
    """What the service checks of a trajectory's first action before running it; InvalidRequest is `valid: false`."""
    try:
        SERVICE._new_state(item)
        await SERVICE._add_images(ImageRegistry(BLOBS), item.images)
    except InvalidRequest as exc:
        _check(str(exc))
