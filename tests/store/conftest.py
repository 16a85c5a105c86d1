"""The store under test on both engines: SQLite in a temp dir and a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from toolfabric_server.store import ImageFiles, TrajectoryStore
from toolfabric_server.store.schema import metadata
from toolfabric_server.store.settings import StoreSettings
from toolfabric_server.store.trajectories import make_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TrajectoryStore]:
    if request.param == "sqlite":
        engine = make_engine("", tmp_path, StoreSettings())
    else:
        engine = make_engine(request.getfixturevalue("postgres_server").url, tmp_path, StoreSettings())
        metadata.drop_all(engine)  # each test starts empty
    opened = TrajectoryStore(engine, ImageFiles(tmp_path / "images"))
    yield opened
    if request.param == "postgresql":
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(sa.delete(table))
    opened.close()
