"""The agent engine, below every door: a trajectory's spec, its events, the step (model call → parse →
validate → tool round → observations), prompting, tracing and resume.

Run (gRPC), Step (gRPC, HTTP, MCP) and the HTTP chat API call the same step; they differ only in who
chooses the action (the model, or a trainer) and how the events are delivered. The engine imports no
door: what it needs of the world comes through engine/ports.py.
"""
