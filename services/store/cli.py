"""`toolfabric store delete ID… | purge --older-than-days D`: the store's maintenance commands.

They act on the store the settings name (TOOLFABRIC_STORE_URL, else SQLite under the data dir) and, given
`erase` (services/cli.py passes gateway/erasure.py), on Redis at TOOLFABRIC_REDIS_URL too: a deleted
trajectory is gone from every tier, not only from the store.
"""

from __future__ import annotations

import argparse
import time
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="store_command", required=True)
    delete = sub.add_parser("delete", help="delete trajectories and the images no other trajectory uses")
    delete.add_argument("ids", nargs="+", metavar="TRAJECTORY_ID")
    purge = sub.add_parser("purge", help="apply a retention now: delete what finished before a cut-off")
    purge.add_argument("--older-than-days", type=float, required=True)


def main(args: argparse.Namespace, erase: Any = None) -> int:
    """`erase`: the module that deletes from every tier (`erase(ids, store, redis)`, `purge(cutoff, …)`)."""
    from services.common import redis_clients, settings
    from services.store import open_store

    if args.store_command == "purge" and args.older_than_days <= 0:
        print("toolfabric store purge: --older-than-days must be positive")
        return 2
    store = open_store(settings.store(), settings.common())
    client = redis_clients.sync_client("state") if erase is not None else None
    blobs = redis_clients.sync_client("cache") if erase is not None else None
    try:
        if args.store_command == "delete":
            if erase is None:
                trajectories, images = store.delete(args.ids)
                where, cached = "", 0
            else:
                erased = erase.erase(args.ids, store, client, blobs)
                trajectories, images = erased.trajectories, erased.images
                where = f" ({erased.stored} from the store, {erased.hot} from Redis)"
                cached = erased.cached
            missing = len(set(args.ids)) - trajectories
            print(f"deleted {trajectories} trajectories{where} and {images} images"
                  + (f", {cached} tool-result cache entries" if cached else "")
                  + (f"; {missing} id(s) were found nowhere" if missing else ""))
            return 0 if not missing else 1
        cutoff = time.time() - args.older_than_days * 86400
        if erase is None:
            trajectories, images = store.purge(cutoff)
        else:
            erased = erase.purge(cutoff, store, client, blobs)
            trajectories, images = erased.trajectories, erased.images
        print(f"deleted {trajectories} trajectories older than {args.older_than_days:g} days and {images} images")
        return 0
    finally:
        store.close()
        for opened in (client, blobs):
            if opened is not None:
                opened.close()
