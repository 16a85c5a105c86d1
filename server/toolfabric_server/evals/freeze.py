"""`eval run --freeze`: the provider responses a run used, written as a bundle beside its results.

Each tool call's cache lookups are trailed in Redis under the trajectory's id (toolfabric_server.common.cache);
after the run, every trajectory's trail is read and each answer is copied from the cache tiers into
RUN/bundle/ (toolfabric_server.common.bundle), with the judge's replies. This needs the stack's Redis and
persistent cache (TOOLFABRIC_REDIS_URL, TOOLFABRIC_DATA_DIR or TOOLFABRIC_ELASTICSEARCH_URL): the same
environment as the stack's workers.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from toolfabric_server.common.bundle import BundleWriter
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.evals.errors import EvalError

BUNDLE_DIR = "bundle"


Answer = tuple[str, dict[str, Any], str]  # request key, cache entry, what was asked


async def collect(records: list[dict[str, Any]], common: CommonSettings) -> tuple[list[Answer], list[str]]:
    """Every answer the records' trajectories got, in order, and what could not be found any more (in the cache
    `common` names: the stack's)."""
    from toolfabric_server.common import redis_clients
    from toolfabric_server.common.cache import Cache
    from toolfabric_server.common.cache_store import open_store

    if not common.cache_url:
        raise EvalError("--freeze reads the stack's cache: set TOOLFABRIC_REDIS_URL (and TOOLFABRIC_DATA_DIR) as "
                        "for its workers")
    redis = redis_clients.async_client("cache", common)  # the hot cache and the trails live there
    store = open_store(common.elasticsearch_url, common.data_dir, common.elasticsearch_prefix)
    cache = Cache(redis, store)
    answers: list[Answer] = []
    missing: list[str] = []
    try:
        for record in records:
            if not record.get("trajectory_id"):
                continue
            for request_key, key, what in await cache.trail(record["trajectory_id"]):
                entry = await cache.recorded(key)
                if entry is None:
                    missing.append(what or key)
                else:
                    answers.append((request_key, entry, what))
    finally:
        await redis.aclose()  # type: ignore[attr-defined]
        store.close()
    return answers, missing


def freeze(run_dir: Path, records: list[dict[str, Any]], judge_cache: Path | None,
           source: dict[str, Any], common: CommonSettings) -> tuple[str, int, list[str]]:
    """Write RUN/bundle; returns (its hash, entries, warnings)."""
    answers, missing = asyncio.run(collect(records, common))
    if missing:
        raise EvalError(f"cannot freeze: {len(missing)} answers are no longer in the cache (e.g. {missing[0]}); "
                        "point TOOLFABRIC_REDIS_URL/TOOLFABRIC_DATA_DIR at the stack that ran them")
    writer = BundleWriter(run_dir / BUNDLE_DIR, source)
    seen: dict[str, Any] = {}
    changed: set[str] = set()
    for request_key, entry, what in answers:
        if request_key in seen and seen[request_key] != entry["value"]:
            changed.add(what or request_key)
        seen[request_key] = entry["value"]
        writer.add(request_key, entry, what)
    if judge_cache is not None and judge_cache.exists():
        for line in judge_cache.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = json.loads(line)
                writer.add_judge(entry["judge"], entry["key"], entry["reply"])
    warnings = []
    if changed:
        warnings.append(f"{len(changed)} requests were answered differently during the run (e.g. {sorted(changed)[0]}: "
                        "the local index grew as pages were read); the bundle keeps the last answer, so a rerun "
                        "can differ there. Freeze with TOOLFABRIC_FETCH_INDEX_FETCHED_PAGES=false for identical reruns")
    return writer.finish(), len(writer), warnings
