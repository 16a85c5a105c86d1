"""Triton python-backend entry point: the scripted policy saying of tokens only what the official vLLM backend says."""

from tests.model_repository.token_policy import OfficialLogprobsModel as TritonPythonModel  # noqa: F401
