"""Vision-op service: image operations and the sandboxed `code` tool."""
