"""Plumbing shared by every service: settings, errors, blob store, Celery app, tool contract."""
