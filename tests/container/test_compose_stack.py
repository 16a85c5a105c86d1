"""The demo trajectory through the containerised stack (compose.yaml), driven with the SDK.

Runs from `make container-test` (scripts/container-test.sh), which builds the image and starts the
stack; skipped elsewhere.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.container.conftest import SERVICES, Stack
from toolfabric import Client
from toolfabric.cli.main import DEMO_IMAGE, DEMO_QUESTION
from toolfabric.v1 import fabric_pb2 as pb

SERVICE_OF = {"code": "vision", "image_search": "search", "text_search": "search", "web_visit": "fetch"}


@pytest.fixture(scope="module")
def demo_run(stack: Stack):  # type: ignore[no-untyped-def]
    with Client(stack.target, timeout_s=300) as client:
        return client.ask(DEMO_QUESTION, images=[DEMO_IMAGE])


def test_demo_question_is_answered_through_the_containers(demo_run) -> None:  # type: ignore[no-untyped-def]
    assert demo_run.status == "STATUS_COMPLETED", demo_run.reason
    assert "Eileen Collins" in demo_run.answer and "STS-93" in demo_run.answer
    # The source is the demo site as the fetch container reached it, by its compose service name.
    assert "http://demo-site:8080/" in demo_run.answer


def test_every_tool_service_container_answered_each_call(demo_run) -> None:  # type: ignore[no-untyped-def]
    calls = demo_run.tool_calls
    assert {SERVICE_OF[c.name] for c in calls} == {"vision", "search", "fetch"}
    assert [(o.name, o.text) for o in demo_run.observations if o.is_error] == []
    kinds = [e.WhichOneof("event") for e in demo_run.events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    calls_at = {e.tool_call.call_id: i for i, e in enumerate(demo_run.events) if e.WhichOneof("event") == "tool_call"}
    observed_at = {e.observation.call_id: i for i, e in enumerate(demo_run.events)
                   if e.WhichOneof("event") == "observation"}
    assert set(calls_at) == set(observed_at) and all(observed_at[c] > calls_at[c] for c in calls_at)
    assert max(Counter(e.step for e in demo_run.events if e.WhichOneof("event") == "tool_call").values()) >= 2


def test_recorded_trajectory_in_the_redis_container_matches_the_stream(demo_run, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    with Client(stack.target, timeout_s=60) as client:
        recorded = client.trajectory(demo_run.trajectory_id)
    assert recorded.status == pb.STATUS_COMPLETED and recorded.answer == demo_run.answer
    streamed = [e.SerializeToString() for e in demo_run.events if e.WhichOneof("event") != "text"]
    stored = [e.SerializeToString() for e in recorded.events if e.WhichOneof("event") != "text"]
    assert stored == streamed


@pytest.mark.parametrize("service", SERVICES)
def test_container_runs_as_the_manifests_run_it(stack: Stack, service: str) -> None:
    config = stack.inspect(service)
    host = config["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert config["Config"]["User"] == ("999:1000" if service == "redis" else "10001:10001")
    assert "no-new-privileges" in " ".join(host.get("SecurityOpt") or [])
    # Nothing but the explicit writable mounts: writing anywhere else fails.
    probe = stack.run("exec", stack.containers[service], "sh", "-c", "touch /etc/x || echo read-only", check=False)
    assert "read-only" in probe.stdout, probe


def test_a_worker_without_a_redis_url_exits_at_once_with_one_line(stack: Stack) -> None:
    image = stack.inspect("worker-vision")["Config"]["Image"]
    done = stack.run("run", "--rm", "--read-only", "--tmpfs", "/tmp", image, "toolfabric", "worker", "vision",
                     check=False, timeout=30)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "TOOLFABRIC_REDIS_URL" in lines[0], done.stderr


def _manifest_commands() -> list[tuple[str, list[str]]]:
    """(where, command line) of every container in every rendering that runs the app image."""
    from tests.k8s.manifests import APP_IMAGE, RENDERINGS, image_name, load

    found = []
    for name in RENDERINGS:
        for container in load(name).containers():
            if image_name(container.spec["image"]) == APP_IMAGE:
                found.append((f"{name}: {container.where}",
                              container.spec.get("command", []) + container.spec.get("args", [])))
    return found


def test_every_manifest_command_and_path_exists_in_the_image(stack: Stack) -> None:
    image = stack.inspect("gateway")["Config"]["Image"]
    checks = []
    for where, argv in _manifest_commands():
        # The program, and every absolute path the command names (model repository, demo corpus, …).
        paths = [word for arg in argv for word in arg.split() if word.startswith("/opt/")]
        checks.append(f'command -v {argv[0]} >/dev/null || echo "{where}: no {argv[0]}"')
        checks += [f'test -e {p} || echo "{where}: no {p}"' for p in paths]
        # The server commands exist with the subcommand the manifest gives them (once per subcommand).
        if argv[:1] == ["toolfabric"] and not any(f"no toolfabric {argv[1]}\"" in c for c in checks):
            checks.append(f'toolfabric {argv[1]} --help >/dev/null 2>&1 || echo "{where}: no toolfabric {argv[1]}"')
    assert len(checks) > 8
    done = stack.run("run", "--rm", "--read-only", "--entrypoint", "sh", image, "-c", "\n".join(checks),
                     timeout=180)
    assert done.stdout.strip() == "", done.stdout
