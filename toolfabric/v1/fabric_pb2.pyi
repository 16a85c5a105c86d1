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

class ErrorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_KIND_UNSPECIFIED: _ClassVar[ErrorKind]
    ERROR_KIND_MODEL_OUTPUT: _ClassVar[ErrorKind]
    ERROR_KIND_UNKNOWN_TOOL: _ClassVar[ErrorKind]
    ERROR_KIND_INVALID_ARGUMENT: _ClassVar[ErrorKind]
    ERROR_KIND_UNKNOWN_IMAGE: _ClassVar[ErrorKind]
    ERROR_KIND_INVALID_IMAGE: _ClassVar[ErrorKind]
    ERROR_KIND_BUDGET_EXHAUSTED: _ClassVar[ErrorKind]
    ERROR_KIND_TIMEOUT: _ClassVar[ErrorKind]
    ERROR_KIND_RESOURCE_EXHAUSTED: _ClassVar[ErrorKind]
    ERROR_KIND_UNAVAILABLE: _ClassVar[ErrorKind]
    ERROR_KIND_CANCELLED: _ClassVar[ErrorKind]
    ERROR_KIND_CACHE_MISS: _ClassVar[ErrorKind]
    ERROR_KIND_CODE_ERROR: _ClassVar[ErrorKind]
    ERROR_KIND_KILLED: _ClassVar[ErrorKind]
    ERROR_KIND_SANDBOX_UNAVAILABLE: _ClassVar[ErrorKind]
    ERROR_KIND_BLOCKED: _ClassVar[ErrorKind]
    ERROR_KIND_FETCH_ERROR: _ClassVar[ErrorKind]
    ERROR_KIND_HTTP_STATUS: _ClassVar[ErrorKind]
    ERROR_KIND_UNSUPPORTED_CONTENT: _ClassVar[ErrorKind]
    ERROR_KIND_WORKER_FAILURE: _ClassVar[ErrorKind]
    ERROR_KIND_TOOL_ERROR: _ClassVar[ErrorKind]
    ERROR_KIND_INTERNAL: _ClassVar[ErrorKind]
    ERROR_KIND_MODEL_UNAVAILABLE: _ClassVar[ErrorKind]

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
ERROR_KIND_UNSPECIFIED: ErrorKind
ERROR_KIND_MODEL_OUTPUT: ErrorKind
ERROR_KIND_UNKNOWN_TOOL: ErrorKind
ERROR_KIND_INVALID_ARGUMENT: ErrorKind
ERROR_KIND_UNKNOWN_IMAGE: ErrorKind
ERROR_KIND_INVALID_IMAGE: ErrorKind
ERROR_KIND_BUDGET_EXHAUSTED: ErrorKind
ERROR_KIND_TIMEOUT: ErrorKind
ERROR_KIND_RESOURCE_EXHAUSTED: ErrorKind
ERROR_KIND_UNAVAILABLE: ErrorKind
ERROR_KIND_CANCELLED: ErrorKind
ERROR_KIND_CACHE_MISS: ErrorKind
ERROR_KIND_CODE_ERROR: ErrorKind
ERROR_KIND_KILLED: ErrorKind
ERROR_KIND_SANDBOX_UNAVAILABLE: ErrorKind
ERROR_KIND_BLOCKED: ErrorKind
ERROR_KIND_FETCH_ERROR: ErrorKind
ERROR_KIND_HTTP_STATUS: ErrorKind
ERROR_KIND_UNSUPPORTED_CONTENT: ErrorKind
ERROR_KIND_WORKER_FAILURE: ErrorKind
ERROR_KIND_TOOL_ERROR: ErrorKind
ERROR_KIND_INTERNAL: ErrorKind
ERROR_KIND_MODEL_UNAVAILABLE: ErrorKind
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
    __slots__ = ("question", "images", "mode", "budgets", "sampling", "model", "labels", "eval_run", "conversation_id", "parent_trajectory_id", "enable_search", "execute_plan", "tools")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EVAL_RUN_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_TRAJECTORY_ID_FIELD_NUMBER: _ClassVar[int]
    ENABLE_SEARCH_FIELD_NUMBER: _ClassVar[int]
    EXECUTE_PLAN_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    question: str
    images: _containers.RepeatedCompositeFieldContainer[ImageInput]
    mode: Mode
    budgets: Budgets
    sampling: SamplingParameters
    model: str
    labels: _containers.ScalarMap[str, str]
    eval_run: str
    conversation_id: str
    parent_trajectory_id: str
    enable_search: bool
    execute_plan: bool
    tools: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, question: _Optional[str] = ..., images: _Optional[_Iterable[_Union[ImageInput, _Mapping]]] = ..., mode: _Optional[_Union[Mode, str]] = ..., budgets: _Optional[_Union[Budgets, _Mapping]] = ..., sampling: _Optional[_Union[SamplingParameters, _Mapping]] = ..., model: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., eval_run: _Optional[str] = ..., conversation_id: _Optional[str] = ..., parent_trajectory_id: _Optional[str] = ..., enable_search: bool = ..., execute_plan: bool = ..., tools: _Optional[_Iterable[str]] = ...) -> None: ...

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
    __slots__ = ("trace_id", "mode", "budgets", "model", "images", "admitted_at", "deadline", "admission_wait_s", "tools")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    ADMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    ADMISSION_WAIT_S_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    mode: Mode
    budgets: Budgets
    model: str
    images: _containers.RepeatedCompositeFieldContainer[ImageRef]
    admitted_at: _timestamp_pb2.Timestamp
    deadline: _timestamp_pb2.Timestamp
    admission_wait_s: float
    tools: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, trace_id: _Optional[str] = ..., mode: _Optional[_Union[Mode, str]] = ..., budgets: _Optional[_Union[Budgets, _Mapping]] = ..., model: _Optional[str] = ..., images: _Optional[_Iterable[_Union[ImageRef, _Mapping]]] = ..., admitted_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., deadline: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., admission_wait_s: _Optional[float] = ..., tools: _Optional[_Iterable[str]] = ...) -> None: ...

class TextDelta(_message.Message):
    __slots__ = ("channel", "text", "piece_chars")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PIECE_CHARS_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    text: str
    piece_chars: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, channel: _Optional[_Union[Channel, str]] = ..., text: _Optional[str] = ..., piece_chars: _Optional[_Iterable[int]] = ...) -> None: ...

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
    __slots__ = ("call_id", "name", "text", "images", "is_error", "error_kind", "duration_s", "kind", "attempts")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    IS_ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_KIND_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    name: str
    text: str
    images: _containers.RepeatedCompositeFieldContainer[ImageRef]
    is_error: bool
    error_kind: str
    duration_s: float
    kind: ErrorKind
    attempts: int
    def __init__(self, call_id: _Optional[str] = ..., name: _Optional[str] = ..., text: _Optional[str] = ..., images: _Optional[_Iterable[_Union[ImageRef, _Mapping]]] = ..., is_error: bool = ..., error_kind: _Optional[str] = ..., duration_s: _Optional[float] = ..., kind: _Optional[_Union[ErrorKind, str]] = ..., attempts: _Optional[int] = ...) -> None: ...

class FinalAnswer(_message.Message):
    __slots__ = ("text", "plan_json")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    text: str
    plan_json: str
    def __init__(self, text: _Optional[str] = ..., plan_json: _Optional[str] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "steps", "tool_calls", "phase_seconds", "counters", "token_unit", "image_tokens")
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
    TOKEN_UNIT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    steps: int
    tool_calls: _containers.ScalarMap[str, int]
    phase_seconds: _containers.ScalarMap[str, float]
    counters: _containers.ScalarMap[str, float]
    token_unit: str
    image_tokens: int
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., steps: _Optional[int] = ..., tool_calls: _Optional[_Mapping[str, int]] = ..., phase_seconds: _Optional[_Mapping[str, float]] = ..., counters: _Optional[_Mapping[str, float]] = ..., token_unit: _Optional[str] = ..., image_tokens: _Optional[int] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "fatal", "kind")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FATAL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    fatal: bool
    kind: ErrorKind
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., fatal: bool = ..., kind: _Optional[_Union[ErrorKind, str]] = ...) -> None: ...

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

class ModelTokens(_message.Message):
    __slots__ = ("prompt_reused", "prompt_token_ids", "completion_token_ids", "completion_logprobs", "image_tokens", "token_in", "engine_image_tokens")
    PROMPT_REUSED_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IN_FIELD_NUMBER: _ClassVar[int]
    ENGINE_IMAGE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    prompt_reused: int
    prompt_token_ids: _containers.RepeatedScalarFieldContainer[int]
    completion_token_ids: _containers.RepeatedScalarFieldContainer[int]
    completion_logprobs: _containers.RepeatedScalarFieldContainer[float]
    image_tokens: _containers.RepeatedScalarFieldContainer[int]
    token_in: bool
    engine_image_tokens: int
    def __init__(self, prompt_reused: _Optional[int] = ..., prompt_token_ids: _Optional[_Iterable[int]] = ..., completion_token_ids: _Optional[_Iterable[int]] = ..., completion_logprobs: _Optional[_Iterable[float]] = ..., image_tokens: _Optional[_Iterable[int]] = ..., token_in: bool = ..., engine_image_tokens: _Optional[int] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("trajectory_id", "step", "seq", "time", "started", "text", "tool_call", "observation", "answer", "usage", "error", "finished", "resumed", "tokens")
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
    TOKENS_FIELD_NUMBER: _ClassVar[int]
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
    tokens: ModelTokens
    def __init__(self, trajectory_id: _Optional[str] = ..., step: _Optional[int] = ..., seq: _Optional[int] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., started: _Optional[_Union[TrajectoryStarted, _Mapping]] = ..., text: _Optional[_Union[TextDelta, _Mapping]] = ..., tool_call: _Optional[_Union[ToolCall, _Mapping]] = ..., observation: _Optional[_Union[Observation, _Mapping]] = ..., answer: _Optional[_Union[FinalAnswer, _Mapping]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., finished: _Optional[_Union[TrajectoryFinished, _Mapping]] = ..., resumed: _Optional[_Union[TrajectoryResumed, _Mapping]] = ..., tokens: _Optional[_Union[ModelTokens, _Mapping]] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("trajectory_id",)
    TRAJECTORY_ID_FIELD_NUMBER: _ClassVar[int]
    trajectory_id: str
    def __init__(self, trajectory_id: _Optional[str] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("cancelled", "status", "trajectory_status")
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORY_STATUS_FIELD_NUMBER: _ClassVar[int]
    cancelled: bool
    status: str
    trajectory_status: Status
    def __init__(self, cancelled: bool = ..., status: _Optional[str] = ..., trajectory_status: _Optional[_Union[Status, str]] = ...) -> None: ...

class GetTrajectoryRequest(_message.Message):
    __slots__ = ("trajectory_id",)
    TRAJECTORY_ID_FIELD_NUMBER: _ClassVar[int]
    trajectory_id: str
    def __init__(self, trajectory_id: _Optional[str] = ...) -> None: ...

class Trajectory(_message.Message):
    __slots__ = ("trajectory_id", "trace_id", "status", "question", "mode", "model", "events", "answer", "usage", "created_at", "labels", "eval_run", "budgets", "finished_at", "conversation_id", "parent_trajectory_id", "tenant", "gateway", "resumes")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
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
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EVAL_RUN_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_TRAJECTORY_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
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
    labels: _containers.ScalarMap[str, str]
    eval_run: str
    budgets: Budgets
    finished_at: _timestamp_pb2.Timestamp
    conversation_id: str
    parent_trajectory_id: str
    tenant: str
    gateway: str
    resumes: int
    def __init__(self, trajectory_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., status: _Optional[_Union[Status, str]] = ..., question: _Optional[str] = ..., mode: _Optional[_Union[Mode, str]] = ..., model: _Optional[str] = ..., events: _Optional[_Iterable[_Union[RunEvent, _Mapping]]] = ..., answer: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., eval_run: _Optional[str] = ..., budgets: _Optional[_Union[Budgets, _Mapping]] = ..., finished_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., conversation_id: _Optional[str] = ..., parent_trajectory_id: _Optional[str] = ..., tenant: _Optional[str] = ..., gateway: _Optional[str] = ..., resumes: _Optional[int] = ...) -> None: ...

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

class ListTrajectoriesRequest(_message.Message):
    __slots__ = ("statuses", "model", "mode", "labels", "eval_run", "created_after", "created_before", "question_contains", "page_size", "page_token")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EVAL_RUN_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    QUESTION_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[Status]
    model: str
    mode: Mode
    labels: _containers.ScalarMap[str, str]
    eval_run: str
    created_after: _timestamp_pb2.Timestamp
    created_before: _timestamp_pb2.Timestamp
    question_contains: str
    page_size: int
    page_token: str
    def __init__(self, statuses: _Optional[_Iterable[_Union[Status, str]]] = ..., model: _Optional[str] = ..., mode: _Optional[_Union[Mode, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., eval_run: _Optional[str] = ..., created_after: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., created_before: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., question_contains: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class TrajectorySummary(_message.Message):
    __slots__ = ("trajectory_id", "trace_id", "status", "question", "mode", "model", "answer", "created_at", "finished_at", "labels", "eval_run", "steps", "tool_calls", "reason")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TRAJECTORY_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EVAL_RUN_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    trajectory_id: str
    trace_id: str
    status: Status
    question: str
    mode: Mode
    model: str
    answer: str
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    labels: _containers.ScalarMap[str, str]
    eval_run: str
    steps: int
    tool_calls: int
    reason: str
    def __init__(self, trajectory_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., status: _Optional[_Union[Status, str]] = ..., question: _Optional[str] = ..., mode: _Optional[_Union[Mode, str]] = ..., model: _Optional[str] = ..., answer: _Optional[str] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., eval_run: _Optional[str] = ..., steps: _Optional[int] = ..., tool_calls: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ListTrajectoriesResponse(_message.Message):
    __slots__ = ("trajectories", "next_page_token")
    TRAJECTORIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    trajectories: _containers.RepeatedCompositeFieldContainer[TrajectorySummary]
    next_page_token: str
    def __init__(self, trajectories: _Optional[_Iterable[_Union[TrajectorySummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StepAction(_message.Message):
    __slots__ = ("trajectory_id", "action", "finish", "is_last_step", "images", "model", "mode", "question")
    TRAJECTORY_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FINISH_FIELD_NUMBER: _ClassVar[int]
    IS_LAST_STEP_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    trajectory_id: str
    action: str
    finish: bool
    is_last_step: bool
    images: _containers.RepeatedCompositeFieldContainer[ImageInput]
    model: str
    mode: Mode
    question: str
    def __init__(self, trajectory_id: _Optional[str] = ..., action: _Optional[str] = ..., finish: bool = ..., is_last_step: bool = ..., images: _Optional[_Iterable[_Union[ImageInput, _Mapping]]] = ..., model: _Optional[str] = ..., mode: _Optional[_Union[Mode, str]] = ..., question: _Optional[str] = ...) -> None: ...

class StepRequest(_message.Message):
    __slots__ = ("actions",)
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedCompositeFieldContainer[StepAction]
    def __init__(self, actions: _Optional[_Iterable[_Union[StepAction, _Mapping]]] = ...) -> None: ...

class StepObservation(_message.Message):
    __slots__ = ("trajectory_id", "text", "images", "done", "valid", "error")
    TRAJECTORY_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    trajectory_id: str
    text: str
    images: _containers.RepeatedCompositeFieldContainer[ImageRef]
    done: bool
    valid: bool
    error: str
    def __init__(self, trajectory_id: _Optional[str] = ..., text: _Optional[str] = ..., images: _Optional[_Iterable[_Union[ImageRef, _Mapping]]] = ..., done: bool = ..., valid: bool = ..., error: _Optional[str] = ...) -> None: ...

class StepResponse(_message.Message):
    __slots__ = ("observations",)
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    observations: _containers.RepeatedCompositeFieldContainer[StepObservation]
    def __init__(self, observations: _Optional[_Iterable[_Union[StepObservation, _Mapping]]] = ...) -> None: ...
