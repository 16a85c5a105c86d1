"""Reading the web safely, shared by the fetch and search services (neither imports the other).

Modules, in the order a URL meets them: guard (policy, resolve once) → transport (connect to the
checked address) → fetcher (redirects, timeouts, size caps) → decoding (decompression, charsets) →
extract (main content, PDF) → passages (what fits the model's budget). hostlimits and robots are the
per-host politeness; client is the one-shot image download the gateway uses.
"""
