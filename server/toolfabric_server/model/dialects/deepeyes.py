"""DeepEyes (Qwen2.5-VL-7B trained to "think with images"): pixel boxes in Qwen's <tool_call> syntax.

The model writes `<think>…</think>` then either `<tool_call>{"name": "image_zoom_in_tool",
"arguments": {"bbox_2d": [x1, y1, x2, y2], "label": …}}</tool_call>` with the box in pixels of the
original image, or `<answer>…</answer>`; tool results come back in `<tool_response>…</tool_response>`
inside a user turn. Its two tools are converted at this edge onto the catalog's: `image_zoom_in_tool`
→ `zoom_in` (pixel box on the first input image, as DeepEyes always zooms into the original) and
`image_rotate_tool` → `rotate`. Any other call goes through unchanged.
"""

from __future__ import annotations

from typing import Any

from toolfabric_server.model.chat_template import ChatTemplate, Qwen25VLTemplate
from toolfabric_server.model.dialects.base import (
    TOOL_CALL,
    ParsedStep,
    RawCall,
    TaggedDialect,
    finish,
    last_answer,
    parse_json_call,
    report_unclosed,
    split_think,
)

ORIGINAL_IMAGE = "<image 1>"
ZOOM, ROTATE = "image_zoom_in_tool", "image_rotate_tool"
# DeepEyes' own tool declarations, as the model was trained on them.
ZOOM_DECLARATION: dict[str, Any] = {"type": "function", "function": {
        "name": ZOOM,
        "description": "Zoom in on a specific region of an image by cropping it based on a bounding box (bbox) "
                       "and an optional object label.",
        "parameters": {"type": "object", "properties": {
            "bbox_2d": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
                        "description": "The bounding box of the region to zoom in, as [x1, y1, x2, y2], where "
                                       "(x1, y1) is the top-left corner and (x2, y2) is the bottom-right corner, "
                                       "in pixels."},
            "label": {"type": "string", "description": "The name or label of the object in the specified bounding "
                                                       "box (optional)."}},
            "required": ["bbox_2d"]}}}
ROTATE_DECLARATION: dict[str, Any] = {"type": "function", "function": {
        "name": ROTATE,
        "description": "Rotate an image by a specified angle (clockwise or counterclockwise).",
        "parameters": {"type": "object", "properties": {
            "angle": {"type": "integer", "description": "Rotation angle in degrees. Positive values rotate "
                                                        "counterclockwise; negative values rotate clockwise."}},
            "required": ["angle"]}}}
# Catalog tools the two declarations stand in for (left out of the listing to avoid two zoom conventions).
_REPLACED = {"zoom_in", "image_zoom_in_tool", "rotate"}


def to_catalog(call: RawCall) -> RawCall:
    """A DeepEyes call as the catalog's tool; arguments the converter does not know are kept for validation."""
    args = dict(call.arguments)
    if call.name == ZOOM:
        args.pop("label", None)  # DeepEyes labels the box for itself; the crop does not need it
        box = args.pop("bbox_2d", None)
        return RawCall("zoom_in", {"image": ORIGINAL_IMAGE, "coords": "pixel", **args,
                                   **({"bbox": box} if box is not None else {})})
    if call.name == ROTATE:
        return RawCall("rotate", {"image": ORIGINAL_IMAGE, **args})
    return call


def parse_step(text: str) -> ParsedStep:
    """One DeepEyes model step; never raises."""
    step = ParsedStep()
    body = split_think(text, step)
    for i, match in enumerate(TOOL_CALL.finditer(body), start=1):
        call = parse_json_call(match.group(1), i, step.problems)
        if call:
            step.calls.append(to_catalog(call))
    answer = last_answer(body)
    if answer and answer.closed:  # a cut-off answer does not end the run: report_unclosed tells the model
        step.answer = answer.text
    report_unclosed(body, ("tool_call", "answer"), step.problems)
    return finish(step)


class DeepEyesDialect(TaggedDialect):
    name = "deepeyes"
    template: ChatTemplate = Qwen25VLTemplate()
    stop: tuple[str, ...] = ("<tool_response>",)
    observation_tags = ("<tool_response>", "</tool_response>")

    def parse(self, text: str) -> ParsedStep:
        return parse_step(text)

    def declare_tools(self, schemas: list[dict[str, Any]]) -> list[dict[str, Any]]:
        offered = {s["function"]["name"] for s in schemas}
        # Zoom and rotate are declared in DeepEyes' own words wherever the mode offers them.
        own = [ZOOM_DECLARATION] if offered & {"zoom_in", "image_zoom_in_tool"} else []
        own += [ROTATE_DECLARATION] if "rotate" in offered else []
        return own + [s for s in schemas if s["function"]["name"] not in _REPLACED]
