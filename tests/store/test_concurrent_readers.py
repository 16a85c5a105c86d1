"""Any number of threads read the store while its writer writes, on SQLite and on PostgreSQL.

The gateway reads from a thread pool (GetTrajectory, GetImage, ListTrajectories once Redis forgot a record)
while its writer thread stores every event. With SQLAlchemy's SingletonThreadPool (what a bare `sqlite://`
URL picks), the sixth thread's connection closed another thread's under it: "Cannot operate on a closed
database", then SIGSEGV inside libsqlite3 — this test then dies with the process.
"""

from __future__ import annotations

import random
import threading
import time

from tests.store.events import new, png, run, stored
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.store import TrajectoryFilter, TrajectoryStore

READERS = 60
WRITTEN = 120


def test_sixty_readers_and_the_writer_share_the_store_safely(store: TrajectoryStore) -> None:
    seed = [stored(png((i, 0, 0))) for i in range(8)]
    store.write([new(f"seed{i}") for i in range(8)],
                [e for i in range(8) for e in run(f"seed{i}", inputs=[seed[i][0]])], dict(seed))
    failures: list[BaseException] = []
    reads = [0] * READERS
    writing = threading.Event()
    writing.set()

    def reader(n: int) -> None:
        pick = random.Random(n)
        try:
            while writing.is_set():
                store.page(TrajectoryFilter(), page_size=20)
                got = store.get(f"seed{pick.randrange(8)}")
                assert len(got.events) == 8
                ref = seed[pick.randrange(8)][0]
                assert store.image(ref)[0] == dict(seed)[ref].data
                reads[n] += 1
        except BaseException as exc:  # every failure is reported below
            failures.append(exc)

    threads = [threading.Thread(target=reader, args=(n,), daemon=True) for n in range(READERS)]
    for t in threads:
        t.start()
    started = time.monotonic()
    try:
        for i in range(WRITTEN):  # the gateway's writer: a trajectory begins, then its events come step by step
            events = run(f"w{i}", at=1_700_000_100.0 + i)
            store.write([new(f"w{i}", created_at=1_700_000_100.0 + i)], events[:4])
            store.write((), events[4:])
    finally:
        writing.clear()
        for t in threads:
            t.join(60)
    elapsed = time.monotonic() - started
    assert failures == [], failures[:3]
    assert not any(t.is_alive() for t in threads), "a reader hung"
    assert min(reads) > 0, f"a reader never got through in {elapsed:.1f}s: {reads}"
    everything = store.ids(TrajectoryFilter())
    assert len(everything) == 8 + WRITTEN
    assert store.ids(TrajectoryFilter(statuses=[pb.STATUS_RUNNING])) == []  # no RUNNING leftovers
