"""Triton python-backend entry point: the deterministic baseline policy (not a model)."""

from services.model.baseline.policy import next_step
from services.model.python_backend import StreamingPolicyModel


class TritonPythonModel(StreamingPolicyModel):
    policy = staticmethod(next_step)
