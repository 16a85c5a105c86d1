"""The gRPC door: the Fabric service's RPCs over the shared Run and Step services."""

from toolfabric_server.gateway.fabric.servicer import FabricServicer

__all__ = ["FabricServicer"]
