"""Vision tools as the gateway advertises them (arguments and descriptions only)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from services.common.tools import ToolSpec


class CodeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=100_000, description="Python source to run on the images")


CODE_DESCRIPTION = (
    "Run Python on the trajectory's images (numpy as np, cv2, PIL.Image available). `images` maps every "
    "image name ('<image 1>', '<sub-image 2>', …) to a BGR numpy array and `image` is the first input image; "
    "the same images are files in the working directory (image_1.png, sub_image_2.png). Call save(array) "
    "or write a .png/.jpg file to return a processed image: each becomes a new <sub-image N>. Printed "
    "output and the value of the last expression are returned."
)

TOOLS = [
    ToolSpec("code", "vision", CODE_DESCRIPTION, CodeArgs, modes=frozenset({"deep_research", "general"})),
]
