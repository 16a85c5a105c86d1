"""A service's Celery task as its worker registers it (common.worker.service_task), for in-process calls."""

from __future__ import annotations

from typing import Any

from toolfabric_server.common.celery_app import make_celery
from toolfabric_server.common.settings import CommonSettings, WorkerSettings
from toolfabric_server.common.worker import service_task


def task_of(service: str) -> Any:
    """`toolfabric.<service>.call` on an app of its own, registered with the settings of the environment now (as a
    worker reads them at its start; `.run` is its body). Its async services close with
    toolfabric_server.common.bridge.close_all()."""
    common = CommonSettings()
    return service_task(make_celery(common, WorkerSettings()), service, common)
