"""Run as its own process: set telemetry up from the environment, emit one small trace, print a summary.

A separate process because the tracer provider is process-global and can be installed only once.
"""

from __future__ import annotations

import json
import os

import redis
from opentelemetry import trace

from toolfabric_server.common import settings
from toolfabric_server.common.telemetry import setup as telemetry


def main() -> None:
    traces = telemetry.traces_file(settings.common(), settings.telemetry())
    on = telemetry.setup_telemetry("emit-test", traces)
    again = telemetry.setup_telemetry("another-name", traces)  # a second entry point changes nothing
    tracer = trace.get_tracer("emit")
    redis_url = os.environ.get("EMIT_REDIS_URL")
    client = redis.Redis.from_url(redis_url) if redis_url else None
    with tracer.start_as_current_span("root"):
        with tracer.start_as_current_span("child") as child:
            child.add_event("hello", {"n": 1})
            if client is not None:
                client.set("emit-key", "v")  # a CLIENT span under `child`
        trace_id = telemetry.current_trace_id()
    if client is not None:
        client.get("emit-key")  # outside any trace: sampled out, not a trace of its own
    outside = telemetry.current_trace_id()
    telemetry.shutdown_telemetry()
    print(json.dumps({"on": on, "again": again, "trace_id": trace_id, "outside": outside}))


if __name__ == "__main__":
    main()
