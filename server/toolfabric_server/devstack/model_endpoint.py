"""`toolfabric up --model-endpoint URL`: the default model from an OpenAI-compatible completions server a team
already runs (`vllm serve`, SGLang) instead of Triton; what the gateway needs to reach it (docs/models.md)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import httpx

from toolfabric_server.common.errors import ConfigurationError


@dataclass(frozen=True)
class ModelEndpoint:
    url: str                 # the server's base URL (…/v1)
    model: str               # the name the server serves the model under; the fabric uses it too
    dialect: str = "qwen3vl"
    checkpoint: Path | None = None  # its tokenizer.json: prompts as token ids, every step's ids exact

    @classmethod
    def ask(cls, url: str, model: str = "", dialect: str = "qwen3vl", checkpoint: str | None = None) -> ModelEndpoint:
        """The endpoint, its model name asked of the server (GET /models) when not given; a server that cannot be
        reached or does not serve `model` stops `up` here, named."""
        url = url.rstrip("/")
        key = os.environ.get("TOOLFABRIC_MODEL_ENDPOINT_API_KEY", "")
        try:
            reply = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=10)
            reply.raise_for_status()
            listed = [m["id"] for m in reply.json()["data"]]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"--model-endpoint {url}: GET {url}/models failed ({exc}); is it an "
                                     "OpenAI-compatible server's base URL (…/v1)?") from exc
        if not listed:
            raise ConfigurationError(f"--model-endpoint {url} serves no model")
        if model and model not in listed:
            raise ConfigurationError(f"--model-endpoint {url} does not serve {model!r} (it serves "
                                     f"{', '.join(listed)})")
        folder = Path(checkpoint).resolve() if checkpoint else None
        if folder is not None and not (folder / "tokenizer.json").is_file():
            raise ConfigurationError(f"--endpoint-checkpoint {folder} has no tokenizer.json")
        return cls(url, model or listed[0], dialect, folder)

    def gateway_env(self) -> dict[str, str]:
        """The gateway's settings: this model on that server, by default, in its dialect."""
        env = {
            "TOOLFABRIC_MODEL_DEFAULT_MODEL": self.model,
            "TOOLFABRIC_MODEL_ENDPOINTS": json.dumps({self.model: {"url": self.url}}),
            "TOOLFABRIC_MODEL_DIALECTS": json.dumps({self.model: self.dialect}),
        }
        if self.checkpoint is not None:
            env["TOOLFABRIC_MODEL_CHECKPOINTS"] = json.dumps({self.model: str(self.checkpoint)})
        return env
