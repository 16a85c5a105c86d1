"""Vision tools as the gateway advertises them (arguments and descriptions only).

Imported by the gateway: pydantic only, no OpenCV. Every fixed operation takes `image`, the name
of any image the trajectory has (inputs or earlier results), and returns one new image.
Boxes follow `toolfabric_server.tools.vision.boxes`: [x1, y1, x2, y2] in the units `coords` names.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from toolfabric.v1.names import DEEP_RESEARCH, GENERAL
from toolfabric_server.common.tools import ToolSpec
from toolfabric_server.tools.vision.boxes import Coords

WORKING = frozenset({DEEP_RESEARCH, GENERAL})

IMAGE_FIELD = Field(
    default="<image>",
    max_length=40,
    validation_alias=AliasChoices("image", "image_path", "img"),
    description="Image to work on: '<image>' (the first input), '<image 2>', '<sub-image 1>', …",
)


def _coords_field() -> Any:
    return Field(
        default="pixel",
        description="Units of the coordinates: 'pixel' (default), 'qwen1000' (0-1000 relative to width/height) "
        "or 'normalized' (0-1 relative)",
    )


def _numbers_from_text(value: Any) -> Any:
    """Models sometimes send a box as the string '[10, 20, 30, 40]'."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CodeArgs(_Args):
    code: str = Field(min_length=1, max_length=100_000, description="Python source to run on the images")


class BoxArgs(_Args):
    image: str = IMAGE_FIELD
    bbox: list[float] = Field(
        min_length=4, max_length=4, validation_alias=AliasChoices("bbox", "bbox_2d"),
        description="[x1, y1, x2, y2]: left, top, right, bottom",
    )
    coords: Coords = _coords_field()

    _parse_bbox = field_validator("bbox", mode="before")(_numbers_from_text)


class CropArgs(BoxArgs):
    pass


class ZoomArgs(BoxArgs):
    factor: float | None = Field(
        default=None, ge=1.0, le=8.0,
        description="Enlargement factor; by default the region is enlarged to about 1024 px on its longer side",
    )


class QwenZoomArgs(_Args):
    """Qwen3-VL's own zoom-in tool: relative 0-1000 box, image by index."""

    bbox_2d: list[float] = Field(
        min_length=4, max_length=4, description="[x1, y1, x2, y2] in 0-1000 coordinates relative to the image"
    )
    label: str = Field(default="", max_length=200, description="Name of the object being zoomed in on")
    img_idx: int = Field(
        default=0, ge=0, description="Index of the image (0 = first image, later images in the order they appeared)"
    )

    _parse_bbox = field_validator("bbox_2d", mode="before")(_numbers_from_text)


class ResizeArgs(_Args):
    image: str = IMAGE_FIELD
    width: int | None = Field(default=None, ge=1, le=20_000, description="New width in pixels")
    height: int | None = Field(default=None, ge=1, le=20_000, description="New height in pixels")
    scale: float | None = Field(default=None, gt=0, le=8.0, description="Scale factor instead of a size")

    @model_validator(mode="after")
    def _one_way(self) -> ResizeArgs:
        if self.scale is None and self.width is None and self.height is None:
            raise ValueError("give width and/or height, or scale")
        if self.scale is not None and (self.width is not None or self.height is not None):
            raise ValueError("give either scale or width/height, not both")
        return self


class RotateArgs(_Args):
    image: str = IMAGE_FIELD
    angle: float = Field(ge=-3600, le=3600, description="Degrees, counter-clockwise (negative = clockwise)")
    expand: bool = Field(default=True, description="Grow the canvas so no corner is cut off")
    fill: str = Field(default="black", max_length=20, description="Colour of the new corners: a name or #rrggbb")


class FlipArgs(_Args):
    image: str = IMAGE_FIELD
    direction: Literal["horizontal", "vertical", "both"] = Field(
        default="horizontal", description="'horizontal' mirrors left-right, 'vertical' top-bottom"
    )


class AdjustArgs(_Args):
    image: str = IMAGE_FIELD
    brightness: float = Field(default=0.0, ge=-255, le=255, description="Added to every pixel (-255..255)")
    contrast: float = Field(default=1.0, ge=0.0, le=10.0, description="Multiplies the spread around mid-grey")
    gamma: float = Field(default=1.0, gt=0.0, le=10.0, description=">1 brightens shadows, <1 darkens them")


class EqualizeArgs(_Args):
    image: str = IMAGE_FIELD
    method: Literal["clahe", "global"] = Field(
        default="clahe", description="'clahe' (local, adaptive; good for uneven light) or 'global'"
    )
    clip_limit: float = Field(default=2.0, gt=0, le=40, description="CLAHE contrast limit")
    tile_grid: int = Field(default=8, ge=1, le=64, description="CLAHE tiles per side")


class SharpenArgs(_Args):
    image: str = IMAGE_FIELD
    amount: float = Field(default=1.0, gt=0, le=10, description="Strength of the unsharp mask")
    radius: float = Field(default=2.0, gt=0, le=50, description="Blur radius in pixels; larger sharpens coarser detail")


class DenoiseArgs(_Args):
    image: str = IMAGE_FIELD
    method: Literal["bilateral", "nlmeans", "median", "gaussian"] = Field(
        default="bilateral", description="'bilateral' (edge-preserving, fast), 'nlmeans' (best, slow, up to 4 MP), "
        "'median' (salt-and-pepper noise), 'gaussian' (plain blur)",
    )
    strength: float = Field(default=10.0, gt=0, le=100, description="Filter strength")


class GrayscaleArgs(_Args):
    image: str = IMAGE_FIELD


class ThresholdArgs(_Args):
    image: str = IMAGE_FIELD
    method: Literal["otsu", "adaptive", "fixed"] = Field(
        default="otsu", description="'otsu' (automatic), 'adaptive' (uneven light, text) or 'fixed' (uses value)"
    )
    value: int = Field(default=128, ge=0, le=255, description="Threshold for method 'fixed'")
    invert: bool = Field(default=False, description="Dark pixels become white")
    block_size: int = Field(default=31, ge=3, le=501, description="Neighbourhood size for 'adaptive'")
    offset: float = Field(default=5.0, ge=-100, le=100, description="Subtracted from the local mean for 'adaptive'")


class EdgesArgs(_Args):
    image: str = IMAGE_FIELD
    method: Literal["canny", "sobel"] = Field(default="canny", description="'canny' (thin edges) or 'sobel' (gradient)")
    low: float | None = Field(default=None, ge=0, le=1000, description="Canny low threshold (automatic if omitted)")
    high: float | None = Field(default=None, ge=0, le=1000, description="Canny high threshold (automatic if omitted)")


class MarkArgs(_Args):
    kind: Literal["box", "point", "line"] = Field(default="box", description="What to draw")
    xy: list[float] = Field(
        min_length=2, max_length=4, validation_alias=AliasChoices("xy", "bbox", "bbox_2d", "point"),
        description="box or line: [x1, y1, x2, y2]; point: [x, y]",
    )
    label: str = Field(default="", max_length=80, description="Text written next to the mark")
    colour: str = Field(default="red", max_length=20, validation_alias=AliasChoices("colour", "color"),
                        description="A colour name or #rrggbb")

    _parse_xy = field_validator("xy", mode="before")(_numbers_from_text)


class DrawArgs(_Args):
    image: str = IMAGE_FIELD
    marks: list[MarkArgs] = Field(min_length=1, max_length=50, description="Boxes, points and lines to draw")
    coords: Coords = _coords_field()
    thickness: int | None = Field(default=None, ge=1, le=50,
                                  description="Line width in pixels (scaled to the image by default)")


def _op(name: str, description: str, args: type[BaseModel], aliases: tuple[str, ...] = ()) -> ToolSpec:
    return ToolSpec(name, "vision", description, args, aliases=aliases, modes=WORKING)


CODE_DESCRIPTION = (
    "Run Python on the trajectory's images (numpy as np, cv2, PIL.Image available). `images` maps every "
    "image name ('<image 1>', '<sub-image 2>', …) to a BGR numpy array and `image` is the first input image; "
    "the same images are files in the working directory (image_1.png, sub_image_2.png). Call save(array) "
    "or save(array, 'label'), write a .png/.jpg file, or end with an image expression to return a processed "
    "image: each becomes a new <sub-image N>. Printed output and the value of the last expression are "
    "returned. No network; each call starts fresh (nothing is kept between calls)."
)

TOOLS = [
    ToolSpec("code", "vision", CODE_DESCRIPTION, CodeArgs, modes=WORKING),
    _op("crop", "Cut a region out of an image at full resolution. Boxes are clamped to the image and grown to "
        "a minimum size.", CropArgs),
    _op("zoom_in", "Crop a region and enlarge it (to about 1024 px on its longer side, at most 4x) to read small "
        "text or inspect details. Accepts bbox_2d as DeepEyes does (pixels).", ZoomArgs),
    _op("image_zoom_in_tool", "Zoom in on a region of an image (Qwen3-VL convention): bbox_2d in 0-1000 relative "
        "coordinates, img_idx selects the image (0 = the first).", QwenZoomArgs),
    _op("resize", "Resize an image to a width and/or height (keeping the aspect ratio if only one is given) "
        "or by a scale factor.", ResizeArgs),
    _op("rotate", "Rotate an image by any angle, counter-clockwise; the canvas grows to fit by default.", RotateArgs),
    _op("flip", "Mirror an image horizontally, vertically or both.", FlipArgs),
    _op("adjust", "Change brightness, contrast and gamma of an image.", AdjustArgs,
        aliases=("adjust_brightness_contrast",)),
    _op("equalize", "Equalise the histogram (CLAHE by default) to reveal detail in dark or flat areas.",
        EqualizeArgs),
    _op("sharpen", "Sharpen an image (unsharp mask).", SharpenArgs),
    _op("denoise", "Reduce noise in an image.", DenoiseArgs),
    _op("grayscale", "Convert an image to grayscale.", GrayscaleArgs),
    _op("threshold", "Binarise an image to black and white (Otsu, adaptive or a fixed threshold), e.g. for text.",
        ThresholdArgs, aliases=("binarize",)),
    _op("edges", "Detect edges (Canny or Sobel).", EdgesArgs, aliases=("detect_edges",)),
    _op("draw", "Draw labelled boxes, points and lines on an image to mark findings.", DrawArgs,
        aliases=("annotate",)),
]
