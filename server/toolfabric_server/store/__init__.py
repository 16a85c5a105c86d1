"""The durable store: every trajectory (events, usage, labels, eval run) and every image it saw or made.

One SQLAlchemy Core schema serves SQLite (the embedded default, `<data_dir>/store.sqlite3`) and
PostgreSQL (production, `TOOLFABRIC_STORE_URL`); images live once each in a content-addressed
directory. Redis holds the hot, expiring copy; this is the one that stays.
"""

from toolfabric_server.store.errors import StoreError, TrajectoryNotInStore
from toolfabric_server.store.images import ImageFiles
from toolfabric_server.store.trajectories import Page, TrajectoryFilter, TrajectoryStore, open_store

__all__ = ["ImageFiles", "Page", "StoreError", "TrajectoryFilter", "TrajectoryNotInStore", "TrajectoryStore",
           "open_store"]
