"""Triton python-backend entry point: the scripted policy replaying the steps given in the question."""

from services.model.python_backend import StreamingPolicyModel
from tests.model_repository.scripted import next_step


class TritonPythonModel(StreamingPolicyModel):
    policy = staticmethod(next_step)
