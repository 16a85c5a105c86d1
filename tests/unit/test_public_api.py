"""The SDK's public surface is small and stable."""

import toolfabric


def test_exported_names() -> None:
    assert sorted(toolfabric.__all__) == [
        "AsyncClient", "Client", "DeadlineExceeded", "InvalidArgument", "NotFound", "ResourceExhausted", "RunResult",
        "ToolfabricError", "Unavailable",
    ]
    for name in toolfabric.__all__:
        assert getattr(toolfabric, name) is not None
