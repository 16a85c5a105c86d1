"""Triton python-backend entry point: the deterministic baseline policy (not a model)."""

from toolfabric_server.model.baseline.policy import next_step
from toolfabric_server.model.python_backend import StreamingPolicyModel


class TritonPythonModel(StreamingPolicyModel):
    policy = staticmethod(next_step)
