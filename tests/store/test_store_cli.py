"""`toolfabric store delete | purge` on the store the settings name (here SQLite under a data dir)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import clear_settings_cache
from tests.store.events import new, png, run, stored
from toolfabric.cli.main import main
from toolfabric_server.devstack.redis_server import RedisServer
from toolfabric_server.store import ImageFiles, TrajectoryStore
from toolfabric_server.store.settings import StoreSettings
from toolfabric_server.store.trajectories import make_engine


@pytest.fixture
def store_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
              redis_server: RedisServer):
    """`toolfabric store …` in this process, on the store of a data dir of its own (and the session's Redis)."""
    monkeypatch.setenv("TOOLFABRIC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TOOLFABRIC_STORE_URL", "")
    clear_settings_cache()

    def run(*args: str) -> tuple[int, str]:
        code = main(["store", *args])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    yield run
    clear_settings_cache()


def test_delete_and_purge_remove_trajectories_and_their_unshared_images(tmp_path: Path, store_cli) -> None:  # type: ignore[no-untyped-def]
    store = TrajectoryStore(make_engine("", tmp_path, StoreSettings()), ImageFiles(tmp_path / "images"))
    own, shared = stored(png((9, 9, 9))), stored(png((7, 7, 7)))
    store.write([new("old", created_at=100.0), new("new")],
                run("old", inputs=[own[0], shared[0]], at=150.0) + run("new", inputs=[shared[0]]), dict([own, shared]))
    store.close()

    code, out = store_cli("delete", "old", "ghost")
    assert code == 1 and "deleted 1 trajectories (1 from the store, 0 from Redis) and 1 images; 1 id(s) were " \
                         f"found nowhere (looked in the store (SQLite at {tmp_path.resolve() / 'store.sqlite3'}" in out
    assert "and Redis (redis://" in out
    assert not (tmp_path / "images").joinpath(own[0][7:9], own[0][9:]).exists()
    code, out = store_cli("purge", "--older-than-days", "1")
    assert code == 0 and "deleted 1 trajectories" in out and "and 1 images" in out
    assert not any(p.is_file() for p in (tmp_path / "images").rglob("*"))
    assert store_cli("purge", "--older-than-days", "0")[0] == 2


def test_delete_without_a_store_names_where_it_looked_and_creates_nothing(tmp_path: Path, store_cli) -> None:  # type: ignore[no-untyped-def]
    code, err = store_cli("delete", "some-id")
    assert code == 2 and not (tmp_path / "store.sqlite3").exists()
    assert f"there is no store at SQLite at {tmp_path.resolve() / 'store.sqlite3'}" in err
    assert "TOOLFABRIC_DATA_DIR" in err and "nothing was changed" in err
