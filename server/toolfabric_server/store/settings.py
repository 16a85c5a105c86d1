"""Settings of the durable store (TOOLFABRIC_STORE_*).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from toolfabric_server.common.settings import config


class StoreSettings(BaseSettings):
    """The durable store: trajectories and their images, API keys (SQLite by default, PostgreSQL in production)."""

    model_config = config("TOOLFABRIC_STORE_")

    # SQLAlchemy URL; empty = SQLite at <data_dir>/store.sqlite3. PostgreSQL: postgresql+psycopg://user:pw@host/db
    url: SecretStr = SecretStr("")
    # Content-addressed image directory (a volume in production); empty = <data_dir>/images.
    images_dir: str = ""
    # Trajectories (and images no other trajectory references) older than this are deleted; 0 = keep forever.
    retention_days: float = Field(default=0.0, ge=0)
    # How often a gateway applies the retention.
    purge_interval_s: float = Field(default=3600.0, gt=0)
    # Connections per process (both engines): a reader thread checks one out, uses it alone, gives it back.
    # Readers beyond pool_size + max_overflow wait up to pool_timeout_s, then get UNAVAILABLE.
    pool_size: int = Field(default=8, ge=1)
    max_overflow: int = Field(default=8, ge=0)
    pool_timeout_s: float = Field(default=10.0, gt=0)
    # SQLite only: how long a writer waits for another process's write lock before failing.
    sqlite_busy_timeout_s: float = Field(default=30.0, gt=0)


@lru_cache(maxsize=1)
def store() -> StoreSettings:
    return StoreSettings()
