from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODE_UNSPECIFIED: _ClassVar[Mode]
    MODE_DEEP_RESEARCH: _ClassVar[Mode]
    MODE_GENERAL: _ClassVar[Mode]
    MODE_PLAN: _ClassVar[Mode]

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_UNSPECIFIED: _ClassVar[Status]
    STATUS_RUNNING: _ClassVar[Status]
    STATUS_COMPLETED: _ClassVar[Status]
    STATUS_CANCELLED: _ClassVar[Status]
    STATUS_FAILED: _ClassVar[Status]
    STATUS_BUDGET_EXHAUSTED: _ClassVar[Status]

class Channel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_UNSPECIFIED: _ClassVar[Channel]
    CHANNEL_THINK: _ClassVar[Channel]
    CHANNEL_ANSWER: _ClassVar[Channel]
MODE_UNSPECIFIED: Mode
MODE_DEEP_RESEARCH: Mode
MODE_GENERAL: Mode
MODE_PLAN: Mode
STATUS_UNSPECIFIED: Status
STATUS_RUNNING: Status
STATUS_COMPLETED: Status
STATUS_CANCELLED: Status
STATUS_FAILED: Status
STATUS_BUDGET_EXHAUSTED: Status
CHANNEL_UNSPECIFIED: Channel
CHANNEL_THINK: Channel
CHANNEL_ANSWER: Channel

class ImageInput(_message.Message):
    __slots__ = ("data", "url")
    DATA_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    url: str
    def __init__(self, data: _Optional[bytes] = ..., url: _Optional[str] = ...) -> None: ...

class SamplingParameters(_message.Message):
    __slots__ = ("temperature", "top_p", "top_k", "max_tokens", "seed")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    top_k: int
    max_tokens: int
    seed: int
    def __init__(self, temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., top_k: _Optional[int] = ..., max_tokens: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class Budgets(_message.Message):
    __slots__ = ("max_steps", "max_tool_calls", "deadline_s")
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    max_steps: int
    max_tool_calls: int
    deadline_s: float
    def __init__(self, max_steps: _Optional[int] = ..., max_tool_calls: _Optional[int] = ..., deadline_s: _Optional[float] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("question", "images", "mode", "budgets", "sampling", "model")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    question: str
    images: _containers.RepeatedCompositeFieldContainer[ImageInput]
    mode: Mode
    budgets: Budgets
    sampling: SamplingParameters
    model: str
    def __init__(self, question: _Optional[str] = ..., images: _Optional[_Iterable[_Union[ImageInput, _Mapping]]] = ..., mode: _Optional[_Union[Mode, str]] = ..., budgets: _Optional[_Union[Budgets, _Mapping]] = ..., sampling: _Optional[_Union[SamplingParameters, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class ImageRef(_message.Message):
    __slots__ = ("name", "blob", "width", "height", "origin", "mime_type", "step")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    name: str
    blob: str
    width: int
    height: int
    origin: str
    mime_type: str
    step: int
    def __init__(self, name: _Optional[str] = ..., blob: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., origin: _Optional[str] = ..., mime_type: _Optional[str] = ..., step: _Optional[int] = ...) -> None: ...

class TrajectoryStarted(_message.Message):
    __slots__ = ("trace_id", "mode", "budgets", "model", "images")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    mode: Mode
    budgets: Budgets
    model: str
    images: _containers.RepeatedCompositeFieldContainer[ImageRef]
    def __init__(self, trace_id: _Optional[str] = ..., mode: _Optional[_Union[Mode, str]] = ..., budgets: _Optional[_Union[Budgets, _Mapping]] = ..., model: _Optional[str] = ..., images: _Optional[_Iterable[_Union[ImageRef, _Mapping]]] = ...) -> None: ...

class TextDelta(_message.Message):
    __slots__ = ("channel", "text")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    text: str
    def __init__(self, channel: _Optional[_Union[Channel, str]] = ..., text: _Optional[str] = ...) -> None: ...

class ToolCall(_message.Message):
    __slots__ = ("call_id", "name", "arguments_json")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    name: str
    arguments_json: str
    def __init__(self, call_id: _Optional[str] = ..., name: _Optional[str] = ..., arguments_json: _Optional[str] = ...) -> None: ...

class Observation(_message.Message):
    __slots__ = ("call_id", "name", "text", "images", "is_error", "error_kind", "duration_s", "attempts")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    IS_ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_KIND_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    name: str
    text: str
    images: _containers.RepeatedCompositeFieldContainer[ImageRef]
    is_error: bool
    error_kind: str
    duration_s: float
    attempts: int
    def __init__(self, call_id: _Optional[str] = ..., name: _Optional[str] = ..., text: _Optional[str] = ..., images: _Optional[_Iterable[_Union[ImageRef, _Mapping]]] = ..., is_error: bool = ..., error_kind: _Optional[str] = ..., duration_s: _Optional[float] = ..., attempts: _Optional[int] = ...) -> None: ...

class FinalAnswer(_message.Message):
    __slots__ = ("text", "plan_json")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    text: str
    plan_json: str
    def __init__(self, text: _Optional[str] = ..., plan_json: _Optional[str] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "steps", "tool_calls", "phase_seconds", "counters")
    class ToolCallsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class PhaseSecondsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    PHASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    steps: int
    tool_calls: _containers.ScalarMap[str, int]
    phase_seconds: _containers.ScalarMap[str, float]
    counters: _containers.ScalarMap[str, float]
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., steps: _Optional[int] = ..., tool_calls: _Optional[_Mapping[str, int]] = ..., phase_seconds: _Optional[_Mapping[str, float]] = ..., counters: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "fatal")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FATAL_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    fatal: bool
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., fatal: bool = ...) -> None: ...

class TrajectoryFinished(_message.Message):
    __slots__ = ("status", "reason", "resumes")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESUMES_FIELD_NUMBER: _ClassVar[int]
    status: Status
    reason: str
    resumes: int
    def __init__(self, status: _Optional[_Union[Status, str]] = ..., reason: _Optional[str] = ..., resumes: _Optional[int] = ...) -> None: ...

class TrajectoryResumed(_message.Message):
    __slots__ = ("from_step", "from_seq", "gateway", "reason")
    FROM_STEP_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    from_step: int
    from_seq: int
    gateway: str
    reason: str
    def __init__(self, from_step: _Optional[int] = ..., from_seq: _Optional[int] = ..., gateway: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("trajectory_id", "step", "seq", "time", "started", "text", "tool_call", "observation", "answer", "usage", "error", "finished", "resumed")
    TRAJECTORY_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    trajectory_id: str
    step: int
    seq: int
    time: _timestamp_pb2.Timestamp
    started: TrajectoryStarted
    text: TextDelta
    tool_call: ToolCall
    observation: Observation
    answer: FinalAnswer
    usage: Usage
    error: Error
    finished: TrajectoryFinished
    resumed: TrajectoryResumed
    def __init__(self, trajectory_id: _Optional[str] = ..., step: _Optional[int] = ..., seq: _Optional[int] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., started: _Optional[_Union[TrajectoryStarted, _Mapping]] = ..., text: _Optional[_Union[TextDelta, _Mapping]] = ..., tool_call: _Optional[_Union[ToolCall, _Mapping]] = ..., observation: _Optional[_Union[Observation, _Mapping]] = ..., answer: _Optional[_Union[FinalAnswer, _Mapping]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., finished: _Optional[_Union[TrajectoryFinished, _Mapping]] = ..., resumed: _Optional[_Union[TrajectoryResumed, _Mapping]] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("trajectory_id",)
    TRAJECTORY_ID_FIELD_NUMBER: _ClassVar[int]
    trajectory_id: str
    def __init__(self, trajectory_id: _Optional[str] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("cancelled", "status")
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    cancelled: bool
    status: str
    def __init__(self, cancelled: bool = ..., status: _Optional[str] = ...) -> None: ...

class GetTrajectoryRequest(_message.Message):
    __slots__ = ("trajectory_id",)
    TRAJECTORY_ID_FIELD_NUMBER: _ClassVar[int]
    trajectory_id: str
    def __init__(self, trajectory_id: _Optional[str] = ...) -> None: ...

class Trajectory(_message.Message):
    __slots__ = ("trajectory_id", "trace_id", "status", "question", "mode", "model", "events", "answer", "usage", "created_at", "gateway", "resumes")
    TRAJECTORY_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    RESUMES_FIELD_NUMBER: _ClassVar[int]
    trajectory_id: str
    trace_id: str
    status: Status
    question: str
    mode: Mode
    model: str
    events: _containers.RepeatedCompositeFieldContainer[RunEvent]
    answer: str
    usage: Usage
    created_at: _timestamp_pb2.Timestamp
    gateway: str
    resumes: int
    def __init__(self, trajectory_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., status: _Optional[_Union[Status, str]] = ..., question: _Optional[str] = ..., mode: _Optional[_Union[Mode, str]] = ..., model: _Optional[str] = ..., events: _Optional[_Iterable[_Union[RunEvent, _Mapping]]] = ..., answer: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., gateway: _Optional[str] = ..., resumes: _Optional[int] = ...) -> None: ...

class ListToolsRequest(_message.Message):
    __slots__ = ("mode",)
    MODE_FIELD_NUMBER: _ClassVar[int]
    mode: Mode
    def __init__(self, mode: _Optional[_Union[Mode, str]] = ...) -> None: ...

class Tool(_message.Message):
    __slots__ = ("name", "service", "description", "parameters_json_schema", "aliases", "modes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    MODES_FIELD_NUMBER: _ClassVar[int]
    name: str
    service: str
    description: str
    parameters_json_schema: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    modes: _containers.RepeatedScalarFieldContainer[Mode]
    def __init__(self, name: _Optional[str] = ..., service: _Optional[str] = ..., description: _Optional[str] = ..., parameters_json_schema: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., modes: _Optional[_Iterable[_Union[Mode, str]]] = ...) -> None: ...

class ListToolsResponse(_message.Message):
    __slots__ = ("tools",)
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    tools: _containers.RepeatedCompositeFieldContainer[Tool]
    def __init__(self, tools: _Optional[_Iterable[_Union[Tool, _Mapping]]] = ...) -> None: ...

class GetImageRequest(_message.Message):
    __slots__ = ("blob",)
    BLOB_FIELD_NUMBER: _ClassVar[int]
    blob: str
    def __init__(self, blob: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("trajectory_id", "from_seq")
    TRAJECTORY_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    trajectory_id: str
    from_seq: int
    def __init__(self, trajectory_id: _Optional[str] = ..., from_seq: _Optional[int] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("blob", "data", "mime_type", "width", "height")
    BLOB_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    blob: str
    data: bytes
    mime_type: str
    width: int
    height: int
    def __init__(self, blob: _Optional[str] = ..., data: _Optional[bytes] = ..., mime_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...
