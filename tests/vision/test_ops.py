"""What each fixed operation does to pixels (pure functions, no Redis)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.vision.conftest import scene
from toolfabric_server.common.errors import ToolInputError
from toolfabric_server.tools.vision import ops
from toolfabric_server.tools.vision.boxes import PixelBox
from toolfabric_server.tools.vision.draw import Mark, draw

MAX = 40_000_000


def test_crop_returns_exactly_the_box_region() -> None:
    img = scene()
    out = ops.crop(img, PixelBox(340, 20, 440, 120))
    assert out.shape == (100, 100, 3)
    assert out[50, 50].tolist() == [0, 0, 255]  # inside the red square


def test_zoom_enlarges_to_the_target_side_but_not_beyond_the_maximum() -> None:
    box = PixelBox(0, 0, 100, 50)
    assert ops.zoom_factor(box, 1024, 4.0) == 4.0
    assert ops.zoom_factor(PixelBox(0, 0, 512, 100), 1024, 4.0) == 2.0
    assert ops.zoom_factor(PixelBox(0, 0, 2000, 100), 1024, 4.0) == 1.0  # never shrinks
    out = ops.zoom(scene(), box, 4.0, MAX)
    assert out.shape == (200, 400, 3)


def test_resize_keeps_aspect_ratio_when_one_side_is_given() -> None:
    assert ops.resize(scene(640, 480), 320, None, None, MAX).shape == (240, 320, 3)
    assert ops.resize(scene(640, 480), None, None, 1.5, MAX).shape == (720, 960, 3)


def test_resize_refuses_results_over_the_pixel_limit() -> None:
    with pytest.raises(ToolInputError, match="over the limit"):
        ops.resize(scene(640, 480), None, None, 8.0, 1_000_000)


def test_rotate_by_any_angle_expands_the_canvas_to_keep_the_corners() -> None:
    out = ops.rotate(scene(400, 200), 30, True, (0, 0, 0), MAX)
    assert out.shape[:2] == (374, 447)  # 400cos30+200sin30 by 400sin30+200cos30
    assert out[0, 0].tolist() == [0, 0, 0]  # new corner filled


def test_rotate_by_right_angles_is_exact() -> None:
    img = scene(64, 48)
    assert np.array_equal(ops.rotate(img, 90, True, (0, 0, 0), MAX), cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE))
    assert np.array_equal(ops.rotate(img, -90, True, (0, 0, 0), MAX), cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE))
    assert np.array_equal(ops.rotate(img, 360, True, (0, 0, 0), MAX), img)


def test_flip_mirrors_left_and_right() -> None:
    img = scene()
    assert np.array_equal(ops.flip(img, "horizontal")[:, ::-1], img)


def test_adjust_brightness_contrast_and_gamma() -> None:
    grey = np.full((4, 4, 3), 100, np.uint8)
    assert ops.adjust(grey, 50, 1.0, 1.0)[0, 0, 0] == 150
    assert ops.adjust(grey, 0, 2.0, 1.0)[0, 0, 0] == 72  # (100-128)*2+128
    assert ops.adjust(grey, 0, 1.0, 2.0)[0, 0, 0] > 100  # gamma > 1 lifts mid-tones


def test_equalize_spreads_a_low_contrast_image() -> None:
    flat = np.tile(np.linspace(100, 140, 256).astype(np.uint8), (64, 1))
    img = cv2.cvtColor(flat, cv2.COLOR_GRAY2BGR)
    spread = {m: int(np.ptp(ops.equalize(img, m, 4.0, 8))) for m in ("global", "clahe")}
    assert spread["global"] > 200
    assert spread["clahe"] > 50  # from 40, limited by the clip limit


def test_sharpen_increases_detail() -> None:
    img = cv2.GaussianBlur(scene(), (0, 0), 2)
    before = cv2.Laplacian(img, cv2.CV_64F).var()
    assert cv2.Laplacian(ops.sharpen(img, 1.5, 2.0), cv2.CV_64F).var() > before * 1.5


@pytest.mark.parametrize("method", ["bilateral", "nlmeans", "median", "gaussian"])
def test_denoise_reduces_noise(method: str) -> None:
    rng = np.random.default_rng(0)
    clean = np.full((96, 96, 3), 128, np.uint8)
    noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    assert ops.denoise(noisy, method, 20).std() < noisy.std() * 0.7


def test_nlmeans_on_a_huge_image_asks_for_a_crop() -> None:
    with pytest.raises(ToolInputError, match="crop or resize it first"):
        ops.denoise(np.zeros((3000, 2000, 3), np.uint8), "nlmeans", 10)


def test_grayscale_and_threshold_give_single_channel_results() -> None:
    assert ops.grayscale(scene()).ndim == 2
    binary = ops.threshold(scene(), "otsu", 0, False, 31, 5)
    assert set(np.unique(binary).tolist()) <= {0, 255}
    assert ops.threshold(scene(), "adaptive", 0, True, 30, 5).ndim == 2  # even block sizes are made odd


def test_edges_find_the_square_outline() -> None:
    img = np.zeros((100, 100, 3), np.uint8)
    img[30:70, 30:70] = 255
    for method in ("canny", "sobel"):
        out = ops.edges(img, method, None, None)
        assert out[28:32, 50].max() > 0 and out[50, 50] == 0


def test_draw_marks_boxes_points_and_lines_in_their_colours() -> None:
    img = np.full((200, 200, 3), 255, np.uint8)
    marks = [Mark("box", [10, 10, 100, 100], (0, 0, 255), "cat"), Mark("point", [150, 150], (255, 0, 0)),
             Mark("line", [0, 199, 199, 199], (0, 200, 0))]
    out = draw(img, marks, "pixel", 2)
    assert out[55, 10].tolist() == [0, 0, 255]
    assert out[150, 150].tolist() == [255, 0, 0]
    assert out[199, 100].tolist() == [0, 200, 0]
    assert np.array_equal(img, np.full((200, 200, 3), 255, np.uint8))  # input untouched


def test_draw_accepts_relative_coordinates() -> None:
    img = np.full((200, 400, 3), 255, np.uint8)
    out = draw(img, [Mark("point", [500, 500], (0, 0, 255))], "qwen1000", 2)
    assert out[100, 200].tolist() == [0, 0, 255]


def test_unknown_colour_lists_the_names() -> None:
    with pytest.raises(ToolInputError, match="unknown colour 'chartreuse'"):
        ops.colour("chartreuse")
    assert ops.colour("#ff8000") == (0, 128, 255)
