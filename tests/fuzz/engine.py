"""Runs one fuzz target under atheris (libFuzzer) in this process: `python -m tests.fuzz.engine TARGET …`.

libFuzzer owns the process once it starts (it exits when done), so callers run this as a child
process; `tests/fuzz/launch.py` does, for `make test` (briefly) and `make fuzz` (long, in parallel).
Arguments after the target name go to libFuzzer as they are (`-max_total_time=60`, corpus
directories: new inputs are written to the first one).
"""

from __future__ import annotations

import importlib
import sys

import atheris


def main() -> None:
    name, *libfuzzer_args = sys.argv[1:]
    module_name = f"tests.fuzz.targets.{name}"
    # Instrument the boundary's own code and the third-party parsers under it, so coverage guides the search.
    with atheris.instrument_imports(include=[*_instrumented(module_name), module_name]):
        target = importlib.import_module(module_name)
    atheris.Setup([sys.argv[0], *libfuzzer_args], target.fuzz_one)
    atheris.Fuzz()


def _instrumented(module_name: str) -> list[str]:
    """The target's INSTRUMENT list, read without importing the target (instrumentation must come first)."""
    import ast
    import importlib.util

    found = importlib.util.find_spec(module_name)
    if found is None or found.origin is None:
        raise SystemExit(f"no fuzz target {module_name}")
    with open(found.origin, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "INSTRUMENT" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


if __name__ == "__main__":
    main()
