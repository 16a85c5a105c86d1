"""The v1 API's names as code, users and logs spell them, derived from the proto: the one place for them.

`MODES` ("deep_research", "general", "plan"), `STATUSES` ("running", "completed", …) and `ERROR_KINDS`
("timeout", …) are the enum value names in lower case without their prefix; `FABRIC_SERVICE` is the
gRPC service's full name. The SDK, the server, settings, CLIs and doors all read them here (this module
imports only the stubs): nothing else spells a mode or inverts these tables.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Literal, cast

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from toolfabric.v1 import fabric_pb2 as pb

FABRIC_SERVICE: str = pb.DESCRIPTOR.services_by_name["Fabric"].full_name


def _short_names(enum: EnumTypeWrapper, prefix: str) -> Dict[str, int]:
    return {name[len(prefix):].lower(): value for name, value in enum.items() if value != 0}


MODES = cast("Dict[str, pb.Mode]", _short_names(pb.Mode, "MODE_"))
MODE_NAMES: Dict[int, str] = {int(v): k for k, v in MODES.items()}  # pb.MODE_GENERAL → "general"
STATUSES = cast("Dict[str, pb.Status]", _short_names(pb.Status, "STATUS_"))
STATUS_NAMES: Dict[int, str] = {int(v): k for k, v in STATUSES.items()}
_ERROR_KINDS: Dict[str, int] = _short_names(pb.ErrorKind, "ERROR_KIND_")
ERROR_KINDS: FrozenSet[str] = frozenset(_ERROR_KINDS)

# The modes as a type (settings, tool specs, CLI choices) and by name for the code that branches on one;
# tests/unit/test_names.py holds them to the proto's enum.
ModeName = Literal["deep_research", "general", "plan"]
DEEP_RESEARCH: ModeName = "deep_research"
GENERAL: ModeName = "general"
PLAN: ModeName = "plan"
DEFAULT_MODE: ModeName = DEEP_RESEARCH  # what MODE_UNSPECIFIED means (the proto's comment)


def mode_name(mode: int) -> str:
    """pb.MODE_GENERAL → "general"; KeyError for values that are not modes (MODE_UNSPECIFIED included)."""
    return MODE_NAMES[mode]


def mode_value(name: str) -> pb.Mode:
    """"general" → pb.MODE_GENERAL; KeyError for a name that is not a mode."""
    return MODES[name]


def status_name(status: int) -> str:
    """pb.STATUS_COMPLETED → "completed"; "unspecified" for STATUS_UNSPECIFIED (a trajectory not begun)."""
    return STATUS_NAMES.get(status, "unspecified")


def error_kind_name(kind: int) -> str:
    """pb.ERROR_KIND_MODEL_OUTPUT → "model_output" (what Observation.error_kind and Error.code carry)."""
    return pb.ErrorKind.Name(kind)[len("ERROR_KIND_"):].lower()  # type: ignore[arg-type]


def error_kind(kind: str) -> pb.ErrorKind:
    """"timeout" → pb.ERROR_KIND_TIMEOUT; ERROR_KIND_UNSPECIFIED for a string the proto does not list."""
    return cast("pb.ErrorKind", _ERROR_KINDS.get(kind, pb.ERROR_KIND_UNSPECIFIED))
