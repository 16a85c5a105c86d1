"""API keys, stored hashed in the durable store's database (table `api_keys`), each belonging to a tenant.

A key is `tfk_<id>_<secret>`: the id (public, shown by `toolfabric keys list`) finds the row, and only
the SHA-256 of the whole key is stored — the secret is shown once, at creation. Keys are 256-bit
random, so a plain hash is as strong as a slow one here and costs microseconds per check.
The table lives in the database of `TOOLFABRIC_STORE_URL` (SQLite at <data_dir>/store.sqlite3 when
empty) under its own MetaData, created if missing, so it sits beside the other store tables.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

_metadata = sa.MetaData()
API_KEYS = sa.Table(
    "api_keys", _metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False, index=True),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("name", sa.String(256), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
)
_KEY = re.compile(r"^tfk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})$")
TENANT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class KeyRejected(Exception):
    """A key that is malformed, unknown, wrong or revoked; the message says which (never the secret)."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant: str
    name: str
    created_at: float
    revoked_at: float | None


def store_url(url: str, data_dir: str) -> str:
    """The durable store's SQLAlchemy URL: `url` (TOOLFABRIC_STORE_URL), or SQLite at <data_dir>/store.sqlite3."""
    if url:
        return url
    path = Path(data_dir).resolve() / "store.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyStore:
    """Create, list, revoke and verify keys. Blocking (SQLAlchemy Core): the gateway calls it off its loop."""

    def __init__(self, url: str) -> None:
        self._engine = sa.create_engine(url, pool_pre_ping=True)
        _metadata.create_all(self._engine, checkfirst=True)

    def create(self, tenant: str, name: str = "") -> tuple[str, ApiKey]:
        """A new key for `tenant`: (the secret key, shown only now; its record)."""
        if not TENANT.match(tenant):
            raise ValueError(f"tenant {tenant!r} must be 1-64 lowercase letters, digits, '.', '_' or '-'")
        key_id = secrets.token_hex(6)
        key = f"tfk_{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(key_id, tenant, name, time.time(), None)
        with self._engine.begin() as con:
            con.execute(API_KEYS.insert().values(key_id=key_id, tenant=tenant, key_hash=_hash(key), name=name,
                                                 created_at=record.created_at))
        return key, record

    def list(self, tenant: str | None = None) -> list[ApiKey]:
        query = sa.select(API_KEYS).order_by(API_KEYS.c.created_at)
        if tenant:
            query = query.where(API_KEYS.c.tenant == tenant)
        with self._engine.connect() as con:
            return [ApiKey(r.key_id, r.tenant, r.name, r.created_at, r.revoked_at) for r in con.execute(query)]

    def revoke(self, key_id: str) -> bool:
        """Revokes a key by its id (or the whole key); False if there is no such active key."""
        match = _KEY.match(key_id)
        key_id = match.group(1) if match else key_id
        with self._engine.begin() as con:
            done = con.execute(API_KEYS.update().where(API_KEYS.c.key_id == key_id, API_KEYS.c.revoked_at.is_(None))
                               .values(revoked_at=time.time()))
        return bool(done.rowcount)

    def verify(self, key: str) -> ApiKey:
        """The record of a valid key, or KeyRejected saying what is wrong with it."""
        match = _KEY.match(key)
        if not match:
            raise KeyRejected("malformed API key (expected tfk_<id>_<secret>)")
        with self._engine.connect() as con:
            row = con.execute(sa.select(API_KEYS).where(API_KEYS.c.key_id == match.group(1))).first()
        if row is None or not hmac.compare_digest(row.key_hash, _hash(key)):
            raise KeyRejected("invalid API key")
        if row.revoked_at is not None:
            raise KeyRejected(f"API key {row.key_id} has been revoked")
        return ApiKey(row.key_id, row.tenant, row.name, row.created_at, row.revoked_at)

    def close(self) -> None:
        self._engine.dispose()
