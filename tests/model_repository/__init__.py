"""A Triton model repository of test models, loaded by the integration fixtures and never by the default stack.

`toolfabric_scripted` replays the model steps given in the question (`scripted.py`), so tests can push
any output, malformed included, through the real Triton server and gateway.
"""

from pathlib import Path

TEST_REPOSITORY = Path(__file__).resolve().parent
TEST_MODELS = ("toolfabric_scripted",)
