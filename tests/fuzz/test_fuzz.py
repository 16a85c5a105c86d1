"""Every fuzz target, briefly, on every `make test`; and every input that ever broke one, replayed.

`make fuzz` runs the same targets for long (tests/fuzz/launch.py) and writes what it finds to
tests/fuzz/crashes/<target>/: from then on `test_saved_inputs_keep_their_promises` replays it here,
failing until the bug is fixed; the file stays as the regression test's input.
"""

from __future__ import annotations

import base64
import importlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz import launch
from tests.fuzz.targets import NAMES
from toolfabric_server.devstack.redis_server import RedisServer

# Per target, all in parallel: ~25 s of wall time for the lot (CI's fuzzing budget is ~90 s).
BRIEF_SECONDS = float(os.environ.get("TOOLFABRIC_FUZZ_SECONDS", "12"))


def saved_inputs() -> Iterator[object]:
    for target in NAMES:
        for folder in (launch.CORPUS / target, launch.CRASHES / target):
            if folder.is_dir():
                for path in sorted(folder.iterdir()):
                    if not path.name.startswith("."):
                        yield pytest.param(target, path, id=f"{target}/{folder.name}/{path.name[:16]}")


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the broken files it is shown
@pytest.mark.parametrize(("target", "path"), list(saved_inputs()))
def test_saved_inputs_keep_their_promises(target: str, path: Path, redis_server: RedisServer) -> None:
    module = importlib.import_module(f"tests.fuzz.targets.{target}")
    module.fuzz_one(path.read_bytes())


@pytest.fixture(scope="module")
def brief_run(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, launch.Outcome]:
    crashes, work = tmp_path_factory.mktemp("crashes"), tmp_path_factory.mktemp("work")
    return {o.target: o for o in launch.run(list(NAMES), BRIEF_SECONDS, crashes, work)}


@pytest.mark.parametrize("target", NAMES)
def test_target_survives_a_brief_fuzz_run(target: str, brief_run: dict[str, launch.Outcome]) -> None:
    outcome = brief_run[target]
    found = [f"{p}: {base64.b64encode(Path(p).read_bytes()[:2048]).decode()}" for p in outcome.artifacts]
    log = Path(outcome.log).read_text(errors="replace")
    tail = "\n".join(line for line in log.splitlines() if not line.startswith("INFO: Instrumenting"))[-3000:]
    assert outcome.ok, f"{target} failed (exit {outcome.returncode}); inputs (base64): {found}\n{tail}"
    assert outcome.executions > 0, tail
