"""The Step service: trajectories an RL trainer (or an MCP client) drives one action at a time. Every step door
calls it (gRPC `Step`: gateway/fabric, verl-tool's HTTP contract: gateway/step, MCP: gateway/mcp); each action
runs through the engine's step like a Run's."""

from toolfabric_server.gateway.stepping.service import StepItem, StepOutcome, StepService

__all__ = ["StepItem", "StepOutcome", "StepService"]
