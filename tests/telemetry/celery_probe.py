"""The processes of the Celery tracing test: a prefork worker with a probe task, and a publisher.

    python celery_probe.py worker              consume the probe queue (telemetry set up the worker way)
    python celery_probe.py publish KIND...     send one probe task per KIND inside an `execute_tool` span,
                                               print {"trace_ids": […], "results": […]} as JSON
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import redis
from opentelemetry import trace

from toolfabric_server.common import settings
from toolfabric_server.common.celery_app import make_celery
from toolfabric_server.common.telemetry import observe
from toolfabric_server.common.telemetry import setup as telemetry
from toolfabric_server.common.telemetry.celery import trace_publishing
from toolfabric_server.common.telemetry.run_span import run_span, task_carrier
from toolfabric_server.common.tools import ToolResult

QUEUE = "telemetry-probe"
TASK = "telemetry_probe.run"

app = make_celery(settings.common(), settings.worker())  # this script's processes, like a worker's
TRACES = telemetry.traces_file(settings.common(), settings.telemetry())


@app.task(name=TASK, bind=True)
def probe(self: Any, kind: str) -> dict[str, Any]:
    with run_span(TASK, task_carrier(self.request), {"gen_ai.tool.name": "probe", "gen_ai.tool.call.id": "c1"}):
        observe.cache_lookup("redis", hit=True, namespace="probe")
        redis.Redis.from_url(settings.common().redis_url).get("probe-key")  # the task's own Redis call
        if kind == "fail":
            raise RuntimeError("probe failed on purpose")
        observe.tool_executed("probe", ToolResult(text="ok"), 0.001)  # the call's end, as in worker.py
    return {"pid": os.getpid()}


def worker() -> None:
    telemetry.setup_worker_telemetry("probe", settings.common(), settings.telemetry())
    app.worker_main(["worker", "--queues", QUEUE, "--pool", "prefork", "--concurrency", "1",
                     "--hostname", "probe@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
                     "--loglevel", "WARNING"])


def publish(kinds: list[str]) -> None:
    app.tasks.unregister(TASK)  # like the gateway, the publisher knows the task only by name
    telemetry.setup_telemetry("probe-publisher", TRACES)
    trace_publishing()
    tracer = trace.get_tracer("probe")
    trace_ids, results = [], []
    for kind in kinds:
        with tracer.start_as_current_span(f"execute_tool {kind}"):
            async_result = app.send_task(TASK, args=[kind], queue=QUEUE)
            trace_ids.append(telemetry.current_trace_id())
        value = async_result.get(timeout=60, propagate=False)
        results.append(value if isinstance(value, dict) else {"error": repr(value)})
    telemetry.shutdown_telemetry()
    print(json.dumps({"trace_ids": trace_ids, "results": results}))


if __name__ == "__main__":
    worker() if sys.argv[1] == "worker" else publish(sys.argv[2:])
