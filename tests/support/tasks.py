"""A service's Celery task as its worker registers it (services.common.worker.service_task), for in-process calls."""

from __future__ import annotations

from typing import Any

from services.common import settings
from services.common.celery_app import make_celery
from services.common.worker import service_task


def task_of(service: str) -> Any:
    """`toolfabric.<service>.call` on an app of its own, built from the current settings (`.run` is its body)."""
    return service_task(make_celery(settings.common(), settings.worker()), service)
