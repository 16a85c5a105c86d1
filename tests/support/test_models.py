"""Loading the test-only models of tests/model_repository into a running Triton server.

The session's Triton runs with explicit model control; Triton's load API takes the model's config
and files inline, so a test model needs no second server and no copy in the shipped repository.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import tritonclient.grpc as grpcclient

TEST_REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"
# Shipped models a test may load on demand too (the judge `toolfabric up --judge local` serves).
SHIPPED_REPOSITORY = Path(__file__).resolve().parents[2] / "server" / "toolfabric_server" / "model" / "repository"


@contextlib.contextmanager
def loaded(triton_url: str, name: str, parameters: dict[str, str] | None = None) -> Iterator[str]:
    """Loads tests/model_repository/<name> (or a shipped model) into the server at `triton_url` (with config
    `parameters` set on top); unloads it afterwards."""
    model_dir = TEST_REPOSITORY / name if (TEST_REPOSITORY / name).is_dir() else SHIPPED_REPOSITORY / name
    files = {f"file:{p.relative_to(model_dir)}": p.read_bytes() for p in model_dir.rglob("*")
             if p.is_file() and p.name != "config.pbtxt" and "__pycache__" not in p.parts}
    client = grpcclient.InferenceServerClient(triton_url)
    try:
        # Inline files need the config as JSON: the text form's fields are the same, read by Triton's parser.
        client.load_model(name, config=_config_json(model_dir / "config.pbtxt", parameters or {}), files=files)
        yield name
    finally:
        with contextlib.suppress(Exception):
            client.unload_model(name)
        client.close()


def _config_json(path: Path, parameters: dict[str, str]) -> str:
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    return json_format.MessageToJson(config, preserving_proto_field_name=True)
