"""Turning a client's RunRequest into a RunSpec, or an InvalidRequest that says what is wrong."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1.names import DEFAULT_MODE, MODE_NAMES, PLAN
from toolfabric_server.common import images
from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.errors import InvalidImage
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.common.tools import Catalog
from toolfabric_server.engine.spec import InputImage, RunSpec
from toolfabric_server.gateway.exceptions import InvalidRequest
from toolfabric_server.gateway.settings import GatewaySettings
from toolfabric_server.model.settings import ModelSettings

# The services `enable_search=false` turns off: web search and web reading.
SEARCH_SERVICES = frozenset({"search", "fetch"})
Downloader = Callable[[str, int], Awaitable[bytes]]


def check_length(name: str, value: str, limit: int) -> None:
    """An id or name over its limit is refused naming the limit, never echoing the value (it may be megabytes)."""
    if len(value) > limit:
        raise InvalidRequest(f"{name} is {len(value)} characters, over the limit of {limit}", name)


class RequestValidator:
    def __init__(self, gateway: GatewaySettings, model: ModelSettings, common: CommonSettings,
                 blobs: AsyncBlobStore, download: Downloader, catalog: Catalog) -> None:
        self._gw, self._model, self._common = gateway, model, common
        self._blobs, self._download, self._catalog = blobs, download, catalog
        self._decoding = asyncio.Semaphore(gateway.decode_concurrency)  # bounds the gateway's decode memory

    def _tools(self, names: Iterable[str], mode: str, excluded: frozenset[str]) -> tuple[str, ...]:
        """The request's narrower tool offer as canonical names (aliases resolved), each one the run may use."""
        offered: list[str] = []
        for name in names:
            tool = self._catalog.get(name.strip())
            if tool is None or tool.hidden:
                raise InvalidRequest(f"tools: unknown tool {name!r} (ListTools names them)", "tools")
            if mode not in tool.modes:
                raise InvalidRequest(f"tools: {tool.name!r} is not available in {mode} mode", "tools")
            if tool.service in excluded:
                raise InvalidRequest(f"tools: {tool.name!r} is turned off by enable_search=false", "tools")
            if tool.name not in offered:
                offered.append(tool.name)
        return tuple(offered)

    def decode_budget(self) -> DecodeBudget:
        """What one request (a Run, a chat turn, one step action) may decode."""
        return DecodeBudget(self._gw.max_decode_pixels_per_request)

    async def validate(self, request: pb.RunRequest) -> RunSpec:
        size = request.ByteSize()
        if size > self._gw.max_message_bytes:
            raise InvalidRequest(f"request is {size} bytes, over the limit of {self._gw.max_message_bytes} bytes "
                                 "(TOOLFABRIC_GATEWAY_MAX_MESSAGE_BYTES)")
        question = request.question.strip()
        if not question:
            raise InvalidRequest("question is empty", "question")
        if len(question) > self._gw.max_question_chars:
            raise InvalidRequest(f"question is {len(question)} characters, over the limit of "
                                 f"{self._gw.max_question_chars}", "question")
        check_length("model", request.model, self._gw.max_model_name_chars)
        mode = MODE_NAMES.get(request.mode) if request.mode else DEFAULT_MODE
        if mode is None:
            raise InvalidRequest(f"mode {request.mode} is not one of {sorted(pb.Mode.keys())}", "mode")
        if request.execute_plan and mode != PLAN:
            raise InvalidRequest(f"execute_plan runs a planner's plan: it needs mode plan, not {mode}", "execute_plan")
        if len(request.images) > self._gw.max_images_per_request:
            raise InvalidRequest(f"{len(request.images)} images, over the limit of {self._gw.max_images_per_request}",
                                 "images")
        excluded = frozenset() if request.enable_search or not request.HasField("enable_search") else SEARCH_SERVICES
        spec = RunSpec(
            trajectory_id=str(uuid.uuid4()),
            question=question,
            mode=mode,
            model=request.model.strip() or self._model.default_model,
            max_steps=self._budget("max_steps", request.budgets.max_steps, self._gw.default_max_steps,
                                   self._gw.limit_max_steps),
            max_tool_calls=self._budget("max_tool_calls", request.budgets.max_tool_calls,
                                        self._gw.default_max_tool_calls, self._gw.limit_max_tool_calls),
            deadline_s=self._deadline(request.budgets.deadline_s),
            sampling=self._sampling(request.sampling),
            excluded_services=excluded,
            tools=self._tools(request.tools, mode, excluded),
            execute_plan=request.execute_plan,
        )
        budget = self.decode_budget()
        for index, image in enumerate(request.images, start=1):
            try:
                spec.inputs.append(await self._image(index, image, budget))
            except InvalidRequest as exc:
                exc.field = exc.field or f"images[{index - 1}]"
                raise
        return spec

    @staticmethod
    def _budget(name: str, value: int, default: int, limit: int) -> int:
        if value < 0:
            raise InvalidRequest(f"budgets.{name} is {value}; it must be positive (or 0 for the default {default})",
                                 f"budgets.{name}")
        if value > limit:
            raise InvalidRequest(f"budgets.{name} is {value}, over the server's limit of {limit}", f"budgets.{name}")
        return value or default

    def _deadline(self, value: float) -> float:
        if math.isnan(value) or value < 0:
            raise InvalidRequest(f"budgets.deadline_s is {value}; it must be a positive number of seconds",
                                 "budgets.deadline_s")
        if value > self._gw.limit_deadline_s:
            raise InvalidRequest(f"budgets.deadline_s is {value:g}, over the server's limit of "
                                 f"{self._gw.limit_deadline_s:g}", "budgets.deadline_s")
        return value or self._gw.default_deadline_s

    def _sampling(self, sampling: pb.SamplingParameters) -> dict[str, Any]:
        out: dict[str, Any] = {"temperature": self._model.temperature, "max_tokens": self._model.max_tokens}
        if sampling.HasField("temperature"):
            if not 0.0 <= sampling.temperature <= 2.0:
                raise InvalidRequest(f"sampling.temperature is {sampling.temperature:g}; it must be within [0, 2]",
                                     "sampling.temperature")
            out["temperature"] = sampling.temperature
        if sampling.HasField("top_p"):
            if not 0.0 < sampling.top_p <= 1.0:
                raise InvalidRequest(f"sampling.top_p is {sampling.top_p:g}; it must be within (0, 1]",
                                     "sampling.top_p")
            out["top_p"] = sampling.top_p
        if sampling.HasField("top_k"):
            if sampling.top_k < -1 or sampling.top_k == 0:
                raise InvalidRequest(f"sampling.top_k is {sampling.top_k}; use -1 (off) or a positive number",
                                     "sampling.top_k")
            out["top_k"] = sampling.top_k
        if sampling.HasField("max_tokens"):
            if not 1 <= sampling.max_tokens <= self._model.max_tokens:
                raise InvalidRequest(f"sampling.max_tokens is {sampling.max_tokens}; it must be within "
                                     f"[1, {self._model.max_tokens}]", "sampling.max_tokens")
            out["max_tokens"] = sampling.max_tokens
        if sampling.HasField("seed"):
            out["seed"] = sampling.seed
        return out

    async def input_image(self, index: int, image: pb.ImageInput, budget: DecodeBudget) -> InputImage:
        """One input image checked and stored as Run's are (the step API's inputs too)."""
        return await self._image(index, image, budget)

    async def _image(self, index: int, image: pb.ImageInput, budget: DecodeBudget) -> InputImage:
        source = image.WhichOneof("source")
        limit = self._common.max_image_bytes
        if source == "data":
            data = image.data
        elif source == "url":
            try:
                data = await self._download(image.url, limit)
            except Exception as exc:  # the fetcher's errors already say what went wrong
                # Shortened: a status message must fit gRPC's metadata limit (found by fuzzing).
                raise InvalidRequest(
                    f"image {index}: could not download {image.url[:200]!r}: {str(exc)[:500]}") from exc
        else:
            raise InvalidRequest(f"image {index} has neither data nor url")
        if len(data) > limit:
            raise InvalidRequest(f"image {index} is {len(data)} bytes, over the limit of {limit} bytes")
        try:
            info = images.inspect(data, self._common.max_image_pixels, self._common.max_image_pixels_per_byte)
            budget.spend(index, info.width * info.height)
            # A full decode catches corrupt or truncated data; off the event loop, it can take a while.
            await self._decode(index, data)
        except InvalidImage as exc:
            raise InvalidRequest(f"image {index}: {exc}") from None
        ref = await self._blobs.put(data)
        return InputImage(ref=ref, width=info.width, height=info.height, mime_type=info.mime_type, data=data)

    async def _decode(self, index: int, data: bytes) -> None:
        """The full decode, in a thread, at most `decode_concurrency` at once and `decode_timeout_s` long for the
        request. A decode that runs over keeps its slot until the decoder really stops (a thread cannot be
        killed), so hostile images cost the gateway a bounded amount of memory and CPU, never its event loop."""
        timeout = self._gw.decode_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await self._decoding.acquire()
        except TimeoutError:
            raise InvalidRequest(f"image {index}: no decoder became free within {timeout:g}s, the decode time "
                                 "limit (TOOLFABRIC_GATEWAY_DECODE_TIMEOUT_S)") from None
        work = asyncio.ensure_future(asyncio.to_thread(images.decode_bgr, data, self._common.max_image_pixels))
        work.add_done_callback(lambda _: self._decoding.release())
        try:
            await asyncio.wait_for(asyncio.shield(work), timeout)
        except TimeoutError:
            work.add_done_callback(lambda done: done.cancelled() or done.exception())  # nobody awaits it now
            raise InvalidRequest(f"image {index}: decoding took longer than {timeout:g}s, the decode time limit "
                                 "(TOOLFABRIC_GATEWAY_DECODE_TIMEOUT_S)") from None


class DecodeBudget:
    """The pixels one request may still decode, spent from each image's declared size before it is decoded."""

    def __init__(self, pixels: int) -> None:
        self.limit = self.left = pixels

    def spend(self, index: int, pixels: int) -> None:
        if pixels > self.left:
            raise InvalidRequest(f"image {index}: its {pixels} pixels bring the request's images to "
                                 f"{self.limit - self.left + pixels} pixels, over the decode budget of {self.limit} "
                                 "pixels per request (TOOLFABRIC_GATEWAY_MAX_DECODE_PIXELS_PER_REQUEST)")
        self.left -= pixels
