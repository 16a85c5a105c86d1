"""`toolfabric trajectories`: recorded trajectories from the durable store, filtered, newest first."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any, Dict, Union

from rich.console import Console
from rich.table import Table

from toolfabric.listing import parse_labels
from toolfabric.v1.names import MODES, status_name


def _time(text: str) -> Union[datetime, float]:
    """ISO 8601 (naive = UTC) or epoch seconds."""
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="127.0.0.1:50051", help="gateway address")
    parser.add_argument("--status", action="append", default=[],
                        help="completed, failed, cancelled, budget_exhausted, running (repeatable)")
    parser.add_argument("--model", default="")
    parser.add_argument("--mode", choices=list(MODES))
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="repeatable; all must match")
    parser.add_argument("--eval-run", default="")
    parser.add_argument("--since", help="created at or after (ISO 8601 or epoch seconds)")
    parser.add_argument("--until", help="created before (ISO 8601 or epoch seconds)")
    parser.add_argument("--question", default="", help="text the question contains (case-insensitive)")
    parser.add_argument("--limit", type=int, default=50, help="at most this many (0 = all)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from toolfabric.client import Client
    from toolfabric.exceptions import ToolfabricError

    try:
        filters: Dict[str, Any] = {
            "status": args.status, "model": args.model, "mode": args.mode, "labels": parse_labels(args.label),
            "eval_run": args.eval_run, "question": args.question,
            "since": _time(args.since) if args.since else None, "until": _time(args.until) if args.until else None}
    except ValueError as exc:
        print(f"toolfabric trajectories: {exc}", file=sys.stderr)
        return 2
    console = Console(highlight=False)
    rows = []
    shown = 0
    with Client(args.target) as client:
        try:
            page_size = min(args.limit, 1000) if args.limit else 1000
            for summary in client.iter_trajectories(**filters, page_size=page_size):
                if args.json:
                    print(json.dumps(MessageToDict(summary), ensure_ascii=False))
                else:
                    rows.append((summary.trajectory_id, summary.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
                                  status_name(summary.status),
                                  summary.model, str(summary.steps), str(summary.tool_calls),
                                  " ".join(f"{k}={v}" for k, v in sorted(summary.labels.items())),
                                  summary.question[:60]))
                shown += 1
                if args.limit and shown >= args.limit:
                    break
        except ToolfabricError as exc:  # worded as every client command words a gateway's refusal
            print(f"toolfabric trajectories: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        except ValueError as exc:
            print(f"toolfabric trajectories: {exc}", file=sys.stderr)
            return 2
    if not args.json:
        # Ids are never cut (they are what the other commands take) and every column keeps a readable width:
        # on a narrow terminal the table is wider than the screen rather than unreadable.
        table = Table(highlight=False)
        widths = {"trajectory": max((len(r[0]) for r in rows), default=10), "created (UTC)": 19, "status": 9,
                  "model": 12, "steps": 5, "calls": 5, "labels": 12, "question": 24}
        for header, width in widths.items():
            table.add_column(header, min_width=width, overflow="fold",
                             no_wrap=header in ("trajectory", "created (UTC)"))
        for row in rows:
            table.add_row(*row)
        console = Console(highlight=False, width=max(console.width, sum(widths.values()) + 3 * len(widths) + 1))
        console.print(table)
        console.print(f"{shown} trajectories", style="dim")
    return 0
