"""The step API: trajectories an RL trainer drives one action at a time (verl-tool's tool-server
contract over HTTP, the gRPC `Step` RPC), through the same tool-call path as Run."""

from gateway.step.service import StepItem, StepOutcome, StepService

__all__ = ["StepItem", "StepOutcome", "StepService"]
