"""Server reflection in both versions clients use: grpc.reflection.v1 (current grpcurl, other languages) and v1alpha.

grpcio-reflection ships only v1alpha. v1 is the same protocol under another package name, message for
message and field for field, so the v1 service is the same servicer behind the v1 method name (the
bytes on the wire are identical), and the v1 file descriptor, derived from v1alpha's by renaming the
package, goes into the pool so a client can describe the v1 service too.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA_SERVICE: str = reflection.SERVICE_NAME
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
REFLECTION_SERVICES = (V1ALPHA_SERVICE, V1_SERVICE)


def _v1_file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old, new = f".{reflection_pb2.DESCRIPTOR.package}.", f".{V1_PACKAGE}."
    proto.name, proto.package = "grpc/reflection/v1/reflection.proto", V1_PACKAGE
    proto.ClearField("options")  # v1alpha's java package; v1 needs none here

    def rename(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
        for message in messages:
            for field in message.field:
                if field.type_name:  # assigning "" would mark a scalar field as typed
                    field.type_name = field.type_name.replace(old, new)
            rename(message.nested_type)

    rename(proto.message_type)
    for service in proto.service:
        for method in service.method:
            method.input_type, method.output_type = method.input_type.replace(old, new), \
                method.output_type.replace(old, new)
    return proto


def register_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindServiceByName(V1_SERVICE)
    except KeyError:
        pool.AddSerializedFile(_v1_file().SerializeToString())


def enable_server_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Reflection v1 and v1alpha for `service_names` (both reflection services are listed too)."""
    register_v1_descriptor(descriptor_pool.Default())
    servicer = reflection.aio.ReflectionServicer((*service_names, V1_SERVICE, V1ALPHA_SERVICE))
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(V1_SERVICE, {"ServerReflectionInfo": v1}),))
