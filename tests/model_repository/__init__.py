"""A Triton model repository of test models, loaded by the integration fixtures and never by the default stack.

`toolfabric_scripted` replays the model steps given in the question (`scripted.py`), so tests can push
any output, malformed included, through the real Triton server and gateway.
"""

from pathlib import Path

from toolfabric_server.devstack.triton_server import CPU_MODELS, REPOSITORY, TritonServer

TEST_REPOSITORY = Path(__file__).resolve().parent
TEST_MODELS = ("toolfabric_scripted",)


def triton_with_test_models(workdir: Path) -> TritonServer:
    """The stack's Triton (the CPU baseline) with the test models loaded beside it."""
    return TritonServer(workdir.resolve() / "triton", models=(*CPU_MODELS, *TEST_MODELS),
                        repositories=(REPOSITORY, TEST_REPOSITORY))
