"""The one Dockerfile: multi-stage, pinned bases, non-root, every service from the repo root."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.k8s.manifests import ROOT, Rendered, image_tag

DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined; heredoc bodies skipped."""
    out: list[tuple[str, str]] = []
    lines = iter(DOCKERFILE.read_text().splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines).strip()
        word, _, rest = line.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        heredoc = re.search(r"<<'?(\w+)'?", rest)
        if heredoc:
            for body in lines:
                if body.strip() == heredoc.group(1):
                    break
    return out


def _args() -> dict[str, str]:
    return dict(a.split("=", 1) for i, a in _instructions() if i == "ARG" and "=" in a)


def test_dockerfile_is_multi_stage_on_pinned_base_images() -> None:
    args = _args()
    bases, stages = [], set()
    for instruction, rest in _instructions():
        if instruction == "FROM":
            image, *alias = rest.split()
            if image not in stages:  # FROM an earlier stage is not a base image
                bases.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image))
            stages.update(alias[1:2] if alias[:1] in (["AS"], ["as"]) else [])
    assert len(bases) >= 2
    assert all(image_tag(b) not in (None, "latest") for b in bases), bases


def test_final_stage_runs_as_a_numeric_non_root_user_under_tini() -> None:
    instructions = _instructions()
    last_from = max(i for i, (ins, _) in enumerate(instructions) if ins == "FROM")
    final = instructions[last_from:]
    users = [rest for ins, rest in final if ins == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), "numeric uid:gid (runAsNonRoot can check it)"
    entrypoint = next(rest for ins, rest in final if ins == "ENTRYPOINT")
    assert "tini" in entrypoint


def test_build_context_keeps_what_the_build_copies_and_drops_the_rest() -> None:
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for must_ignore in (".git", ".venv", "k8s", "tests"):
        assert must_ignore in ignored
    copied = [source for ins, rest in _instructions() if ins == "COPY" and "--from" not in rest
              for source in [a for a in shlex.split(rest) if not a.startswith("--")][:-1]]
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not any(Path(source).parts[0] == pattern for pattern in ignored), f"{source} is .dockerignored"


def test_cpu_triton_launcher_serves_the_ports_the_manifests_use(dev: Rendered) -> None:
    text = DOCKERFILE.read_text()
    triton = dev.container("triton")
    assert triton.spec["args"][0] == "toolfabric-triton-cpu"
    source = next(shlex.split(rest)[-2] for ins, rest in _instructions()
                  if ins == "COPY" and rest.endswith(" /usr/local/bin/toolfabric-triton-cpu"))
    launcher = (ROOT / source).read_text()
    ports = {p["name"]: p["containerPort"] for p in triton.spec["ports"]}
    assert f"--grpc-port={ports['grpc']}" in launcher and f"--http-port={ports['http']}" in launcher
    assert f"--metrics-port={ports['metrics']}" in launcher
    assert "python_backend_stubs/3.11/" in text and "/usr/bin/python3.11 -m venv" in text, \
        "the stub must match the image's Python"
