"""Which backend serves a model name: an OpenAI-compatible completions server named in the settings
(TOOLFABRIC_MODEL_ENDPOINTS), else Triton. The gateway holds one router and asks it what it asked Triton."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from toolfabric_server.model.backend import ModelChunk
from toolfabric_server.model.completions_client import CompletionsModel
from toolfabric_server.model.settings import ModelSettings
from toolfabric_server.model.triton_client import TritonModel


class ServedModel(Protocol):
    """A backend the router can hand a model to: it streams steps (ModelBackend) and says whether it serves."""

    def stream(self, model: str, prompt: str, images: list[bytes], sampling: dict[str, Any], request_id: str,
               input_ids: list[int] | None = None) -> AsyncIterator[ModelChunk]: ...

    async def serves(self, model: str) -> bool: ...

    async def ready(self, model: str) -> bool: ...

    async def close(self) -> None: ...


class ModelRouter:
    """The gateway's ModelBackend: each model name to its backend."""

    def __init__(self, triton: ServedModel, endpoints: dict[str, ServedModel] | None = None,
                 where: dict[str, str] | None = None) -> None:
        self._triton, self._endpoints = triton, endpoints or {}
        self._where = where or {}

    @classmethod
    def from_settings(cls, cfg: ModelSettings) -> ModelRouter:
        triton = TritonModel(cfg.triton_url, cfg.stream_idle_timeout_s, cfg.reconnect_backoff_max_s, cfg.max_streams)
        key = cfg.endpoint_api_key.get_secret_value()
        endpoints = {name: CompletionsModel(name, endpoint, key, cfg.stream_idle_timeout_s)
                     for name, endpoint in cfg.endpoints.items()}
        where = {name: f"the completions server at {m.url}" for name, m in endpoints.items()}
        return cls(triton, dict(endpoints), where)

    def backend(self, model: str) -> ServedModel:
        return self._endpoints.get(model, self._triton)

    def server_of(self, model: str) -> str:
        """Where `model` is served, for messages: "Triton" or the completions server's URL."""
        return self._where.get(model, "Triton")

    def stream(self, model: str, prompt: str, images: list[bytes], sampling: dict[str, Any], request_id: str,
               input_ids: list[int] | None = None) -> AsyncIterator[ModelChunk]:
        return self.backend(model).stream(model, prompt, images, sampling, request_id, input_ids)

    async def serves(self, model: str) -> bool:
        return await self.backend(model).serves(model)

    async def ready(self, model: str) -> bool:
        return await self.backend(model).ready(model)

    async def close(self) -> None:
        for backend in (self._triton, *self._endpoints.values()):
            await backend.close()
