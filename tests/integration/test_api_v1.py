"""The v1 API's status codes, enums and reflection, over the wire against the session's gateway."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from toolfabric import Client, InvalidArgument, Unavailable
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.stack import EmbeddedStack
from toolfabric_server.gateway.reflection import V1_SERVICE, register_v1_descriptor

pytestmark = pytest.mark.integration


def test_a_model_that_is_not_served_is_unavailable(client: Client) -> None:
    with pytest.raises(Unavailable, match="model 'no_such_model' is not being served"):
        client.ask("What is this?", model="no_such_model")


@pytest.mark.parametrize("method", ["Run", "Cancel", "GetTrajectory", "ListTools", "GetImage"])
def test_bytes_that_are_no_request_are_invalid_argument(stack: EmbeddedStack, method: str) -> None:
    with grpc.insecure_channel(stack.target) as channel:
        path = f"/toolfabric.v1.Fabric/{method}"
        call = channel.unary_stream(path) if method == "Run" else channel.unary_unary(path)
        with pytest.raises(grpc.RpcError) as info:
            reply = call(b"\xff\xff\xff\xff", timeout=10)
            list(reply) if method == "Run" else reply
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is not a valid toolfabric.v1." in info.value.details()


def test_oversized_ids_are_refused_naming_the_limit_without_echoing_them(client: Client) -> None:
    huge = "x" * 1_000_000
    for call in (client.cancel, client.trajectory):
        with pytest.raises(InvalidArgument) as info:
            call(huge)
        assert str(info.value) == "trajectory_id is 1000000 characters, over the limit of 128"
    with pytest.raises(InvalidArgument, match="blob is 1000000 characters, over the limit of 128"):
        client.image(huge)


def test_cancel_reports_the_status_as_enum_and_as_the_old_string(client: Client) -> None:
    result = client.ask('{"script": ["<answer>done</answer>"]}', model="toolfabric_scripted")
    reply = client.cancel(result.trajectory_id)
    assert not reply.cancelled
    assert reply.trajectory_status == pb.STATUS_COMPLETED and reply.status == "STATUS_COMPLETED"


def test_general_mode_lists_what_the_proto_says_it_offers(client: Client) -> None:
    tools = client.tools("general")
    # Plugin services (the ocr example) join the modes they name; the proto's sentence is about the built-ins.
    assert {t.service for t in tools if t.service in ("vision", "search", "fetch")} == {"vision", "fetch"}
    assert "web_visit" in {t.name for t in tools} and "text_search" not in {t.name for t in tools}
    assert all(pb.MODE_GENERAL in t.modes for t in tools)


def test_reflection_v1alpha_describes_the_fabric(stack: EmbeddedStack) -> None:
    with grpc.insecure_channel(stack.target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)  # grpcio-reflection's own v1alpha client
        assert {"toolfabric.v1.Fabric", "grpc.health.v1.Health", V1_SERVICE} <= set(database.get_services())
        pool = descriptor_pool.DescriptorPool(database)
        run = pool.FindServiceByName("toolfabric.v1.Fabric").methods_by_name["Run"]
        assert (run.input_type.full_name, run.output_type.full_name) == ("toolfabric.v1.RunRequest",
                                                                         "toolfabric.v1.RunEvent")


def test_reflection_v1_describes_the_fabric(stack: EmbeddedStack) -> None:
    # A v1 client: messages of package grpc.reflection.v1, on the v1 method.
    pool = descriptor_pool.Default()
    register_v1_descriptor(pool)
    request_type, response_type = (message_factory.GetMessageClass(pool.FindMessageTypeByName(
        f"grpc.reflection.v1.ServerReflection{kind}")) for kind in ("Request", "Response"))
    with grpc.insecure_channel(stack.target) as channel:
        info = channel.stream_stream(f"/{V1_SERVICE}/ServerReflectionInfo",
                                     request_serializer=request_type.SerializeToString,
                                     response_deserializer=response_type.FromString)
        listed, described, own = info(iter([request_type(list_services=""),
                                           request_type(file_containing_symbol="toolfabric.v1.Fabric"),
                                           request_type(file_containing_symbol=V1_SERVICE)]), timeout=10)
    assert {"toolfabric.v1.Fabric", V1_SERVICE} <= {s.name for s in listed.list_services_response.service}
    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in described.file_descriptor_response.file_descriptor_proto]
    fabric = next(f for f in files if f.package == "toolfabric.v1")
    assert "Run" in [m.name for m in fabric.service[0].method]
    [v1] = [descriptor_pb2.FileDescriptorProto.FromString(b)
            for b in own.file_descriptor_response.file_descriptor_proto]
    assert v1.package == "grpc.reflection.v1" and v1.service[0].name == "ServerReflection"
