"""Bad client input is refused with INVALID_ARGUMENT and a message that says what is wrong."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.integration.conftest import extra_gateway
from toolfabric import Client, InvalidArgument
from toolfabric.cli.main import DEMO_IMAGE

pytestmark = pytest.mark.integration


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"question": "   "}, "question is empty"),
    ({"images": [DEMO_IMAGE.read_bytes()[:2000]]}, "image 1: image data is corrupt or truncated"),
    ({"images": [b"%PDF-1.4 not an image at all"]}, "image 1: not a recognised image"),
    ({"images": [b"\x00\x00\x01\x00" + b"\x00" * 64]}, "image 1"),
    ({"max_steps": -1}, "budgets.max_steps is -1"),
    ({"max_steps": 10_000}, "over the server's limit"),
    ({"max_tool_calls": 100_000}, "budgets.max_tool_calls is 100000"),
    ({"deadline_s": -5}, "budgets.deadline_s is -5"),
    ({"temperature": 7.0}, "sampling.temperature is 7"),
    ({"max_tokens": 0}, "sampling.max_tokens is 0"),
    ({"model": "m" * 100_000}, "model is 100000 characters, over the limit of 256"),
])
def test_bad_request_is_invalid_argument_with_a_clear_message(client: Client, kwargs: dict, message: str) -> None:
    question = kwargs.pop("question", "What is this?")
    with pytest.raises(InvalidArgument) as info:
        client.ask(question, **kwargs)
    assert message in str(info.value)


def test_unsupported_image_type_is_named(client: Client) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="ICO")
    with pytest.raises(InvalidArgument, match="unsupported image type ICO"):
        client.ask("What is this?", images=[buf.getvalue()])


def test_request_over_the_size_limit_is_refused(stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A gateway with a small cap, sharing the running stack's Redis/Triton/workers.
    with extra_gateway(stack, tmp_path, TOOLFABRIC_GATEWAY_MAX_MESSAGE_BYTES=str(4 << 20)) as target, \
            Client(target) as small:
        with pytest.raises(InvalidArgument, match=r"request is \d+ bytes, over the limit of 4194304"):
            small.ask("What is this?", images=[png_bytes() + b"\x00" * (5 << 20)])


def test_bad_requests_leave_the_gateway_serving(client: Client) -> None:
    with pytest.raises(InvalidArgument):
        client.ask("")
    assert client.tools()
