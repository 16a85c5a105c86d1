"""Triton python-backend entry point: the scripted policy replaying the steps given in the question."""

from services.model.baseline.scripted import next_step
from services.model.python_backend import StreamingPolicyModel


class TritonPythonModel(StreamingPolicyModel):
    policy = staticmethod(next_step)
