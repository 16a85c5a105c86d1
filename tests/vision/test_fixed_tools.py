"""The fixed tools through the service's real task entry point, with images in real Redis."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from tests.vision.conftest import MakeContext, Worker, jpeg, png, scene
from toolfabric_server.common import images
from toolfabric_server.common.tools import ToolResult
from toolfabric_server.tools.vision.spec import TOOLS
from toolfabric_server.tools.vision.store import ImageStore
from toolfabric_server.tools.vision.tasks import HANDLERS


def decoded(store: ImageStore, result: ToolResult, index: int = 0) -> np.ndarray:
    assert result.ok, result.text
    return images.decode_bgr(store.data(result.images[index].ref), 40_000_000)


def test_every_advertised_tool_has_a_handler() -> None:
    assert {s.name for s in TOOLS} == set(HANDLERS)


def test_crop_returns_a_new_stored_image_of_the_box(worker: Worker, context: MakeContext) -> None:
    ctx = context({"<image 1>": png(scene())})
    result = worker.run("crop", {"image": "<image>", "bbox": [340, 20, 440, 120]}, ctx)
    out = decoded(worker.store, result)
    assert out.shape == (100, 100, 3) and out[50, 50].tolist() == [0, 0, 255]
    assert (result.images[0].width, result.images[0].height) == (100, 100)
    assert "crop of <image 1> [340, 20, 440, 120]" == result.images[0].origin
    assert "100x100" in result.text


def test_crop_works_on_an_earlier_result_not_only_the_original(worker: Worker,
                                                               context: MakeContext) -> None:
    ctx = context({"<image 1>": png(scene()), "<sub-image 1>": png(np.full((50, 80, 3), 7, np.uint8))})
    out = decoded(worker.store, worker.run("crop", {"image": "sub-image 1", "bbox": [0, 0, 40, 40]}, ctx))
    assert out.shape == (40, 40, 3) and out[0, 0].tolist() == [7, 7, 7]


def test_crop_rejects_box_outside_image(worker: Worker, context: MakeContext) -> None:
    result = worker.run("crop", {"bbox": [700, 500, 800, 600]}, context({"<image 1>": png(scene())}))
    assert not result.ok and result.error_kind == "invalid_argument"
    assert "lies outside <image 1>, which is 640x480 pixels" in result.text


def test_unknown_image_name_lists_the_images_the_trajectory_has(worker: Worker,
                                                                 context: MakeContext) -> None:
    ctx = context({"<image 1>": png(scene())})
    result = worker.run("crop", {"image": "<sub-image 9>", "bbox": [0, 0, 10, 10]}, ctx)
    assert not result.ok and result.error_kind == "unknown_image"
    assert "<sub-image 9>" in result.text and "<image 1>" in result.text


def test_not_an_image_name_at_all_is_an_unknown_image(worker: Worker, context: MakeContext) -> None:
    result = worker.run("grayscale", {"image": "/etc/passwd"}, context({"<image 1>": png(scene())}))
    assert result.error_kind == "unknown_image" and "is not an image name" in result.text


def test_expired_blob_is_reported_as_unavailable_input(worker: Worker, context: MakeContext,
                                                       redis_client: Any) -> None:
    ctx = context({"<image 1>": png(scene())})
    redis_client.flushdb()
    result = worker.run("grayscale", {}, ctx)
    assert result.error_kind == "invalid_image" and "no longer available" in result.text


def test_corrupt_blob_is_reported_as_an_invalid_image(worker: Worker, context: MakeContext) -> None:
    result = worker.run("grayscale", {}, context({"<image 1>": jpeg(scene())[:3000]}))
    assert result.error_kind == "invalid_image" and "truncated" in result.text


def test_zoom_in_accepts_deepeyes_pixel_bbox_2d(worker: Worker, context: MakeContext) -> None:
    result = worker.run("zoom_in", {"bbox_2d": [340, 20, 440, 120]}, context({"<image 1>": png(scene())}))
    out = decoded(worker.store, result)
    assert out.shape == (400, 400, 3)  # 100 px enlarged at most 4x
    assert result.data["factor"] == 4.0


def test_qwen_zoom_in_tool_takes_relative_boxes_and_image_index(worker: Worker,
                                                                context: MakeContext) -> None:
    ctx = context({"<image 1>": png(np.zeros((100, 100, 3), np.uint8)), "<sub-image 1>": png(scene(1000, 500))})
    args = {"bbox_2d": [0, 0, 500, 1000], "label": "blue half", "img_idx": 1}
    result = worker.run("image_zoom_in_tool", args, ctx)
    out = decoded(worker.store, result)
    assert result.data["box"] == [0, 0, 500, 500] and result.data["source"] == "<sub-image 1>"
    assert out.shape == (1024, 1024, 3) and out[10, 10].tolist() == [255, 0, 0]
    assert "blue half" in result.images[0].origin


def test_qwen_zoom_in_tool_rejects_an_index_past_the_last_image(worker: Worker,
                                                                context: MakeContext) -> None:
    ctx = context({"<image 1>": png(scene())})
    result = worker.run("image_zoom_in_tool", {"bbox_2d": [0, 0, 10, 10], "img_idx": 3}, ctx)
    assert result.error_kind == "unknown_image" and "0: <image 1>" in result.text


def test_box_given_as_a_string_is_parsed(worker: Worker, context: MakeContext) -> None:
    result = worker.run("crop", {"bbox": "[0, 0, 64, 64]"}, context({"<image 1>": png(scene())}))
    assert result.ok and result.images[0].width == 64


def test_malformed_arguments_name_the_argument(worker: Worker, context: MakeContext) -> None:
    result = worker.run("crop", {"bbox": [1, 2, 3]}, context({"<image 1>": png(scene())}))
    assert result.error_kind == "invalid_argument" and "bbox" in result.text


def test_rotate_of_a_large_photo_comes_back_as_jpeg(worker: Worker, context: MakeContext) -> None:
    photo = cv2.resize(scene(), (2600, 2000))
    result = worker.run("rotate", {"angle": 15}, context({"<image 1>": jpeg(photo)}))
    assert result.ok and result.images[0].mime_type == "image/jpeg"
    assert result.images[0].width > 2600


@pytest.mark.parametrize(("tool", "arguments"), [
    ("resize", {"width": 320}), ("flip", {"direction": "vertical"}), ("adjust", {"brightness": 20}),
    ("adjust_brightness_contrast", {"contrast": 1.5}), ("equalize", {}), ("sharpen", {}),
    ("denoise", {"method": "median"}), ("grayscale", {}), ("binarize", {"method": "adaptive"}),
    ("edges", {}), ("draw", {"marks": [{"bbox": [10, 10, 100, 100], "label": "here", "color": "green"}]}),
])
def test_each_operation_returns_one_new_image(worker: Worker, context: MakeContext, tool: str,
                                              arguments: dict[str, Any]) -> None:
    result = worker.run(tool, arguments, context({"<image 1>": jpeg(scene())}))
    assert result.ok, result.text
    assert len(result.images) == 1 and result.images[0].ref.startswith("sha256:")
    assert decoded(worker.store, result).size > 0


def test_spec_module_stays_light_for_the_gateway() -> None:
    """The gateway imports the specs to advertise tools; that must not pull in OpenCV or numpy."""
    import subprocess
    import sys

    probe = "import sys, toolfabric_server.tools.vision.spec; print(sorted({'cv2', 'numpy'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_tool_names_follow_the_model_conventions() -> None:
    names = {s.name for s in TOOLS} | {a for s in TOOLS for a in s.aliases}
    assert {"code", "crop", "zoom_in", "image_zoom_in_tool", "rotate", "draw", "binarize"} <= names
    qwen = next(s for s in TOOLS if s.name == "image_zoom_in_tool").function_schema()["function"]["parameters"]
    assert set(qwen["properties"]) == {"bbox_2d", "label", "img_idx"} and qwen["required"] == ["bbox_2d"]
