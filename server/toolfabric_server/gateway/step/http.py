"""verl-tool's tool-server contract over HTTP: `POST /get_observation` (an ASGI app, served by uvicorn).

Request: parallel lists ``{"trajectory_ids", "actions", "finish", "is_last_step", "extra_fields"}``
(finish, is_last_step and extra_fields may be left out). ``extra_fields[i]`` may carry ``images``
(data: URLs, base64 or http(s) URLs), ``model``, ``mode`` and ``question`` for the trajectory's first
action. Response: ``{"observations": [str | {"obs", "image"}], "dones", "valids"}`` — an observation
with images is an object whose ``image`` is a data: URL (``images`` lists all when a step made several).
A request that cannot be served as a whole (lists of different lengths, not JSON, too big) is a 400/413
with ``{"error": …}``; a bad item is ``valid: false`` with the reason as its observation.

`routes()` is a Starlette router of its own, so an app with other doors can mount it beside them. The
gateway serves it behind the policy (gateway/policy/http.py: the caller is resolved before a route runs).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.errors import BlobNotFound
from toolfabric_server.gateway.exceptions import InvalidRequest, LimitExceeded
from toolfabric_server.gateway.policy.http import principal_of
from toolfabric_server.gateway.stepping.service import StepItem, StepOutcome, StepService


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")

    trajectory_ids: list[str]
    actions: list[str]
    finish: list[bool] | None = None
    is_last_step: list[bool] | None = None
    extra_fields: list[dict[str, Any] | None] | None = None


class _Extra(BaseModel):
    model_config = ConfigDict(extra="ignore")

    images: list[str] = Field(default_factory=list)
    model: str = ""
    mode: str = ""
    question: str = ""


def parse_body(raw: bytes) -> list[StepItem]:
    """The request's items, or InvalidRequest saying what is wrong with it."""
    try:
        body = _Body.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidRequest(f"not a get_observation request: {problems}") from None
    n = len(body.trajectory_ids)
    lengths = {"trajectory_ids": n, "actions": len(body.actions)}
    for name in ("finish", "is_last_step", "extra_fields"):
        value = getattr(body, name)
        if value is not None:
            lengths[name] = len(value)
    if len(set(lengths.values())) > 1:
        raise InvalidRequest("the lists must be parallel (one entry per trajectory), but their lengths differ: "
                             + ", ".join(f"{k}={v}" for k, v in lengths.items()))
    items = []
    for i in range(n):
        try:
            extra = _Extra.model_validate((body.extra_fields or [None] * n)[i] or {})
        except ValidationError as exc:
            raise InvalidRequest(f"extra_fields[{i}]: {exc.errors()[0]['msg']}") from None
        items.append(StepItem(trajectory_id=body.trajectory_ids[i], action=body.actions[i],
                              finish=bool(body.finish and body.finish[i]),
                              is_last_step=bool(body.is_last_step and body.is_last_step[i]),
                              images=[_image_input(i, j, s) for j, s in enumerate(extra.images)],
                              model=extra.model, mode=extra.mode, question=extra.question))
    return items


def _image_input(item: int, index: int, value: str) -> pb.ImageInput:
    if value.startswith(("http://", "https://")):
        return pb.ImageInput(url=value)
    payload = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return pb.ImageInput(data=base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"extra_fields[{item}].images[{index}] is neither a data: URL, base64 nor an "
                             "http(s) URL") from None


async def observation_json(outcome: StepOutcome, blobs: AsyncBlobStore) -> str | dict[str, Any]:
    if not outcome.images:
        return outcome.text
    urls = []
    for image in outcome.images:
        try:
            data = await blobs.get(image.ref)
        except BlobNotFound:
            continue
        urls.append(f"data:{image.mime_type};base64,{base64.b64encode(data).decode()}")
    if not urls:
        return outcome.text
    out: dict[str, Any] = {"obs": outcome.text, "image": urls[0]}
    if len(urls) > 1:
        out["images"] = urls
    return out


def routes(service: StepService, blobs: AsyncBlobStore, max_request_bytes: int) -> list[Route]:
    async def get_observation(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_request_bytes:
            return _error(413, f"request is {declared} bytes, over the limit of {max_request_bytes} "
                               "(TOOLFABRIC_STEP_MAX_REQUEST_BYTES)")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > max_request_bytes:
                return _error(413, f"request is over the limit of {max_request_bytes} bytes "
                                   "(TOOLFABRIC_STEP_MAX_REQUEST_BYTES)")
        try:
            outcomes = await service.step(parse_body(bytes(raw)), principal_of(request))
        except InvalidRequest as exc:
            return _error(400, str(exc))
        except LimitExceeded as exc:
            return JSONResponse({"error": str(exc)}, status_code=429,
                                headers={"Retry-After": str(int(exc.retry_after_s))})
        return JSONResponse({
            "observations": [await observation_json(o, blobs) for o in outcomes],
            "dones": [o.done for o in outcomes],
            "valids": [o.valid for o in outcomes],
        })

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return [Route("/get_observation", get_observation, methods=["POST"]), Route("/health", health, methods=["GET"])]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def app(service: StepService, blobs: AsyncBlobStore, max_request_bytes: int) -> Starlette:
    return Starlette(routes=routes(service, blobs, max_request_bytes))
