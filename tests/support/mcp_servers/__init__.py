"""Real MCP servers (the official SDK) for the MCP client tests."""
