"""The Celery app every process builds the same way: one queue per service, JSON only, late acks.

Nothing is built at import: a worker builds its app at start (common/worker.py) and registers
its service's `toolfabric.<service>.call` on it; the gateway builds one at start and only ever
`send_task`s by name, so it imports no worker code.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from toolfabric_server.common.errors import ConfigurationError
from toolfabric_server.common.reply_lists import backend_url
from toolfabric_server.common.settings import CommonSettings, WorkerSettings
from toolfabric_server.common.tools import SERVICES, task_name


def make_celery(common: CommonSettings, worker: WorkerSettings) -> Celery:
    """The app, from the settings the process read at start. Results go back on the sender's reply list when
    it names one (common/reply_lists.py), by pub/sub otherwise."""
    if worker.task_time_limit_s >= common.celery_visibility_timeout_s:
        # A task still running when the visibility timeout expires is redelivered and runs twice.
        raise ConfigurationError(
            f"TOOLFABRIC_WORKER_TASK_TIME_LIMIT_S ({worker.task_time_limit_s}) must be below "
            f"TOOLFABRIC_CELERY_VISIBILITY_TIMEOUT_S ({common.celery_visibility_timeout_s})"
        )
    if worker.task_soft_time_limit_s >= worker.task_time_limit_s:
        raise ConfigurationError("TOOLFABRIC_WORKER_TASK_SOFT_TIME_LIMIT_S must be below the hard limit")
    app = Celery("toolfabric", broker=common.redis_url, backend=backend_url(common.redis_url))
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_time_limit=worker.task_time_limit_s,
        task_soft_time_limit=worker.task_soft_time_limit_s,
        result_expires=common.celery_result_expires_s,
        # A result finished while Redis restarts is stored once it is back, not lost (the gateway waits for it).
        result_backend_always_retry=True,
        result_backend_max_retries=20,
        broker_transport_options={"visibility_timeout": common.celery_visibility_timeout_s},
        result_backend_transport_options={"visibility_timeout": common.celery_visibility_timeout_s},
        task_queues=[Queue(s) for s in SERVICES],
        task_routes={task_name(s): {"queue": s} for s in SERVICES},
        task_default_queue=SERVICES[0],
        worker_prefetch_multiplier=worker.prefetch_multiplier,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # A task published while Redis restarts waits for it (as long as the Redis clients do), not an error.
        task_publish_retry_policy={"max_retries": common.redis_retries, "interval_start": 0.1,
                                   "interval_step": 0.25, "interval_max": common.redis_backoff_max_s},
        # STARTED names the worker running a task: the gateway sends a task again when that worker dies.
        task_track_started=True,
    )
    return app

