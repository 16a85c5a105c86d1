"""Reading and writing trajectories in the store.

Writes come in batches (one transaction for whatever the gateway's writer thread has gathered),
so a step costs one small transaction however many events it produced. Reads serve GetTrajectory,
GetImage and ListTrajectories once Redis has expired the hot copy.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.dialects import postgresql, sqlite

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.common import sqlite_db
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.store import schema
from toolfabric_server.store.errors import BadPageToken, ImageNotInStore, TrajectoryNotInStore
from toolfabric_server.store.images import ImageFiles
from toolfabric_server.store.settings import StoreSettings

log = logging.getLogger(__name__)
MAX_PAGE = 1000
WRITE = "toolfabric_write"  # execution option of the store's write transactions
DEFAULT_PAGE = 50


@dataclass
class NewTrajectory:
    """What is known when a trajectory starts."""

    trajectory_id: str
    question: str
    mode: int
    model: str
    created_at: float
    labels: dict[str, str] = field(default_factory=dict)
    eval_run: str = ""
    budgets: dict[str, float] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)


@dataclass
class StoredImage:
    data: bytes
    mime_type: str
    width: int
    height: int


@dataclass
class TrajectoryFilter:
    statuses: Sequence[int] = ()
    model: str = ""
    mode: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    eval_run: str = ""
    created_after: float | None = None
    created_before: float | None = None
    question_contains: str = ""


@dataclass
class Page:
    trajectories: list[pb.TrajectorySummary]
    next_token: str


def timestamp(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    out = Timestamp()
    out.FromNanoseconds(round(seconds * 1e9))
    return out


def image_refs(event: pb.RunEvent) -> list[pb.ImageRef]:
    """The images an event names (inputs on `started`, tool outputs on `observation`)."""
    kind = event.WhichOneof("event")
    if kind == "started":
        return list(event.started.images)
    if kind == "observation":
        return list(event.observation.images)
    return []


def make_engine(url: str, data_dir: Path, settings: StoreSettings) -> sa.Engine:
    """An engine safe to share between any number of threads, by construction.

    Both dialects get a QueuePool: a connection belongs to the one thread that checked it out until it
    is returned, so no two threads ever use one connection at once and none is closed under a reader.
    (The `sqlite://` URL alone would pick SingletonThreadPool, which closes other threads' connections
    once more than five threads used it: readers then crashed inside libsqlite3.) SQLite connections are
    opened with check_same_thread=False — a returned connection may be checked out by another thread —
    in WAL mode with a busy timeout, so readers never wait for the writer and writers queue for each
    other instead of failing. A single writer thread is not needed: WAL serializes writers itself, and
    the gateway already writes from one thread (gateway/archive.py).
    """
    pool = {"poolclass": sa.QueuePool, "pool_size": settings.pool_size, "max_overflow": settings.max_overflow,
            "pool_timeout": settings.pool_timeout_s}
    if not url:
        path = data_dir / "store.sqlite3"
        busy = settings.sqlite_busy_timeout_s
        engine = sa.create_engine("sqlite://", creator=lambda: sqlite_db.connect(path, busy), **pool)

        # The connection is in autocommit; SQLAlchemy's documented recipe for real SQLite transactions.
        # A write takes the write lock up front (no deadlocking lock upgrade); a read is a deferred
        # transaction — a WAL snapshot that never blocks, nor is blocked by, the writer or other readers.
        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")

        return engine
    return sa.create_engine(url, pool_pre_ping=True, **pool)


def sqlite_path(store: StoreSettings, common: CommonSettings) -> Path | None:
    """The SQLite file of the embedded default (no TOOLFABRIC_STORE_URL), or None for a database URL."""
    return None if store.url.get_secret_value() else (Path(common.data_dir) / "store.sqlite3").resolve()


def describe(store: StoreSettings, common: CommonSettings) -> str:
    """The store the settings name, for messages: the SQLite file, or the database URL without its password."""
    path = sqlite_path(store, common)
    if path is not None:
        return f"SQLite at {path} (TOOLFABRIC_DATA_DIR={common.data_dir})"
    return sa.engine.make_url(store.url.get_secret_value()).render_as_string(hide_password=True)


def open_store(store: StoreSettings, common: CommonSettings) -> TrajectoryStore:
    data_dir = Path(common.data_dir)
    images_dir = Path(store.images_dir) if store.images_dir else data_dir / "images"
    return TrajectoryStore(make_engine(store.url.get_secret_value(), data_dir, store), ImageFiles(images_dir))


class TrajectoryStore:
    def __init__(self, engine: sa.Engine, files: ImageFiles) -> None:
        self.engine, self.files = engine, files
        self._writes = engine.execution_options(**{WRITE: True})  # same pool; SQLite begins these IMMEDIATE
        self._insert_ignore = _insert_ignore_for(engine.dialect.name)
        self.create_tables()

    def create_tables(self) -> None:
        """Idempotent; two processes creating the tables at once both end up with them."""
        for attempt in range(3):
            try:
                schema.metadata.create_all(self.engine, checkfirst=True)
                return
            except sa.exc.DBAPIError:  # the other process won the race between check and create
                if attempt == 2:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        self.engine.dispose()

    # -- writing --------------------------------------------------------------------------------------

    def write(self, begun: Sequence[NewTrajectory] = (), events: Sequence[pb.RunEvent] = (),
              images: dict[str, StoredImage] | None = None) -> None:
        """One transaction: new trajectories, their events (a replayed event is ignored), the images they name."""
        images = images or {}
        for image in images.values():
            self.files.put(image.data)  # before the rows that point at it
        with self._writes.begin() as conn:
            if begun:
                conn.execute(self._insert_ignore(schema.trajectories), [_row(t) for t in begun])
                label_rows = [{"trajectory_id": t.trajectory_id, "key": k, "value": v}
                              for t in begun for k, v in t.labels.items()]
                if label_rows:
                    conn.execute(self._insert_ignore(schema.labels), label_rows)
            if images:
                conn.execute(self._insert_ignore(schema.images), [
                    {"blob": ref, "mime_type": i.mime_type, "width": i.width, "height": i.height,
                     "size_bytes": len(i.data)} for ref, i in images.items()])
            if not events:
                return
            conn.execute(self._insert_ignore(schema.events), [
                {"trajectory_id": e.trajectory_id, "seq": e.seq, "step": e.step, "kind": e.WhichOneof("event") or "",
                 "data": e.SerializeToString()} for e in events])
            refs = {(e.trajectory_id, r.blob) for e in events for r in image_refs(e) if r.blob}
            if refs:
                conn.execute(self._insert_ignore(schema.image_refs),
                             [{"trajectory_id": t, "blob": b} for t, b in sorted(refs)])
            for trajectory_id, values in _updates(events).items():
                conn.execute(schema.trajectories.update().where(schema.trajectories.c.id == trajectory_id)
                             .values(**values))

    def has_image(self, ref: str) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(schema.images.c.blob).where(schema.images.c.blob == ref)).first()
        return found is not None and self.files.exists(ref)

    # -- reading --------------------------------------------------------------------------------------

    def get(self, trajectory_id: str, *, with_events: bool = True) -> pb.Trajectory:
        t = schema.trajectories
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == trajectory_id)).mappings().first()
            if row is None:
                raise TrajectoryNotInStore(f"no trajectory {trajectory_id!r} in the store")
            data = [] if not with_events else conn.execute(
                sa.select(schema.events.c.data).where(schema.events.c.trajectory_id == trajectory_id)
                .order_by(schema.events.c.seq)).scalars().all()
        out = pb.Trajectory(
            trajectory_id=row["id"], trace_id=row["trace_id"], status=cast(pb.Status, row["status"]),
            question=row["question"], mode=cast(pb.Mode, row["mode"]), model=row["model"], answer=row["answer"],
            events=[pb.RunEvent.FromString(d) for d in data], labels=row["labels"], eval_run=row["eval_run"],
            budgets=pb.Budgets(**row["budgets"]), created_at=timestamp(row["created_at"]),
            finished_at=timestamp(row["finished_at"]),
        )
        if row["usage"]:
            out.usage.ParseFromString(row["usage"])
        return out

    def image(self, ref: str) -> tuple[bytes, str, int, int]:
        """(bytes, mime type, width, height) of a stored image."""
        i = schema.images
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(i).where(i.c.blob == ref)).mappings().first()
        if row is None:
            raise ImageNotInStore(f"image {ref} is not in the store")
        return self.files.get(ref), row["mime_type"], row["width"], row["height"]

    def page(self, where: TrajectoryFilter, page_size: int = 0, page_token: str = "") -> Page:
        """Newest first; the token continues after the last trajectory of the previous page."""
        t = schema.trajectories
        size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
        query = sa.select(t).where(*_conditions(where)).order_by(t.c.created_at.desc(), t.c.id.desc())
        if page_token:
            created, last_id = _decode_token(page_token)
            query = query.where(sa.or_(t.c.created_at < created,
                                       sa.and_(t.c.created_at == created, t.c.id < last_id)))
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(size + 1)).mappings().all()
        more = len(rows) > size
        rows = rows[:size]
        token = _encode_token(rows[-1]["created_at"], rows[-1]["id"]) if more and rows else ""
        return Page([_summary(r) for r in rows], token)

    def ids(self, where: TrajectoryFilter) -> list[str]:
        t = schema.trajectories
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(t.c.id).where(*_conditions(where))
                                     .order_by(t.c.created_at, t.c.id)).scalars())

    # -- deleting -------------------------------------------------------------------------------------

    def delete(self, trajectory_ids: Iterable[str]) -> tuple[int, int]:
        """Deletes trajectories and every image no remaining trajectory references: (trajectories, images)."""
        deleted, orphans = self.erase(trajectory_ids)
        return deleted, len(orphans)

    def referenced(self, refs: Iterable[str]) -> set[str]:
        """Of `refs`, the images some trajectory in the store still references."""
        wanted = list(set(refs))
        if not wanted:
            return set()
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(schema.image_refs.c.blob)
                                    .where(schema.image_refs.c.blob.in_(wanted))).scalars())

    def expired(self, older_than: float) -> list[str]:
        """Ids of what finished (or started) before `older_than` (epoch seconds): retention's candidates."""
        t = schema.trajectories
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(t.c.id).where(
                sa.func.coalesce(t.c.finished_at, t.c.created_at) < older_than)).scalars())

    def erase(self, trajectory_ids: Iterable[str]) -> tuple[int, list[str]]:
        """`delete`, saying which images went: (trajectories deleted, image refs deleted)."""
        ids = list(trajectory_ids)
        if not ids:
            return 0, []
        with self._writes.begin() as conn:
            blobs = set(conn.execute(sa.select(schema.image_refs.c.blob)
                                     .where(schema.image_refs.c.trajectory_id.in_(ids))).scalars())
            for table in (schema.events, schema.labels, schema.image_refs):
                conn.execute(table.delete().where(table.c.trajectory_id.in_(ids)))
            deleted = conn.execute(schema.trajectories.delete().where(schema.trajectories.c.id.in_(ids))).rowcount
            still_used = set(conn.execute(sa.select(schema.image_refs.c.blob)
                                          .where(schema.image_refs.c.blob.in_(blobs))).scalars()) if blobs else set()
            orphans = sorted(blobs - still_used)
            if orphans:
                conn.execute(schema.images.delete().where(schema.images.c.blob.in_(orphans)))
        for ref in orphans:  # after the commit: a failed transaction never loses a file
            self.files.delete(ref)
        return deleted, orphans

    def purge(self, older_than: float) -> tuple[int, int]:
        """Retention: deletes what finished (or started) before `older_than` (epoch seconds)."""
        ids = self.expired(older_than)
        total = (0, 0)
        for start in range(0, len(ids), 500):
            done = self.delete(ids[start:start + 500])
            total = (total[0] + done[0], total[1] + done[1])
        return total


def _insert_ignore_for(dialect: str) -> Any:
    if dialect == "postgresql":
        return lambda table: postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return lambda table: sqlite.insert(table).on_conflict_do_nothing()
    raise ValueError(f"the store supports SQLite and PostgreSQL, not {dialect!r}")


def _row(t: NewTrajectory) -> dict[str, Any]:
    return {"id": t.trajectory_id, "trace_id": "", "status": pb.STATUS_RUNNING, "question": t.question,
            "mode": t.mode, "model": t.model, "answer": "", "reason": "", "eval_run": t.eval_run,
            "labels": t.labels, "budgets": t.budgets, "sampling": t.sampling, "usage": None, "steps": 0,
            "tool_calls": 0, "created_at": t.created_at, "finished_at": None}


def _updates(events: Sequence[pb.RunEvent]) -> dict[str, dict[str, Any]]:
    """The trajectory columns these events change, per trajectory (later events win)."""
    out: dict[str, dict[str, Any]] = {}
    for e in events:
        kind = e.WhichOneof("event")
        values = out.setdefault(e.trajectory_id, {})
        if kind == "started":
            values["trace_id"] = e.started.trace_id
        elif kind == "answer":
            values["answer"] = e.answer.text
        elif kind == "usage":
            values.update(usage=e.usage.SerializeToString(), steps=e.usage.steps,
                          tool_calls=sum(e.usage.tool_calls.values()))
        elif kind == "finished":
            values.update(status=e.finished.status, reason=e.finished.reason,
                          finished_at=e.time.ToNanoseconds() / 1e9 if e.HasField("time") else time.time())
    return {k: v for k, v in out.items() if v}


def _conditions(where: TrajectoryFilter) -> list[Any]:
    t = schema.trajectories
    out: list[Any] = []
    if where.statuses:
        out.append(t.c.status.in_(list(where.statuses)))
    if where.model:
        out.append(t.c.model == where.model)
    if where.mode:
        out.append(t.c.mode == where.mode)
    if where.eval_run:
        out.append(t.c.eval_run == where.eval_run)
    if where.created_after is not None:
        out.append(t.c.created_at >= where.created_after)
    if where.created_before is not None:
        out.append(t.c.created_at < where.created_before)
    if where.question_contains:
        out.append(t.c.question.icontains(where.question_contains, autoescape=True))
    for key, value in sorted(where.labels.items()):
        out.append(t.c.id.in_(sa.select(schema.labels.c.trajectory_id)
                              .where(schema.labels.c.key == key, schema.labels.c.value == value)))
    return out


def _summary(row: Any) -> pb.TrajectorySummary:
    return pb.TrajectorySummary(
        trajectory_id=row["id"], trace_id=row["trace_id"], status=row["status"], question=row["question"],
        mode=row["mode"], model=row["model"], answer=row["answer"], created_at=timestamp(row["created_at"]),
        finished_at=timestamp(row["finished_at"]), labels=row["labels"], eval_run=row["eval_run"],
        steps=row["steps"], tool_calls=row["tool_calls"], reason=row["reason"])


def _encode_token(created_at: float, trajectory_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, trajectory_id]).encode()).decode()


def _decode_token(token: str) -> tuple[float, str]:
    try:
        created, last_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return float(created), str(last_id)
    except (ValueError, TypeError) as exc:
        raise BadPageToken(f"page token {token[:40]!r} was not issued by this store") from exc
