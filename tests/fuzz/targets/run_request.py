"""Client input: arbitrary bytes as a RunRequest, through the gateway's request validator.

Promises checked: bytes that are not a RunRequest fail protobuf's own parse (DecodeError, which the
server's deserializer reports); a RunRequest either becomes a RunSpec within every server limit or
is refused with InvalidRequest — never another exception — whose message stays short enough for a
gRPC status (the input is never echoed back whole). Images go through the real decoder; image
URLs through the real SSRF guard, which resolves nothing and connects nowhere here. Blobs go to
the Redis at TOOLFABRIC_REDIS_URL (the launcher and the test session start a real one).
"""

from __future__ import annotations

import asyncio
import math
import os

import redis.asyncio as aredis
from google.protobuf.message import DecodeError

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.catalog import catalog
from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.gateway.exceptions import InvalidRequest
from toolfabric_server.gateway.settings import GatewaySettings
from toolfabric_server.gateway.validation import RequestValidator
from toolfabric_server.model.settings import ModelSettings
from toolfabric_server.web.errors import ConnectFailed, HostNotFound
from toolfabric_server.web.guard import Guard
from toolfabric_server.web.settings import FetchSettings

INSTRUMENT = ("toolfabric_server.gateway.validation", "toolfabric_server.web.guard", "toolfabric_server.web.addresses",
              "toolfabric_server.common.images")
# A status message travels in gRPC trailing metadata (8 KiB by default, shared with other headers).
MAX_MESSAGE_CHARS = 2048

GATEWAY = GatewaySettings()
MODEL = ModelSettings()
COMMON = CommonSettings(max_image_pixels=2_000_000, max_image_bytes=1_000_000)


class NoDNS:
    async def resolve(self, host: str, port: int) -> list[str]:
        raise HostNotFound(f"the fuzz target resolves no names ({host!r})")


GUARD = Guard(FetchSettings(), NoDNS())


async def guarded_download(url: str, max_bytes: int) -> bytes:
    target = await GUARD.check(url)  # the gateway's downloads start with this check
    raise ConnectFailed(f"the fuzz target connects nowhere (would connect to {target.address})")


LOOP = asyncio.new_event_loop()
REDIS = aredis.Redis.from_url(os.environ.get("TOOLFABRIC_REDIS_URL", "redis://127.0.0.1:6379/0"))
BLOBS = AsyncBlobStore(REDIS, 60)
VALIDATOR = RequestValidator(GATEWAY, MODEL, COMMON, BLOBS, guarded_download, catalog())


def fuzz_one(data: bytes) -> None:
    try:
        request = pb.RunRequest.FromString(data)
    except DecodeError:
        return
    try:
        spec = LOOP.run_until_complete(VALIDATOR.validate(request))
    except InvalidRequest as exc:
        assert str(exc) and len(str(exc)) <= MAX_MESSAGE_CHARS, f"message of {len(str(exc))} characters"
        return
    assert spec.question and len(spec.question) <= GATEWAY.max_question_chars
    assert 1 <= spec.max_steps <= GATEWAY.limit_max_steps
    assert 1 <= spec.max_tool_calls <= GATEWAY.limit_max_tool_calls
    assert 0 < spec.deadline_s <= GATEWAY.limit_deadline_s and math.isfinite(spec.deadline_s)
    assert len(spec.inputs) == len(request.images) <= GATEWAY.max_images_per_request
    for key, value in spec.sampling.items():
        assert not isinstance(value, float) or math.isfinite(value), f"sampling {key}={value}"
