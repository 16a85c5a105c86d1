"""Fetch service: web_visit, an SSRF-safe fetcher with extraction and summarisation."""
