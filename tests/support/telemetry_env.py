"""Running a process under test with a telemetry environment of the test's choosing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

EMIT_SPANS = Path(__file__).resolve().parents[1] / "telemetry" / "emit_spans.py"


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment without any OTEL_*/TOOLFABRIC_TELEMETRY_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TOOLFABRIC_TELEMETRY_"))}
    env.update(extra)
    return env


def emit_spans(env: dict[str, str]) -> dict[str, Any]:
    """Run tests/telemetry/emit_spans.py with `env`; its JSON summary."""
    done = subprocess.run([sys.executable, str(EMIT_SPANS)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
