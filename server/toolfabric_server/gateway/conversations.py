"""Conversations: a turn that continues earlier ones, without rerunning them.

A Run with `parent_trajectory_id` continues that trajectory: the earlier turns' questions and answers
become prior messages of the prompt, and every image they saw or made is carried into the new
turn's registry under the same name (so "crop <image 2> again" or "zoom into <sub-image 1>" work).
The chain of parents is followed back to the first turn (at most `MAX_TURNS`). All turns share a
`conversation_id`: the first turn's own trajectory id unless the client names one.

The HTTP API's `messages` history is the other source of earlier turns: its images are validated as
inputs of the new turn and its assistant messages are the earlier answers (`PriorTurn`).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aredis

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1.names import status_name
from toolfabric_server.engine.images import RegisteredImage
from toolfabric_server.engine.spec import PriorTurn
from toolfabric_server.gateway import recorder
from toolfabric_server.gateway.exceptions import InvalidRequest

MAX_TURNS = 32


@dataclass
class Earlier:
    conversation_id: str
    turns: list[PriorTurn]
    images: list[RegisteredImage]  # every image of the earlier turns, in registry order


async def load(client: aredis.Redis, parent_id: str) -> Earlier:
    """The conversation up to and including `parent_id`, or InvalidRequest if a turn of it is gone."""
    chain: list[pb.Trajectory] = []
    next_id = parent_id
    while next_id and len(chain) < MAX_TURNS:
        found = await recorder.load(client, next_id)
        if found is None:
            what = "parent trajectory" if next_id == parent_id else "earlier turn of the conversation"
            raise InvalidRequest(f"{what} {next_id!r} is unknown or its record expired")
        if found.status == pb.STATUS_RUNNING:
            raise InvalidRequest(f"trajectory {found.trajectory_id!r} is still running; continue it once it ends")
        chain.append(found)
        next_id = found.parent_trajectory_id
    chain.reverse()
    turns: list[PriorTurn] = []
    seen: set[str] = set()
    for turn in chain:
        started = next((e.started for e in turn.events if e.WhichOneof("event") == "started"), pb.TrajectoryStarted())
        new_inputs = [i.name for i in started.images if i.name not in seen]
        seen.update(i.name for i in started.images)
        seen.update(i.name for e in turn.events if e.WhichOneof("event") == "observation" for i in e.observation.images)
        answer = turn.answer or f"(no answer: {status_name(turn.status)})"
        turns.append(PriorTurn(turn.question, answer, new_inputs))
    parent = chain[-1]
    started = next((e.started for e in parent.events if e.WhichOneof("event") == "started"), pb.TrajectoryStarted())
    images = [RegisteredImage.from_ref(i) for i in started.images]
    images += [RegisteredImage.from_ref(i) for e in parent.events if e.WhichOneof("event") == "observation"
               for i in e.observation.images]
    return Earlier(parent.conversation_id or parent.trajectory_id, turns, images)
