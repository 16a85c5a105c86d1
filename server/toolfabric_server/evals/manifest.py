"""A run's manifest (run.json): what was asked and how it was graded, so a resume can check it asks the same.

Results in results.jsonl are only comparable with each other when every question was asked with the same
sampling, budgets, mode, model, labels and judge. A resume whose options differ would mix two runs and
report the mix as one, so it is refused, naming each option that differs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from toolfabric_server.evals.errors import RunError

MANIFEST = "run.json"
# What decides a result; the target, concurrency and --limit do not (the same stack may move address).
COMPARED = ("options", "labels", "judge", "bundle")


def read(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: not a readable run manifest ({exc})") from None


def differences(recorded: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """'max_tokens 20480 → 8192' for each option that differs between a recorded manifest and a new one."""
    out: list[str] = []
    for key in COMPARED:
        old, new = recorded.get(key), wanted.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            for name in sorted(set(old) | set(new)):
                if old.get(name) != new.get(name):
                    out.append(f"{name} {old.get(name)!r} → {new.get(name)!r}")
        elif old != new and (key in recorded or new is not None):
            out.append(f"{key} {old!r} → {new!r}")
    return out


def write(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Record `manifest`, or check it against the one a previous run recorded (RunError naming the differences)."""
    recorded = read(run_dir)
    if recorded:
        changed = differences(recorded, manifest)
        if changed:
            raise RunError(f"{run_dir} was run with other options ({'; '.join(changed)}); resuming would mix two "
                           "runs' results. Use a new --name, or the same options to resume")
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / MANIFEST).write_text(json.dumps({**manifest, "started_at": time.time()}, indent=2,
                                               ensure_ascii=False), encoding="utf-8")


def update(run_dir: Path, **fields: Any) -> None:
    """Add facts learned while running (the gateway's token cap, the bundle written)."""
    manifest = read(run_dir)
    manifest.update(fields)
    (run_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
