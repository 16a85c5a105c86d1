"""Tracing and metrics: setup, exporters, receiver, trace viewer, Celery propagation."""
