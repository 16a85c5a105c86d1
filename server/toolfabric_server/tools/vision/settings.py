"""Settings of the vision service (TOOLFABRIC_VISION_*).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings

from toolfabric_server.common.settings import config


class VisionSettings(BaseSettings):
    """Image operations and the `code` sandbox."""

    model_config = config("TOOLFABRIC_VISION_")

    sandbox_cpu_s: int = Field(default=10, ge=1)
    sandbox_wall_s: float = Field(default=20.0, gt=0)
    sandbox_memory_mb: int = Field(default=1024, ge=64)
    sandbox_file_size_mb: int = Field(default=64, ge=1)
    sandbox_max_processes: int = Field(default=16, ge=1)
    # stdout/stderr/last value returned to the model are cut to this many characters.
    sandbox_output_chars: int = Field(default=4000, ge=100)
    max_output_images: int = Field(default=8, ge=1)
    # Where call directories are created; "" = the system temp directory.
    sandbox_dir: str = ""
    # As root, each sandboxed child runs as uid/gid sandbox_uid_base + its pid (unique while it lives).
    sandbox_uid_base: int = Field(default=1_000_000, ge=1000, le=2**31 - 2**23)
    # Isolation layers the worker refuses to run code without (fail closed), e.g. ["landlock", "seccomp"].
    sandbox_required_layers: list[str] = Field(default_factory=list)
    # Crop/zoom boxes: grown to this minimum side; boxes more elongated than this ratio are rejected.
    crop_min_side: int = Field(default=32, ge=1)
    crop_max_aspect_ratio: float = Field(default=100.0, gt=1)
    # zoom_in upscales the crop until its longer side reaches this (never by more than max_zoom).
    zoom_target_side: int = Field(default=1024, ge=64)
    max_zoom: float = Field(default=4.0, ge=1)
    # Results of the fixed operations are encoded as PNG at this zlib level (1 = fast, 9 = small) …
    png_compression: int = Field(default=1, ge=0, le=9)
    # "fpng": colour PNG results through fpng (lossless, 10-20x faster, ~15% larger; zlib for gray);
    # "zlib": every PNG at png_compression.
    png_encoder: Literal["fpng", "zlib"] = "fpng"
    # … up to this many pixels; larger colour results are JPEG (a 12 MP PNG takes ~0.7 s and ~20 MB).
    png_max_pixels: int = Field(default=4_000_000, ge=0)
    jpeg_quality: int = Field(default=95, ge=50, le=100)
    # Per worker process: decoded images and converted PNGs kept by blob reference.
    decoded_cache_mb: int = Field(default=256, ge=0)
