"""Every image tool on extreme shapes (a 20000x3 strip, its 3x20000 twin, a 1x1 pixel) through the
service's real task entry point: a result, or a clear invalid_argument observation, never `internal`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.vision.conftest import MakeContext, Worker, png
from toolfabric_server.model.baseline.policy import ENHANCE_CODE, INSPECT_CODE
from toolfabric_server.tools.vision import code_tool
from toolfabric_server.tools.vision.tasks import HANDLERS

SHAPES = {"20000x3": (3, 20000), "3x20000": (20000, 3), "1x1": (1, 1)}
ARGS: dict[str, dict[str, Any]] = {
    "code": {"code": "print(image.shape, float(image.mean()))\nsave(255 - image)"},
    "crop": {"image": "<image 1>", "bbox": [0.0, 0.0, 1.0, 1.0], "coords": "relative"},
    "zoom_in": {"image": "<image 1>", "bbox": [0.0, 0.0, 1.0, 1.0], "coords": "relative"},
    "image_zoom_in_tool": {"bbox_2d": [0, 0, 1000, 1000], "img_idx": 0},
    "resize": {"image": "<image 1>", "scale": 2.0},
    "rotate": {"image": "<image 1>", "angle": 30},
    "flip": {"image": "<image 1>", "direction": "horizontal"},
    "adjust": {"image": "<image 1>", "brightness": 20, "contrast": 1.5, "gamma": 1.2},
    "equalize": {"image": "<image 1>"},
    "sharpen": {"image": "<image 1>"},
    "denoise": {"image": "<image 1>", "method": "nlmeans"},
    "grayscale": {"image": "<image 1>"},
    "threshold": {"image": "<image 1>", "method": "adaptive"},
    "edges": {"image": "<image 1>"},
    "draw": {"image": "<image 1>", "marks": [{"xy": [0.1, 0.1, 0.9, 0.9]}], "coords": "relative"},
}

@pytest.fixture(scope="module", autouse=True)
def _stop_the_worker_sandbox() -> Iterator[None]:
    yield
    code_tool.SANDBOX.close()  # the `code` task starts the worker's sandbox zygote on first use


def _image(shape: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(1)
    return png(rng.integers(0, 255, (*shape, 3), dtype=np.uint8))


def test_every_tool_has_extreme_shape_arguments() -> None:
    assert set(ARGS) == set(HANDLERS)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("tool", sorted(ARGS))
def test_every_image_tool_answers_extreme_shapes_without_an_internal_error(
        worker: Worker, context: MakeContext, tool: str, shape: str) -> None:
    ctx = context({"<image 1>": _image(SHAPES[shape])})
    result = worker.run(tool, ARGS[tool], ctx)
    assert result.ok or result.error_kind == "invalid_argument", (result.error_kind, result.text)
    if not result.ok:
        assert result.text and "Traceback" not in result.text


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("step", ["inspect", "enhance"])
def test_the_baseline_policys_own_code_steps_run_on_extreme_shapes(worker: Worker, context: MakeContext,
                                                                    step: str, shape: str) -> None:
    source = INSPECT_CODE if step == "inspect" else ENHANCE_CODE.format(name="<image 1>")
    ctx = context({"<image 1>": _image(SHAPES[shape])})
    result = worker.run("code", {"code": source}, ctx)
    assert result.ok, result.text
    assert len(result.images) == 1
