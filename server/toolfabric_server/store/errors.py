"""Errors of the durable store.

    StoreError
    ├── TrajectoryNotInStore   no such trajectory (never stored, or deleted by retention)
    ├── ImageNotInStore        no such image file
    ├── BadPageToken           a page token this store did not issue
    └── StoreUnavailable       the database cannot be reached or failed
"""

from __future__ import annotations


class StoreError(Exception):
    pass


class TrajectoryNotInStore(StoreError):
    pass


class ImageNotInStore(StoreError):
    pass


class BadPageToken(StoreError, ValueError):
    pass


class StoreUnavailable(StoreError):
    pass
