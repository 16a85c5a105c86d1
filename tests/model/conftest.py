"""Tests of the real model engines: they need the engine venv (`make setup-model`) and run in `make test-model`.

Every test under tests/model carries the `model` marker; `make test` deselects it, `make test-model`
selects it. Without the engine venv these tests fail with the command that makes it, rather than skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


# pytest-timeout counts fixture setup in a test's time: the first test of a module waits for its engine to load
# (vLLM: 20 s on a quiet machine, minutes at load average 15-20, bounded by the servers' own 900 s start timeouts),
# so the project's 300 s default would fail the engines under load rather than find a hang.
MODEL_TEST_TIMEOUT_S = 1200


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.model)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(MODEL_TEST_TIMEOUT_S))


@pytest.fixture(scope="session")
def engine_venv() -> Path:
    from toolfabric_server.model import engine_venv as venv
    from toolfabric_server.model.settings import ModelSettings

    return venv.engine_python(venv.engine_venv(ModelSettings())).parent.parent


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, engine_venv: Path) -> Path:
    """A cache folder the tests' tiny checkpoints are made into (once per session)."""
    return tmp_path_factory.mktemp("tiny-models")
