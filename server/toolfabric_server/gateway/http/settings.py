"""Settings of the OpenAI-compatible HTTP API (TOOLFABRIC_HTTP_*).
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings

from toolfabric.v1.names import DEEP_RESEARCH, DEFAULT_MODE, GENERAL, PLAN, ModeName
from toolfabric_server.common.settings import config


class ModelRoute(BaseModel):
    """What a public model name of the HTTP API runs: a mode, on a Triton model ("" = the default model)."""

    mode: ModeName = DEFAULT_MODE
    triton_model: str = ""


class HttpSettings(BaseSettings):
    """The OpenAI-compatible HTTP API (R1V4's hosted API shape), served by the gateway process."""

    model_config = config("TOOLFABRIC_HTTP_")

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)  # 0 = no HTTP API
    # Largest request body accepted (a JSON body carrying base64 images is ~4/3 of the images' size).
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # Public model names (the `model` field) → mode and Triton model. R1V4's hosted names by default.
    models: dict[str, ModelRoute] = Field(default_factory=lambda: {
        "skywork/r1v4-lite": ModelRoute(mode=DEEP_RESEARCH),
        "skywork/r1v4-lite-general": ModelRoute(mode=GENERAL),
        "skywork/r1v4-vl-planner-lite": ModelRoute(mode=PLAN),
    })
