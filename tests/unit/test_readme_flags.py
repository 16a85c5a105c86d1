"""The README, docs/ and `--help` agree: every flag a usage block shows exists on the command it shows it with, every
flag the README or the CLI's docs mention exists somewhere, and where they say what a flag does, they say it in
`--help`'s words."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from toolfabric.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# The docs that describe the CLI (the README links them); deploy.md and models.md also quote kubectl, podman, vLLM.
CLI_DOCS = [ROOT / "docs" / name for name in ("api.md", "tools.md", "trajectories.md", "testing.md",
                                              "performance.md", "reliability.md", "evaluation.md")]
TEXT = "\n".join([README, *(doc.read_text() for doc in CLI_DOCS)])
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# Flags the README mentions that belong to other programs: the benchmarks (read from their argparse calls), the
# fuzzer, Triton, py-spy; "--min/--max-steps" is shorthand for --min-steps and --max-steps.
BENCH_FLAGS = {flag for script in (ROOT / "bench").glob("*.py")
               for flag in re.findall(r'add_argument\(\s*"(--[a-z0-9-]+)"', script.read_text())}
NOT_OURS = BENCH_FLAGS | {"--minutes", "--exit-timeout-secs", "--min", "--gil"}


def commands(parser: argparse.ArgumentParser,
             path: tuple[str, ...] = ()) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every (sub)command's parser by its words: ("eval", "run") → the parser of `toolfabric eval run`."""
    found = {path: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= commands(sub, (*path, name))
    return found


PARSERS = commands(build_parser(with_server_commands=True))


def flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def help_of(words: tuple[str, ...], flag: str) -> str:
    (action,) = [a for a in PARSERS[words]._actions if flag in a.option_strings]
    return " ".join((action.help or "").split())


def usage_lines() -> list[str]:
    """The `toolfabric …` lines of the README's usage block and of every sh block in the CLI's docs."""
    blocks = [README.split("## Using it")[1].split("```sh")[1].split("```")[0]]
    blocks += [block.split("```")[0] for doc in CLI_DOCS for block in doc.read_text().split("```sh")[1:]]
    lines = [line.split(" #")[0] for block in blocks for line in block.splitlines() if line.startswith("toolfabric ")]
    assert len(lines) > 20, "the usage blocks moved: find them again"
    return lines


@pytest.mark.parametrize("line", usage_lines())
def test_every_flag_in_the_usage_block_is_a_flag_of_its_command(line: str) -> None:
    words = line.split()[1:]
    # `eval run|report|compare|import`: the flags may belong to any of the alternatives.
    candidates: list[tuple[str, ...]] = [()]
    for word in words:
        if word.startswith("-") or not re.fullmatch(r"[a-z][a-z|-]*", word):
            break
        longer = [(*c, w) for c in candidates for w in word.split("|") if (*c, w) in PARSERS]
        if not longer:
            break
        candidates = longer
    known = set().union(*(flags(PARSERS[c]) for c in candidates))
    assert candidates != [()], line
    assert set(FLAG.findall(line)) <= known, (line, set(FLAG.findall(line)) - known)


def test_every_flag_the_readme_mentions_exists() -> None:
    ours = set().union(*(flags(p) for p in PARSERS.values()))
    assert set(FLAG.findall(TEXT)) - NOT_OURS - ours == set()


@pytest.mark.parametrize(("words", "flag"), [
    (("index",), "--include"), (("index",), "--exclude"), (("index",), "--all-files"), (("export",), "--format"),
])
def test_where_the_readme_says_what_a_flag_does_it_uses_the_helps_words(words: tuple[str, ...], flag: str) -> None:
    assert help_of(words, flag) in " ".join(TEXT.split())
