"""No secret, key or credential-bearing URL reaches a log line; tool results are logged by kind and size."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from toolfabric_server.common import logs


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("toolfabric.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logs.install(logger=logger)
    yield out
    logger.removeHandler(handler)


def test_credentials_in_urls_headers_and_keys_are_masked_at_every_level(captured: io.StringIO) -> None:
    log = logging.getLogger("toolfabric.test.logs")
    key = "tfk_0123456789ab_" + "s" * 43
    log.debug("fetching %s", "https://alice:hunter2@example.com/a?x=1&token=abc123&sig=deadbeef")
    log.info("header Authorization: Bearer %s", key)
    log.warning("signed %s", "http://127.0.0.1:8090/blobs/aa?exp=1&sig=0f0f0f0f")
    log.error("key %s was revoked", key)
    try:
        raise ValueError("postgresql://toolfabric:pw-in-url@db:5432/x")
    except ValueError:
        log.exception("store failed")
    text = captured.getvalue()
    for secret in ("hunter2", "abc123", "deadbeef", "0f0f0f0f", key, "s" * 43, "pw-in-url"):
        assert secret not in text, (secret, text)
    assert "https://***@example.com/a?x=1&token=***&sig=***" in text and "Bearer ***" in text
    assert "postgresql://***@db:5432/x" in text  # the traceback too


def test_celery_task_results_are_logged_by_kind_and_size(captured: io.StringIO) -> None:
    # What celery.app.trace logs at INFO for every task, with the whole result as an argument.
    result = {"type": "web_visit", "text": "page content with https://u:p@h/ and more", "urls": ["x"]}
    logging.getLogger("toolfabric.test.logs").info(
        "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s",
        {"name": "fetch.web_visit", "id": "1", "runtime": 0.1, "return_value": result})
    text = captured.getvalue()
    assert "page content" not in text and "u:p@" not in text
    assert "succeeded in 0.1s: web_visit result, " in text and "chars" in text
