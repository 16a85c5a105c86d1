"""The fabric as an MCP server (the official `mcp` SDK): every advertised tool with its JSON schema,
over stdio (`toolfabric mcp`) or streamable HTTP (the gateway's TOOLFABRIC_MCP_HTTP_PORT)."""
