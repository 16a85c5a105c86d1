"""`toolfabric store delete ID… | purge --older-than-days D`: the store's maintenance commands.

They act on the store the settings name (TOOLFABRIC_STORE_URL, else SQLite under the data dir); Redis's
hot copies of a deleted trajectory expire on their own.
"""

from __future__ import annotations

import argparse
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="store_command", required=True)
    delete = sub.add_parser("delete", help="delete trajectories and the images no other trajectory uses")
    delete.add_argument("ids", nargs="+", metavar="TRAJECTORY_ID")
    purge = sub.add_parser("purge", help="apply a retention now: delete what finished before a cut-off")
    purge.add_argument("--older-than-days", type=float, required=True)


def main(args: argparse.Namespace) -> int:
    from services.common import settings
    from services.store import open_store

    if args.store_command == "purge" and args.older_than_days <= 0:
        print("toolfabric store purge: --older-than-days must be positive")
        return 2
    store = open_store(settings.store(), settings.common())
    try:
        if args.store_command == "delete":
            trajectories, images = store.delete(args.ids)
            missing = len(set(args.ids)) - trajectories
            print(f"deleted {trajectories} trajectories and {images} images"
                  + (f"; {missing} id(s) were not in the store" if missing else ""))
            return 0 if not missing else 1
        trajectories, images = store.purge(time.time() - args.older_than_days * 86400)
        print(f"deleted {trajectories} trajectories older than {args.older_than_days:g} days and {images} images")
        return 0
    finally:
        store.close()
