"""setup_telemetry in real processes: exporters chosen by OTEL_* variables, spans arriving where they should."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.otlp_receiver import OtlpReceiver
from tests.support.telemetry_env import child_env, emit_spans
from toolfabric.spans import read_records
from toolfabric_server.common.errors import ConfigurationError
from toolfabric_server.common.telemetry.setup import exporter_names


def _tree_ok(spans: list, trace_id: str) -> None:
    by_name = {s.name: s for s in spans if s.trace_id == trace_id}
    assert by_name["child"].parent_id == by_name["root"].span_id
    assert by_name["root"].parent_id is None
    assert {s.service for s in by_name.values()} == {"emit-test"}  # the first name given wins
    assert [e.name for e in by_name["child"].events] == ["hello"]


def test_otlp_grpc_export_reaches_the_receiver_with_redis_spans_under_their_parent(
    otlp_receiver: OtlpReceiver, redis_server
) -> None:
    result = emit_spans(child_env(**otlp_receiver.env("grpc"), EMIT_REDIS_URL=redis_server.url))
    assert result["on"] and result["again"]
    assert len(result["trace_id"]) == 32 and result["outside"] == ""
    spans = otlp_receiver.wait_for(lambda spans: len(spans) >= 3)
    _tree_ok(spans, result["trace_id"])
    child = next(s for s in spans if s.name == "child")
    redis_spans = [s for s in spans if s.attributes.get("db.system") == "redis"]
    # SET under `child`; the GET outside any trace was dropped rather than exported as a trace of its own.
    assert [(s.name, s.parent_id, s.kind) for s in redis_spans] == [("SET", child.span_id, "CLIENT")]
    assert {s.trace_id for s in spans} == {result["trace_id"]}


def test_otlp_http_protobuf_export_reaches_the_receiver(otlp_receiver: OtlpReceiver) -> None:
    result = emit_spans(child_env(**otlp_receiver.env("http/protobuf")))
    _tree_ok(otlp_receiver.wait_for(lambda spans: len(spans) >= 2), result["trace_id"])


def test_file_exporter_appends_span_records(tmp_path: Path) -> None:
    path = tmp_path / "spans" / "traces.jsonl"
    env = child_env(OTEL_TRACES_EXPORTER="file", TOOLFABRIC_TELEMETRY_TRACES_FILE=str(path))
    first, second = emit_spans(env), emit_spans(env)
    _tree_ok(list(read_records(path, first["trace_id"])), first["trace_id"])
    _tree_ok(list(read_records(path, second["trace_id"])), second["trace_id"])
    assert len(list(read_records(path))) == 4


def test_tracing_is_off_by_default_and_with_none(tmp_path: Path) -> None:
    for env in (child_env(TOOLFABRIC_DATA_DIR=str(tmp_path)),
                child_env(OTEL_TRACES_EXPORTER="none", TOOLFABRIC_DATA_DIR=str(tmp_path)),
                child_env(OTEL_TRACES_EXPORTER="file", OTEL_SDK_DISABLED="true", TOOLFABRIC_DATA_DIR=str(tmp_path))):
        result = emit_spans(env)
        assert result == {"on": False, "again": False, "trace_id": "", "outside": ""}
    assert list(tmp_path.iterdir()) == []


def test_otel_service_name_overrides_the_process_name(otlp_receiver: OtlpReceiver) -> None:
    emit_spans(child_env(**otlp_receiver.env(), OTEL_SERVICE_NAME="renamed"))
    spans = otlp_receiver.wait_for(lambda spans: len(spans) >= 2)
    assert {s.service for s in spans} == {"renamed"}


def test_exporter_list_rejects_unknown_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp, console,none")
    assert exporter_names() == ["otlp", "console"]
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    with pytest.raises(ConfigurationError, match="jaeger"):
        exporter_names()
