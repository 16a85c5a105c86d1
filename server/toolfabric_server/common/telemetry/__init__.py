"""Tracing and metrics for every process: `setup` configures OpenTelemetry from OTEL_* settings,
`celery` carries trace context through tasks, `run_span` is the worker's span per tool call, `observe` is the
span/metric API the services call, `metrics` holds the Prometheus instruments, `span_file` the JSON-lines exporter
`toolfabric trace` reads."""
