"""The SDK as users get it: the real sdist and wheel built from pyproject.toml hold only `toolfabric/`, and,
installed with pip into fresh venvs of the oldest supported Python (the wheel) and the newest one here (the
sdist), they drive the real gateway without importing a server module; `toolfabric --help` works there and
names where the server commands come from."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from toolfabric.cli.main import SERVER_INSTALL
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PYENV = Path("/root/.pyenv/versions")
SERVER_SIDE = ("toolfabric_server", "celery", "redis", "tritonclient", "pydantic", "cv2",
               "httpx", "numpy")
PIP = ("-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile")


def _interpreter(which: str) -> str:
    """The oldest (3.9) or the newest CPython pyenv holds here; the test's own Python where pyenv is absent."""
    found = sorted((tuple(int(n) for n in path.name.split(".")), path / "bin" / "python")
                   for path in PYENV.glob("3.*") if re.fullmatch(r"3\.\d+\.\d+", path.name))
    found = [(version, python) for version, python in found if version >= (3, 9) and python.exists()]
    if not found:
        return sys.executable
    return str(found[0][1] if which == "oldest" else found[-1][1])


# Runs inside the fresh venv: a client call or the CLI, then where the SDK came from and the top-level modules.
PROBE = """
import json, sys
target, what = sys.argv[1], sys.argv[2]
try:
    if what == "ask":
        from toolfabric import Client
        with Client(target, timeout_s=60) as client:
            result = client.ask('{"script": ["<answer>from the SDK</answer>"]}', model="toolfabric_scripted")
        print("ANSWER", result.answer, result.status)
    else:
        from toolfabric.cli.main import main
        sys.argv = ["toolfabric", "run", '{"script": ["<answer>from the CLI</answer>"]}', "--target", target,
                    "--model", "toolfabric_scripted", "--out", ""]
        code = main(sys.argv[1:])
        print("EXIT", code)
finally:
    import toolfabric
    print("FROM", toolfabric.__file__)
    print("MODULES", json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel as `python -m build` makes them: the sdist from the checkout, the wheel from that
    sdist (a file the sdist forgot is missing from the wheel too), each in an isolated build environment."""
    out, source = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("checkout")
    # From a copy of what git would check out (tracked and new files, nothing ignored): a stale *.egg-info of
    # an earlier editable install would otherwise add its file list to the sdist.
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(source)],
                   check=True, capture_output=True, timeout=600)
    (sdist,) = out.glob("toolfabric-0*.tar.gz")
    (wheel,) = out.glob("toolfabric-0*.whl")
    # The server distribution, built from its own folder of the same checkout.
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out / "server"),
                    str(source / "server")], check=True, capture_output=True, timeout=600)
    (server_wheel,) = (out / "server").glob("toolfabric_server-*.whl")
    return {"sdist": sdist, "wheel": wheel, "server_wheel": server_wheel}


@pytest.fixture(scope="module", params=["oldest", "newest"])
def sdk_venv(request: pytest.FixtureRequest, dist: dict[str, Path],
             tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (its own pip) with the wheel installed on the oldest Python, the sdist on the newest; the
    dependencies come from the package index as a user's would. Returns the venv's bin folder."""
    base = tmp_path_factory.mktemp(f"sdk-{request.param}")
    subprocess.run([_interpreter(request.param), "-m", "venv", str(base / "venv")], check=True, timeout=120)
    artifact = dist["wheel" if request.param == "oldest" else "sdist"]
    subprocess.run([str(base / "venv" / "bin" / "python"), *PIP, str(artifact)], check=True, timeout=600,
                   cwd=base)
    return base / "venv" / "bin"


def _run(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Run outside the checkout, with nothing of the test's environment: only the venv can supply modules.
    return subprocess.run([*args], capture_output=True, text=True, timeout=120, cwd=bin_dir.parent,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "200"})


def test_the_wheel_and_the_sdist_hold_only_the_sdk(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = wheel.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        declared = wheel.read(entry_points).decode()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"toolfabric"}, sorted(tops)
    assert "toolfabric/client.py" in names and "toolfabric/v1/fabric_pb2.py" in names
    assert "toolfabric/demo/question.jpg" in names  # package data travels with the package
    # The server's entry points belong to the server distribution; the SDK declares only its own command.
    assert "toolfabric.commands" not in declared and "toolfabric.tools" not in declared, declared
    assert re.search(r"^toolfabric = toolfabric\.cli\.main:main$", declared, re.M), declared

    with tarfile.open(dist["sdist"]) as sdist:
        members = [m.split("/", 1)[1] for m in sdist.getnames() if "/" in m]
    code = {m.split("/")[0] for m in members if m.endswith(".py")}
    assert code == {"toolfabric"}, sorted(code)
    assert not {m.split("/")[0] for m in members} & {"toolfabric_server", "server", "tests", "bench"}


def test_the_server_distribution_is_one_package(dist: dict[str, Path]) -> None:
    """toolfabric-server installs `toolfabric_server` and nothing else, with its model repository and entry points."""
    with zipfile.ZipFile(dist["server_wheel"]) as wheel:
        names = wheel.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        declared = wheel.read(entry_points).decode()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"toolfabric_server"}, sorted(tops)
    layers = {name.split("/")[1] for name in names if name.startswith("toolfabric_server/") and name.count("/") > 1}
    assert {"gateway", "engine", "tools", "model", "common"} <= layers, sorted(layers)
    assert "toolfabric_server/model/repository/toolfabric_baseline/config.pbtxt" in names
    assert re.search(r"^server = toolfabric_server\.cli:register$", declared, re.M), declared
    assert re.search(r"^ocr = toolfabric_server\.tools\.ocr\.plugin:PLUGIN$", declared, re.M), declared


def test_help_works_and_names_the_server_install(sdk_venv: Path) -> None:
    shown = _run(sdk_venv, "toolfabric", "--help")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    help_text = " ".join(shown.stdout.split())  # argparse wraps the epilog
    assert "run one agent turn" in help_text and "trajectories" in help_text, help_text
    assert " ".join(SERVER_INSTALL.split()) in help_text and "pip install ./server" in help_text, help_text
    assert not shown.stderr, shown.stderr

    # A server command, and the bare command, end in one line each, never a traceback.
    up = _run(sdk_venv, "toolfabric", "up")
    assert up.returncode == 2 and not up.stdout
    assert up.stderr.strip().splitlines() == [
        f"toolfabric: 'up' is not a client command. Server commands (up, gateway, worker, index, eval, ...) "
        f"are not installed: they come with {SERVER_INSTALL}."], up.stderr
    bare = _run(sdk_venv, "toolfabric")
    assert bare.returncode == 2 and "the following arguments are required: command" in bare.stderr, bare.stderr
    assert "Traceback" not in bare.stderr + up.stderr


def _probe(bin_dir: Path, target: str, what: str) -> tuple[str, list[str]]:
    out = _run(bin_dir, str(bin_dir / "python"), "-c", PROBE, target, what)
    assert f"FROM {bin_dir.parent}/lib/" in out.stdout, out.stdout + out.stderr  # the installed SDK, not the checkout
    modules = json.loads(out.stdout.rsplit("MODULES ", 1)[1])
    return out.stdout + out.stderr, modules


def test_the_installed_sdk_asks_the_gateway(stack: EmbeddedStack, sdk_venv: Path) -> None:
    output, modules = _probe(sdk_venv, stack.target, "ask")
    assert "ANSWER from the SDK STATUS_COMPLETED" in output, output
    assert not set(SERVER_SIDE) & set(modules), output


def test_the_installed_cli_runs_a_turn(stack: EmbeddedStack, sdk_venv: Path) -> None:
    output, modules = _probe(sdk_venv, stack.target, "run")
    assert "from the CLI" in output and "EXIT 0" in output, output
    assert not set(SERVER_SIDE) & set(modules), output


def test_the_venvs_are_the_oldest_and_the_newest_python(sdk_venv: Path, request: pytest.FixtureRequest) -> None:
    out = _run(sdk_venv, str(sdk_venv / "python"), "-c", "import sys; print(*sys.version_info[:2])").stdout
    version = tuple(int(n) for n in out.split())
    if PYENV.exists():
        assert version == (3, 9) if request.node.callspec.params["sdk_venv"] == "oldest" else version >= (3, 13)
