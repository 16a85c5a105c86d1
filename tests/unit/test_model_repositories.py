"""The default stack serves the baseline only; the scripted test model lives with the tests."""

from __future__ import annotations

from pathlib import Path

from tests.model_repository import TEST_MODELS, TEST_REPOSITORY
from toolfabric_server.devstack.stack import EmbeddedStack
from toolfabric_server.devstack.triton_server import REPOSITORY


def test_the_default_stack_loads_no_test_model(tmp_path: Path) -> None:
    triton = EmbeddedStack(tmp_path).triton
    assert triton.models == ("toolfabric_baseline",) and triton.repositories == (REPOSITORY,)
    assert not (REPOSITORY / "toolfabric_scripted").exists()


def test_the_test_repository_holds_the_scripted_model() -> None:
    for model in TEST_MODELS:
        assert (TEST_REPOSITORY / model / "config.pbtxt").read_text().count(f'name: "{model}"') == 1
