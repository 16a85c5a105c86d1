"""Tool handlers of the fixed operations: resolve the image, run the op, store the result.

Every handler works on any image of the trajectory (inputs and earlier results alike) and
answers with one new image plus a line telling the model what was done, including any
adjustment to its request (a clamped or grown box).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolfabric_server.common import images
from toolfabric_server.common.errors import InvalidImage, ToolResourceExhausted, UnknownImage
from toolfabric_server.common.tools import ToolContext, ToolResult, canonical_image_name
from toolfabric_server.tools.vision import ops, spec
from toolfabric_server.tools.vision.boxes import Coords, Fitted, PixelBox, fit_box
from toolfabric_server.tools.vision.draw import Mark, draw
from toolfabric_server.tools.vision.settings import VisionSettings
from toolfabric_server.tools.vision.store import ImageStore, Vision


@dataclass(frozen=True)
class Source:
    name: str
    array: np.ndarray

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class Located:
    """An image known by name and size but not decoded: crops and zooms decode only their box."""

    name: str
    ref: str
    width: int
    height: int

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def region(self, box: PixelBox, store: ImageStore) -> np.ndarray:
        return store.region(self.ref, (box.x1, box.y1, box.x2, box.y2), self.name)


def load(name: str, ctx: ToolContext, store: ImageStore) -> Source:
    ref = store.resolve(name, ctx)
    canonical = canonical_image_name(name)
    return Source(canonical, store.bgr(ref, canonical))


def locate(name: str, ctx: ToolContext, store: ImageStore) -> Located:
    ref = store.resolve(name, ctx)
    canonical = canonical_image_name(name)
    return Located(canonical, ref, *store.size(ref, canonical))


def locate_by_index(index: int, ctx: ToolContext, store: ImageStore) -> Located:
    """Qwen3-VL's img_idx: 0 is the first image, later ones in the order the trajectory got them."""
    named = store.trajectory_images(ctx)
    if index >= len(named):
        listing = ", ".join(f"{i}: {name}" for i, (name, _) in enumerate(named)) or "none"
        raise UnknownImage(f"img_idx {index} is out of range; this trajectory's images are {listing}")
    name, ref = named[index]
    return Located(name, ref, *store.size(ref, name))


def encode(arr: np.ndarray, cfg: VisionSettings) -> bytes:
    """PNG (lossless) unless the result is a large colour image, where JPEG is ~15x faster and smaller."""
    h, w = arr.shape[:2]
    if arr.ndim == 3 and h * w > cfg.png_max_pixels:
        return images.encode_jpeg(arr, cfg.jpeg_quality)
    return images.encode_png(arr, cfg.png_compression, fast=cfg.png_encoder == "fpng")


def emit(arr: np.ndarray, origin: str, summary: str, data: dict[str, object], vision: Vision) -> ToolResult:
    try:
        new = vision.store.put(encode(arr, vision.cfg), origin)
    except InvalidImage as exc:  # e.g. over the byte limit: the model should ask for less
        raise ToolResourceExhausted(f"the result cannot be returned: {exc}") from None
    data = {**data, "width": new.width, "height": new.height}
    return ToolResult(text=f"{summary}: {new.width}x{new.height} image.", data=data, images=[new])


def _fit(src: Located, bbox: list[float], coords: Coords, cfg: VisionSettings) -> Fitted:
    return fit_box(bbox, coords, src.width, src.height, min_side=cfg.crop_min_side,
                   max_aspect=cfg.crop_max_aspect_ratio, image_name=src.name)


def _notes(fitted: Fitted) -> str:
    return "".join(f" ({note})" for note in fitted.notes)


def crop(args: spec.CropArgs, ctx: ToolContext, vision: Vision) -> ToolResult:
    src = locate(args.image, ctx, vision.store)
    fitted = _fit(src, args.bbox, args.coords, vision.cfg)
    box = fitted.box.as_list()
    return emit(src.region(fitted.box, vision.store), f"crop of {src.name} {box}",
                f"Cropped {src.name} ({src.size}) to pixels {box}{_notes(fitted)}",
                {"source": src.name, "box": box, "notes": list(fitted.notes)}, vision)


def _zoom(src: Located, bbox: list[float], coords: Coords, factor: float | None, vision: Vision,
          label: str = "") -> ToolResult:
    cfg = vision.cfg
    fitted = _fit(src, bbox, coords, cfg)
    scale = ops.zoom_factor(fitted.box, cfg.zoom_target_side, cfg.max_zoom, factor)
    out = ops.enlarge(src.region(fitted.box, vision.store), scale, vision.common.max_image_pixels)
    box = fitted.box.as_list()
    what = f" on {label!r}" if label else ""
    return emit(out, f"zoom {scale:.2g}x{what} of {src.name} {box}",
                f"Zoomed {scale:.2g}x{what} into {src.name} ({src.size}) at pixels {box}{_notes(fitted)}",
                {"source": src.name, "box": box, "factor": round(scale, 4), "notes": list(fitted.notes)}, vision)


def zoom_in(args: spec.ZoomArgs, ctx: ToolContext, vision: Vision) -> ToolResult:
    return _zoom(locate(args.image, ctx, vision.store), args.bbox, args.coords, args.factor, vision)


def qwen_zoom_in(args: spec.QwenZoomArgs, ctx: ToolContext, vision: Vision) -> ToolResult:
    return _zoom(locate_by_index(args.img_idx, ctx, vision.store), args.bbox_2d, "qwen1000", None, vision, args.label)


def resize(args: spec.ResizeArgs, ctx: ToolContext, vision: Vision) -> ToolResult:
    src = load(args.image, ctx, vision.store)
    out = ops.resize(src.array, args.width, args.height, args.scale, vision.common.max_image_pixels)
    return emit(out, f"resize of {src.name}", f"Resized {src.name} ({src.size})", {"source": src.name}, vision)


def rotate(args: spec.RotateArgs, ctx: ToolContext, vision: Vision) -> ToolResult:
    src = load(args.image, ctx, vision.store)
    out = ops.rotate(src.array, args.angle, args.expand, ops.colour(args.fill), vision.common.max_image_pixels)
    return emit(out, f"{args.angle:g}° rotation of {src.name}",
                f"Rotated {src.name} ({src.size}) by {args.angle:g}° counter-clockwise", {"source": src.name}, vision)


def flip(args: spec.FlipArgs, ctx: ToolContext, vision: Vision) -> ToolResult:
    src = load(args.image, ctx, vision.store)
    return emit(ops.flip(src.array, args.direction), f"{args.direction} flip of {src.name}",
                f"Flipped {src.name} ({src.size}) {args.direction}ly".replace("bothly", "both ways"),
                {"source": src.name}, vision)


def adjust(args: spec.AdjustArgs, ctx: ToolContext, vision: Vision) -> ToolResult:
    src = load(args.image, ctx, vision.store)
    out = ops.adjust(src.array, args.brightness, args.contrast, args.gamma)
    what = f"brightness {args.brightness:+g}, contrast x{args.contrast:g}, gamma {args.gamma:g}"
    return emit(out, f"{what} of {src.name}", f"Adjusted {src.name} ({src.size}): {what}", {"source": src.name}, vision)


def equalize(args: spec.EqualizeArgs, ctx: ToolContext, vision: Vision) -> ToolResult:
    src = load(args.image, ctx, vision.store)
    out = ops.equalize(src.array, args.method, args.clip_limit, args.tile_grid)
    return emit(out, f"{args.method} equalisation of {src.name}",
                f"Equalised {src.name} ({src.size}) with {args.method}", {"source": src.name}, vision)


def sharpen(args: spec.SharpenArgs, ctx: ToolContext, vision: Vision) -> ToolResult:
    src = load(args.image, ctx, vision.store)
    return emit(ops.sharpen(src.array, args.amount, args.radius), f"sharpened {src.name}",
                f"Sharpened {src.name} ({src.size})", {"source": src.name}, vision)


def denoise(args: spec.DenoiseArgs, ctx: ToolContext, vision: Vision) -> ToolResult:
    src = load(args.image, ctx, vision.store)
    return emit(ops.denoise(src.array, args.method, args.strength), f"{args.method} denoising of {src.name}",
                f"Denoised {src.name} ({src.size}) with {args.method}", {"source": src.name}, vision)


def grayscale(args: spec.GrayscaleArgs, ctx: ToolContext, vision: Vision) -> ToolResult:
    src = load(args.image, ctx, vision.store)
    return emit(ops.grayscale(src.array), f"grayscale of {src.name}",
                f"Converted {src.name} ({src.size}) to grayscale", {"source": src.name}, vision)


def threshold(args: spec.ThresholdArgs, ctx: ToolContext, vision: Vision) -> ToolResult:
    src = load(args.image, ctx, vision.store)
    out = ops.threshold(src.array, args.method, args.value, args.invert, args.block_size, args.offset)
    return emit(out, f"{args.method} threshold of {src.name}",
                f"Binarised {src.name} ({src.size}) with {args.method} thresholding", {"source": src.name}, vision)


def edges(args: spec.EdgesArgs, ctx: ToolContext, vision: Vision) -> ToolResult:
    src = load(args.image, ctx, vision.store)
    return emit(ops.edges(src.array, args.method, args.low, args.high), f"{args.method} edges of {src.name}",
                f"Detected {args.method} edges in {src.name} ({src.size})", {"source": src.name}, vision)


def draw_marks(args: spec.DrawArgs, ctx: ToolContext, vision: Vision) -> ToolResult:
    src = load(args.image, ctx, vision.store)
    marks = [Mark(m.kind, m.xy, ops.colour(m.colour), m.label) for m in args.marks]
    out = draw(src.array, marks, args.coords, args.thickness)
    return emit(out, f"{len(marks)} mark(s) on {src.name}", f"Drew {len(marks)} mark(s) on {src.name} ({src.size})",
                {"source": src.name}, vision)
