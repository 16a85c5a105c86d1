"""The Celery app's safety settings and the content-addressed blob store (real Redis)."""

from __future__ import annotations

import pytest

from tests.conftest import clear_settings_cache
from toolfabric_server.common import settings
from toolfabric_server.common.blobs import BlobStore, ref_for
from toolfabric_server.common.celery_app import make_celery
from toolfabric_server.common.errors import BlobNotFound, ConfigurationError
from toolfabric_server.common.tools import SERVICES, task_name


def test_celery_app_routes_each_service_to_its_queue_with_late_acks_and_json() -> None:
    app = make_celery(settings.common(), settings.worker())
    assert {task_name(s): {"queue": s} for s in SERVICES} == app.conf.task_routes
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.accept_content == ["json"] and app.conf.task_serializer == "json"
    assert app.conf.task_time_limit < app.conf.broker_transport_options["visibility_timeout"]
    assert app.conf.result_expires == settings.common().celery_result_expires_s


def test_time_limit_at_or_above_visibility_timeout_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLFABRIC_CELERY_VISIBILITY_TIMEOUT_S", "300")
    monkeypatch.setenv("TOOLFABRIC_WORKER_TASK_TIME_LIMIT_S", "300")
    clear_settings_cache()
    try:
        with pytest.raises(ConfigurationError, match="must be below"):
            make_celery(settings.common(), settings.worker())
    finally:
        monkeypatch.undo()
        clear_settings_cache()


def test_blobs_are_stored_once_by_content_with_a_ttl(redis_client) -> None:  # type: ignore[no-untyped-def]
    store = BlobStore(redis_client, ttl_s=120)
    ref = store.put(b"image bytes")
    assert ref == ref_for(b"image bytes") and ref.startswith("sha256:") and len(ref) == 7 + 64
    assert store.put(b"image bytes") == ref  # same bytes, same key
    assert redis_client.dbsize() == 1
    assert 0 < redis_client.ttl("toolfabric:blob:" + ref[7:]) <= 120
    assert store.get(ref) == b"image bytes"


def test_unknown_or_malformed_blob_references_say_so(redis_client) -> None:  # type: ignore[no-untyped-def]
    store = BlobStore(redis_client, ttl_s=120)
    with pytest.raises(BlobNotFound, match="expired or never stored"):
        store.get(ref_for(b"never stored"))
    with pytest.raises(BlobNotFound, match="not a blob reference"):
        store.get("../../etc/passwd")
