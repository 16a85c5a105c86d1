"""The whole fabric, for real: redis-server, Triton with the CPU models, three Celery worker
processes, the gateway and the demo corpus site — started once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.stack import EmbeddedStack
from tests.support.otlp_receiver import OtlpReceiver
from toolfabric import Client


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """Every process of the stack exports its spans here (test_telemetry reads them)."""
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, otlp_receiver: OtlpReceiver) -> Iterator[EmbeddedStack]:
    with EmbeddedStack(tmp_path_factory.mktemp("stack"), extra_env=otlp_receiver.env()) as running:
        yield running


@pytest.fixture
def client(stack: EmbeddedStack) -> Iterator[Client]:
    with Client(stack.target, timeout_s=120) as c:
        yield c
