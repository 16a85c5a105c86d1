"""The whole fabric, for real: redis-server, Triton with the CPU models, three Celery worker
processes, the gateway and the demo corpus site — started once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.stack import EmbeddedStack
from toolfabric import Client


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    with EmbeddedStack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture
def client(stack: EmbeddedStack) -> Iterator[Client]:
    with Client(stack.target, timeout_s=120) as c:
        yield c
