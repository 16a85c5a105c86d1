"""Each SDK client has a connection of its own, so clients spread over gateway processes sharing a port.

SO_REUSEPORT balances connections, not calls: gRPC by default shares one connection between every channel of a
process to the same target, so a load driver with many clients sent everything to one gateway process
(`bench/load.py --gateways 2` measured 0.95x one process; one process used ~20 % CPU, the other 0.5 %)."""

from __future__ import annotations

import asyncio

import grpc

from toolfabric import AsyncClient, Client
from toolfabric.v1 import fabric_pb2 as pb


def _server_recording_peers(peers: set[str]) -> grpc.aio.Server:
    async def list_tools(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        peers.add(context.peer())  # ip:port of the client's end of the connection
        return pb.ListToolsResponse().SerializeToString()

    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "toolfabric.v1.Fabric", {"ListTools": grpc.unary_unary_rpc_method_handler(list_tools)})])
    return server


def test_every_client_opens_its_own_connection() -> None:
    async def main() -> tuple[set[str], set[str]]:
        peers: set[str] = set()
        server = _server_recording_peers(peers)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            clients = [AsyncClient(f"127.0.0.1:{port}", timeout_s=5) for _ in range(4)]
            for client in clients:
                await client.tools()
                await client.tools()
            for client in clients:
                await client.close()
            async_peers = set(peers)
            peers.clear()

            def sync_calls() -> None:
                opened = [Client(f"127.0.0.1:{port}", timeout_s=5) for _ in range(3)]
                for client in opened * 2:
                    client.tools()
                for client in opened:
                    client.close()

            await asyncio.to_thread(sync_calls)
            return async_peers, set(peers)
        finally:
            await server.stop(0)

    async_peers, sync_peers = asyncio.run(main())
    assert len(async_peers) == 4, async_peers  # one connection per client, each reused for its own calls
    assert len(sync_peers) == 3, sync_peers
