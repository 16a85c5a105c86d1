"""The `code` tool's contract with the model: images in, text and new images out."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.vision.conftest import MakeContext, jpeg, png, scene
from toolfabric_server.common import images
from toolfabric_server.common.errors import ToolError
from toolfabric_server.common.tools import ToolContext, ToolResult
from toolfabric_server.tools.vision import errors
from toolfabric_server.tools.vision.code_tool import run_code
from toolfabric_server.tools.vision.sandbox.client import Sandbox
from toolfabric_server.tools.vision.settings import VisionSettings
from toolfabric_server.tools.vision.store import ImageStore


@pytest.fixture
def run(store: ImageStore, sandbox: Sandbox, sandbox_settings: VisionSettings):  # type: ignore[no-untyped-def]
    def go(source: str, ctx: ToolContext | None = None, cfg: VisionSettings | None = None) -> ToolResult:
        return run_code(source, ctx or ToolContext(), store, sandbox, cfg or sandbox_settings)

    return go


def test_images_are_bgr_arrays_by_every_name_and_files_in_the_working_directory(run, context: MakeContext) -> None:
    ctx = context({"<image 1>": png(scene()), "<sub-image 2>": png(np.zeros((10, 20, 3), np.uint8))})
    result = run(
        "import os\n"
        "print(sorted(images), image.shape, image.dtype, images['<image>'] is images['<image 1>'])\n"
        "print(images['sub-image 2'].shape, sorted(f for f in os.listdir('.')))\n"
        "print(np.array_equal(cv2.imread('image_1.png'), image), Image.open('sub_image_2.png').size)",
        ctx,
    )
    assert result.ok, result.text
    lines = result.text.splitlines()
    assert lines[0] == "['<image 1>', '<image>', '<sub-image 2>'] (480, 640, 3) uint8 True"
    assert lines[1] == "(10, 20, 3) ['image_1.png', 'sub_image_2.png']"
    assert lines[2] == "True (20, 10)"


def test_jpeg_and_exif_rotated_inputs_arrive_decoded_as_the_model_sees_them(run, context: MakeContext) -> None:
    result = run("image.shape", context({"<image 1>": jpeg(scene(400, 300), exif_orientation=6)}))
    assert result.text == "(400, 300, 3)"


def test_unknown_image_name_in_code_lists_the_names(run, context: MakeContext) -> None:
    with pytest.raises(errors.CodeRaised, match=r"no image named '<sub-image 5>'; this call has: <image 1>"):
        run("images['<sub-image 5>']", context({"<image 1>": png(scene())}))


def test_saved_arrays_come_back_as_new_images_in_the_blob_store(run, store: ImageStore,
                                                               context: MakeContext) -> None:
    result = run("crop = image[20:120, 340:440]\nname = save(crop, 'red square')\nprint(name)",
                 context({"<image 1>": png(scene())}))
    assert result.ok and result.text.startswith("output_1.png")
    [new] = result.images
    assert (new.width, new.height) == (100, 100) and new.origin == "code output 1 (red square)"
    stored = images.decode_bgr(store.data(new.ref), 40_000_000)
    assert stored[50, 50].tolist() == [0, 0, 255]


def test_files_written_and_last_expression_images_are_returned_too(run, context: MakeContext) -> None:
    result = run("cv2.imwrite('edges.png', cv2.Canny(image, 50, 150))\nImage.new('RGB', (30, 20), 'red')",
                 context({"<image 1>": png(scene())}))
    assert [(im.width, im.height) for im in result.images] == [(30, 20), (640, 480)]
    assert [im.origin for im in result.images] == ["code output 1 (last expression)", "code output 2 (edges.png)"]


def test_unchanged_inputs_are_not_returned_as_outputs(run, context: MakeContext) -> None:
    result = run("x = 1", context({"<image 1>": png(scene())}))
    assert result.images == [] and result.text == "[the code ran and printed nothing]"


def test_float_and_bool_arrays_are_saved_as_8_bit_images(run) -> None:
    result = run("save(np.ones((8, 8), dtype=float) * 0.5)\nsave(np.eye(8, dtype=bool))")
    assert [(im.width, im.height) for im in result.images] == [(8, 8), (8, 8)]


def test_images_past_the_per_call_limit_are_refused_clearly(run) -> None:
    with pytest.raises(errors.CodeRaised, match="already returned 3 images, the limit per call"):
        run("for i in range(5): save(np.zeros((8, 8), np.uint8))")


def test_written_files_over_the_image_limit_are_dropped_with_a_note(run) -> None:
    result = run("for i in range(5): cv2.imwrite(f'f{i}.png', np.zeros((8, 8), np.uint8))")
    assert len(result.images) == 3 and "2 more image(s) not returned: at most 3 per call" in result.text


def test_a_file_that_is_not_an_image_is_reported_not_returned(run) -> None:
    result = run("open('fake.png', 'w').write('not a png')")
    assert result.images == [] and "fake.png was not returned: not a recognised image" in result.text


def test_stdout_stderr_and_last_value_are_returned(run) -> None:
    result = run("import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\n{'answer': 42}")
    assert result.text == "to stdout\nto stderr\n{'answer': 42}"
    assert result.data["type"] == "code"


def test_long_output_is_truncated_to_the_budget_with_a_note(run) -> None:
    result = run("for i in range(5000): print('line', i)")
    assert len(result.text) <= 420
    assert result.text.startswith("line 0\n") and result.text.rstrip().endswith("line 4999")
    assert "output truncated" in result.text


def test_huge_last_value_is_truncated_with_a_note(run) -> None:
    result = run("'x' * 100_000")
    assert len(result.text) < 300 and "value truncated to 200 characters" in result.text


def test_exception_returns_the_traceback_tail_of_the_models_code(run) -> None:
    with pytest.raises(errors.CodeRaised) as caught:
        run("print('before')\ndef f(x):\n    return x / 0\nf(1)")
    message = str(caught.value)
    assert message.startswith("the code raised ZeroDivisionError: division by zero")
    assert 'File "<code>", line 3, in f' in message and "return x / 0" in message
    assert "runner.py" not in message  # only the model's own frames
    assert "--- output before it stopped ---\nbefore" in message
    assert caught.value.kind == "code_error"


def test_syntax_error_points_at_the_line(run) -> None:
    with pytest.raises(errors.CodeRaised, match=r"SyntaxError.*\n.*line 2"):
        run("x = 1\nif x\n  print(x)")


def test_exit_is_not_an_error(run) -> None:
    assert run("print('done')\nraise SystemExit(0)\nprint('not reached')").text == "done"


def test_hard_exit_without_a_result_is_reported(run) -> None:
    with pytest.raises(errors.CodeRaised, match="exit status 3"):
        run("import os\nos._exit(3)")


def test_no_state_survives_from_one_call_to_the_next(run) -> None:
    run("import numpy\nnumpy.secret = 42\nopen('left_behind.txt', 'w').write('x')")
    result = run("import os\n(hasattr(np, 'secret'), os.path.exists('left_behind.txt'))")
    assert result.text == "(False, False)"


def test_failures_are_tool_errors_the_worker_turns_into_observations(run) -> None:
    with pytest.raises(ToolError):
        run("raise ValueError('bad')")


def test_required_isolation_layer_missing_fails_closed(run, sandbox_settings: VisionSettings) -> None:
    cfg = sandbox_settings.model_copy(update={"sandbox_required_layers": ["gvisor"]})
    with pytest.raises(errors.SandboxUnavailable, match="required isolation gvisor is not available"):
        run("1", cfg=cfg)


def test_grayscale_output_from_code_is_a_valid_png(run, store: ImageStore) -> None:
    result = run("save(cv2.cvtColor(np.full((20, 30, 3), 200, np.uint8), cv2.COLOR_BGR2GRAY))")
    assert images.inspect(store.data(result.images[0].ref), 40_000_000).mode == "L"
    assert cv2.imdecode(np.frombuffer(store.data(result.images[0].ref), np.uint8), 0).shape == (20, 30)


def test_large_colour_images_are_saved_as_jpeg(run, sandbox_settings: VisionSettings) -> None:
    cfg = sandbox_settings.model_copy(update={"png_max_pixels": 10_000})
    result = run("save(np.full((200, 300, 3), 90, np.uint8))\nsave(np.zeros((200, 300), np.uint8))", cfg=cfg)
    assert [im.mime_type for im in result.images] == ["image/jpeg", "image/png"]


def test_a_broken_image_file_is_not_stored(run) -> None:
    source = "data = cv2.imencode('.png', np.zeros((64, 64, 3), np.uint8))[1].tobytes()\n" \
             "open('broken.png', 'wb').write(data[:len(data) // 2])"
    result = run(source)
    assert result.images == [] and "broken.png was not returned: image data is corrupt or truncated" in result.text


def test_code_scribbling_on_its_result_file_gets_a_clear_error(run) -> None:
    with pytest.raises(errors.CodeRaised, match="without finishing"):
        run("import os\nos.write(3, b'garbage')")
