"""`toolfabric store delete ID… | purge --older-than-days D`: the store's maintenance commands.

They act on the store the settings name (TOOLFABRIC_STORE_URL, else SQLite under the data dir) and, given
`erase` (cli.py passes gateway/erasure.py), on Redis at TOOLFABRIC_REDIS_URL too: a deleted
trajectory is gone from every tier, not only from the store.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="store_command", required=True)
    delete = sub.add_parser("delete", help="delete trajectories and the images no other trajectory uses")
    delete.add_argument("ids", nargs="+", metavar="TRAJECTORY_ID")
    purge = sub.add_parser("purge", help="apply a retention now: delete what finished before a cut-off")
    purge.add_argument("--older-than-days", type=float, required=True)


def main(args: argparse.Namespace, erase: Any = None) -> int:
    """`erase`: the module that deletes from every tier (`erase(ids, store, redis)`, `purge(cutoff, …)`)."""
    import redis

    from toolfabric_server.common import redis_clients
    from toolfabric_server.common.settings import CommonSettings
    from toolfabric_server.store import open_store
    from toolfabric_server.store.settings import StoreSettings
    from toolfabric_server.store.trajectories import describe, sqlite_path

    command = f"toolfabric store {args.store_command}"
    if args.store_command == "purge" and args.older_than_days <= 0:
        print(f"{command}: --older-than-days must be positive", file=sys.stderr)
        return 2
    common, store_config = CommonSettings(), StoreSettings()  # the command's start: read once, passed down
    where = describe(store_config, common)
    missing_file = sqlite_path(store_config, common)
    if missing_file is not None and not missing_file.exists():  # opening it would create an empty store
        print(f"{command}: there is no store at {where}; nothing was changed. Run it with the stack's environment "
              "(`toolfabric up` prints its store; set TOOLFABRIC_DATA_DIR or TOOLFABRIC_STORE_URL to it).",
              file=sys.stderr)
        return 2
    redis_url = common.redis_url
    store = open_store(store_config, common)
    client = redis_clients.sync_client("state", common) if erase is not None else None
    blobs = redis_clients.sync_client("cache", common) if erase is not None else None
    tiers = f"the store ({where})" + (f" and Redis ({_without_password(redis_url)})" if client is not None else "")
    try:
        if args.store_command == "delete":
            if erase is None:
                trajectories, images = store.delete(args.ids)
                counts, cached = "", 0
            else:
                erased = erase.erase(args.ids, store, client, blobs, common=common)
                trajectories, images = erased.trajectories, erased.images
                counts = f" ({erased.stored} from the store, {erased.hot} from Redis)"
                cached = erased.cached
            missing = len(set(args.ids)) - trajectories
            print(f"deleted {trajectories} trajectories{counts} and {images} images"
                  + (f", {cached} tool-result cache entries" if cached else "")
                  + (f"; {missing} id(s) were found nowhere (looked in {tiers})" if missing else f" from {tiers}"))
            return 0 if not missing else 1
        cutoff = time.time() - args.older_than_days * 86400
        if erase is None:
            trajectories, images = store.purge(cutoff)
        else:
            erased = erase.purge(cutoff, store, client, blobs, common=common)
            trajectories, images = erased.trajectories, erased.images
        print(f"deleted {trajectories} trajectories older than {args.older_than_days:g} days and {images} images "
              f"from {tiers}")
        return 0
    except redis.ConnectionError as exc:
        print(f"{command}: cannot reach Redis at {_without_password(redis_url)} (TOOLFABRIC_REDIS_URL): {exc}",
              file=sys.stderr)
        return 2
    finally:
        store.close()
        for opened in (client, blobs):
            if opened is not None:
                opened.close()


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
