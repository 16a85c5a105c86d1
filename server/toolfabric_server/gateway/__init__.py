"""The gRPC gateway: the public API server and the agent loop that runs trajectories."""
