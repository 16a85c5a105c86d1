"""The fabric as an MCP client: tools of configured MCP servers (stdio commands or streamable-HTTP URLs,
TOOLFABRIC_MCP_CLIENT_SERVERS) join the catalog as `<server>.<tool>` and run on the `mcp` worker queue.

    catalog.py    list each server's tools → ToolSpecs (a tool with a bad name or schema is left out)
    arguments.py  arguments validated against the server's own JSON schema
    connect.py    one MCP session per call: stdio subprocess, or HTTP through the SSRF guard
    calls.py      a call with its timeout and result limits → ToolResult (images into the blob store)
    tasks.py      the `mcp` worker's Celery task
"""

SERVICE = "mcp"
