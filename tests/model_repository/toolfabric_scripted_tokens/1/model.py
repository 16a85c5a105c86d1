"""Triton python-backend entry point: the scripted policy with the fabric's token extensions."""

from tests.model_repository.token_policy import ScriptedTokenModel as TritonPythonModel  # noqa: F401
