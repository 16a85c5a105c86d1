"""The v1 API's names as code, users and logs spell them, derived from the proto: the one place for them.

`MODES` ("deep_research", "general", "plan"), `STATUSES` ("running", "completed", …) and `ERROR_KINDS`
("timeout", …) are the enum value names in lower case without their prefix; `FABRIC_SERVICE` is the
gRPC service's full name. The SDK and the server both read them here (this module imports only the stubs).
"""

from __future__ import annotations

from typing import Dict, FrozenSet, cast

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from toolfabric.v1 import fabric_pb2 as pb

FABRIC_SERVICE: str = pb.DESCRIPTOR.services_by_name["Fabric"].full_name


def _short_names(enum: EnumTypeWrapper, prefix: str) -> Dict[str, int]:
    return {name[len(prefix):].lower(): value for name, value in enum.items() if value != 0}


MODES = cast("Dict[str, pb.Mode]", _short_names(pb.Mode, "MODE_"))
STATUSES = cast("Dict[str, pb.Status]", _short_names(pb.Status, "STATUS_"))
_ERROR_KINDS: Dict[str, int] = _short_names(pb.ErrorKind, "ERROR_KIND_")
ERROR_KINDS: FrozenSet[str] = frozenset(_ERROR_KINDS)


def mode_name(mode: int) -> str:
    """pb.MODE_GENERAL → "general"; KeyError for values that are not modes (MODE_UNSPECIFIED included)."""
    return {int(v): k for k, v in MODES.items()}[mode]


def status_name(status: int) -> str:
    """pb.STATUS_COMPLETED → "completed"."""
    return {int(v): k for k, v in STATUSES.items()}[status]


def error_kind(kind: str) -> pb.ErrorKind:
    """"timeout" → pb.ERROR_KIND_TIMEOUT; ERROR_KIND_UNSPECIFIED for a string the proto does not list."""
    return cast("pb.ErrorKind", _ERROR_KINDS.get(kind, pb.ERROR_KIND_UNSPECIFIED))
