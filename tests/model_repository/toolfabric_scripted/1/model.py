"""Triton python-backend entry point: the scripted policy replaying the steps given in the question."""

from tests.model_repository.scripted import next_step
from toolfabric_server.model.python_backend import StreamingPolicyModel


class TritonPythonModel(StreamingPolicyModel):
    policy = staticmethod(next_step)
