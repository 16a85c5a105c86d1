"""toolfabric: run agentic vision-language trajectories on a distributed tool fabric.

    from toolfabric import Client
    with Client("127.0.0.1:50051") as client:
        result = client.ask("Who is this?", images=["photo.jpg"])
        print(result.answer)
"""

from toolfabric.aio import AsyncClient
from toolfabric.client import Client
from toolfabric.exceptions import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    ToolfabricError,
    Unavailable,
)
from toolfabric.requests import RunResult

__all__ = [
    "AsyncClient",
    "Client",
    "DeadlineExceeded",
    "InvalidArgument",
    "NotFound",
    "ResourceExhausted",
    "RunResult",
    "ToolfabricError",
    "Unavailable",
]
