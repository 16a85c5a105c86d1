"""Settings of the step API (TOOLFABRIC_STEP_*).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from toolfabric.v1.names import DEFAULT_MODE, ModeName
from toolfabric_server.common.settings import config


class StepSettings(BaseSettings):
    """The step API (gateway/step): trajectories an RL trainer drives one action at a time."""

    model_config = config("TOOLFABRIC_STEP_")

    # verl-tool's HTTP contract (POST /get_observation) on this port of the gateway; 0 = gRPC Step only.
    http_port: int = Field(default=0, ge=0, le=65535)
    max_batch: int = Field(default=4096, ge=1)
    max_request_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    # One action (the model's text for one step) longer than this is refused as invalid.
    max_action_chars: int = Field(default=64_000, ge=100)
    max_trajectory_id_chars: int = Field(default=256, ge=8)
    # Per trajectory, over all its steps; a call past it is a budget_exhausted observation.
    max_tool_calls: int = Field(default=256, ge=1)
    max_images: int = Field(default=16, ge=1)
    # A trajectory the trainer never finishes is forgotten this long after its last step.
    state_ttl_s: int = Field(default=6 * 3600, ge=60)
    # After `finish`, actions for the id are refused (not a new trajectory) for this long.
    finished_ttl_s: int = Field(default=24 * 3600, ge=60)
    # Default dialect and tools of a trajectory whose first action names neither.
    default_mode: ModeName = DEFAULT_MODE
