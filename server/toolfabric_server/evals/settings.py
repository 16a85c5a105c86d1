"""Settings of `toolfabric eval` (TOOLFABRIC_EVAL_*).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from toolfabric_server.common.settings import config


class EvalSettings(BaseSettings):
    """`toolfabric eval`: the LLM judge that grades answers (flags override these)."""

    model_config = config("TOOLFABRIC_EVAL_")

    # none: no judge (exact / sub-exact / F1 only); triton: a model on a Triton server; openai: any
    # OpenAI-compatible /chat/completions endpoint.
    judge_backend: Literal["none", "triton", "openai"] = "none"
    judge_model: str = ""
    judge_triton_url: str = "127.0.0.1:8001"
    judge_openai_base_url: str = "https://api.openai.com/v1"
    judge_api_key: SecretStr = SecretStr("")
    judge_timeout_s: float = Field(default=120.0, gt=0)
    judge_max_tokens: int = Field(default=1024, ge=16)


@lru_cache(maxsize=1)
def evals() -> EvalSettings:
    return EvalSettings()
