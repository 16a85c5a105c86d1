"""The step door over HTTP: verl-tool's tool-server contract (`POST /get_observation`), over the Step service
(gateway/stepping) that the gRPC `Step` RPC and the MCP server call too."""
