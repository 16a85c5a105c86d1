"""Fetch service: web_visit, an SSRF-safe fetcher with extraction and summarisation.

Modules, in the order a URL meets them (see README.md beside this file):
guard (policy, resolve once) → transport (connect to the checked address) → fetcher (redirects,
timeouts, size caps) → decoding (decompression, charsets) → extract (main content, PDF) →
passages / summarize (what the model reads) → visit (the observation). hostlimits and robots
are the per-host politeness; client is the gateway's image download; tasks is the Celery entry.
Nothing heavy is imported here: the gateway imports `toolfabric_server.tools.fetch.spec` only.
"""
