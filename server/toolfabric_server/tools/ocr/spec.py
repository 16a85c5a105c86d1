"""The `ocr` tool as the gateway advertises it (pydantic only: the gateway never imports Tesseract)."""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from toolfabric.v1.names import DEEP_RESEARCH, GENERAL
from toolfabric_server.common.tools import ToolSpec


class OcrArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    image: str = Field(
        default="<image>", max_length=40, validation_alias=AliasChoices("image", "image_path", "img"),
        description="Image to read: '<image>' (the first input), '<image 2>', '<sub-image 1>' (e.g. a crop), …",
    )
    lang: str | None = Field(
        default=None, pattern=r"^[a-z_]{3,16}(\+[a-z_]{3,16}){0,3}$",
        description="Tesseract language(s), e.g. 'eng' or 'eng+deu'; default: the server's first language",
    )


TOOLS = (
    ToolSpec(
        name="ocr",
        service="ocr",
        description=(
            "Read the printed text in an image (signs, labels, captions, documents): returns each line of "
            "text with its pixel box [x1, y1, x2, y2]. Crop or zoom into small text first for better results."
        ),
        arguments=OcrArgs,
        aliases=("read_text",),
        modes=frozenset({DEEP_RESEARCH, GENERAL}),
    ),
)
