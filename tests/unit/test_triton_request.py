"""The step request sent to Triton, built as the protobuf message: the vLLM backend's tensors, raw."""

from __future__ import annotations

import base64
import json

from toolfabric_server.model import triton_client
from toolfabric_server.model.triton_client import Capabilities, build_request


def _tensors(request) -> dict[str, tuple[str, list[int], bytes]]:  # type: ignore[no-untyped-def]
    return {t.name: (t.datatype, list(t.shape), raw) for t, raw in zip(request.inputs, request.raw_input_contents)}


def test_the_request_carries_the_prompt_sampling_and_images_as_raw_tensors() -> None:
    images = [b"\x89PNG one", b"\xff\xd8 two"]
    request = build_request("m", "t:1", "héllo", images, {"temperature": 0.5}, [1, 2, 3],
                            Capabilities(input_ids=True, logprobs=True))
    tensors = _tensors(request)
    assert (request.model_name, request.id) == ("m", "t:1")
    assert tensors["text_input"] == ("BYTES", [1], len("héllo".encode()).to_bytes(4, "little") + "héllo".encode())
    datatype, shape, raw = tensors["sampling_parameters"]
    assert (datatype, shape) == ("BYTES", [1])
    assert json.loads(raw[4:]) == {"temperature": 0.5, "logprobs": 0}  # asked for the sampled token's logprob
    assert tensors["stream"] == ("BOOL", [1], b"\x01")
    encoded = [base64.b64encode(b) for b in images]
    assert tensors["image"] == ("BYTES", [2], b"".join(len(e).to_bytes(4, "little") + e for e in encoded))
    assert tensors["input_ids"] == ("INT64", [3], b"".join(i.to_bytes(8, "little") for i in (1, 2, 3)))
    assert "return_token_ids" not in tensors  # not declared by the model


def test_a_model_without_the_extensions_gets_none_of_them() -> None:
    tensors = _tensors(build_request("m", "t:1", "q", [], {}, [1, 2], Capabilities()))
    assert "input_ids" not in tensors and "image" not in tensors and "return_logprobs" not in tensors


def test_the_encodings_kept_are_bounded_in_bytes(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(triton_client, "_ENCODED", {})
    monkeypatch.setattr(triton_client, "_encoded_bytes", 0)
    monkeypatch.setattr(triton_client, "_ENCODED_MAX_BYTES", 1000)
    for image in (b"a" * 100, b"b" * 200, b"c" * 300, b"d" * 5000):
        assert triton_client._encoded(image) == base64.b64encode(image)
    assert triton_client._encoded_bytes <= 1000
    assert triton_client._encoded_bytes == sum(len(k) + len(v) for k, v in triton_client._ENCODED.items())
