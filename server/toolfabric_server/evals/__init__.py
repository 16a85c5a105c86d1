"""`toolfabric eval`: benchmark a model through the fabric and grade it.

An eval is a client of the fabric (the SDK's AsyncClient), so it runs against any deployment; it
lives server-side only because its judge talks to Triton (tritonclient) or an OpenAI-compatible
endpoint (httpx), and its report draws plots (matplotlib).
"""

from toolfabric_server.evals.dataset import EvalItem, load_items
from toolfabric_server.evals.errors import DatasetError, EvalError, JudgeError

__all__ = ["DatasetError", "EvalError", "EvalItem", "JudgeError", "load_items"]
