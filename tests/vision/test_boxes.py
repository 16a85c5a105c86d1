"""The one coordinate contract: three box conventions in, the same pixel region out."""

from __future__ import annotations

import pytest

from toolfabric_server.tools.vision.boxes import PixelBox, fit_box, to_pixels
from toolfabric_server.tools.vision.errors import BadBox

W, H = 4000, 3000


def fit(bbox: list[float], coords: str = "pixel", min_side: int = 32, max_aspect: float = 100.0):  # type: ignore[no-untyped-def]
    return fit_box(bbox, coords, W, H, min_side=min_side, max_aspect=max_aspect, image_name="<image 1>")  # type: ignore[arg-type]


def test_pixel_qwen1000_and_normalized_boxes_select_the_same_region() -> None:
    pixel = fit([1000, 750, 2000, 1500], "pixel").box
    qwen = fit([250, 250, 500, 500], "qwen1000").box
    normalized = fit([0.25, 0.25, 0.5, 0.5], "normalized").box
    assert pixel == qwen == normalized == PixelBox(1000, 750, 2000, 1500)


def test_fractional_edges_round_outward_so_nothing_asked_for_is_cut() -> None:
    assert fit([10.4, 20.6, 100.2, 200.9]).box == PixelBox(10, 20, 101, 201)


def test_box_partly_outside_is_clamped_with_a_note() -> None:
    fitted = fit([-50, -50, 100, 100])
    assert fitted.box == PixelBox(0, 0, 100, 100)
    assert any("clamped" in note for note in fitted.notes)


def test_box_outside_image_is_rejected_with_the_image_size() -> None:
    with pytest.raises(BadBox, match=r"lies outside <image 1>, which is 4000x3000 pixels"):
        fit([4100, 10, 4200, 100])


def test_qwen_box_outside_image_explains_the_relative_range() -> None:
    with pytest.raises(BadBox, match=r"0-1000 relative.*spans \[0, 0, 1000, 1000\]"):
        fit([1001, 0, 1200, 500], "qwen1000")


def test_swapped_corners_are_rejected_saying_which_order_is_expected() -> None:
    with pytest.raises(BadBox, match="corners swapped"):
        to_pixels([200, 10, 100, 50], "pixel", W, H)


def test_tiny_box_grows_to_the_minimum_side_around_its_centre() -> None:
    fitted = fit([500, 500, 504, 502])
    assert fitted.box.width == 32 and fitted.box.height == 32
    assert fitted.box.x1 <= 500 and fitted.box.x2 >= 504
    assert any("grown" in note for note in fitted.notes)


def test_growing_at_the_border_shifts_the_box_inside_the_image() -> None:
    assert fit([3998, 2999, 4000, 3000]).box == PixelBox(3968, 2968, 4000, 3000)


def test_extreme_aspect_ratio_is_rejected_with_a_clear_message() -> None:
    with pytest.raises(BadBox, match=r"aspect ratio 125:1 is over the limit of 100:1"):
        fit([0, 0, 4000, 10])


def test_non_finite_coordinates_are_rejected() -> None:
    with pytest.raises(BadBox, match="finite"):
        fit([0, 0, float("inf"), 10])
