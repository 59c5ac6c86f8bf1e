"""The telemetry event model: schema names, event families, typed views and ``new_event``.

An event is the plain dict ``pipeline.serde`` reads and writes (see its docstring): every field
of ``avro/telemetry_event.avsc`` present, ``timestamp`` in int microseconds, and ``payload`` a
``(full record name, dict)`` tuple naming the family. The TypedDicts below are typing aids for
that dict; a unit test checks them field by field against the schemas so they cannot drift.
"""

# No `from __future__ import annotations`: TypedDict needs real annotations at runtime to
# know which keys are NotRequired (Python 3.11).
import copy
import time
import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, NotRequired, TypedDict

from pipeline.errors import ErrorKind, ValidationError
from pipeline.schemas import NAMESPACE, SchemaCatalog, load_catalog

SCHEMA_VERSION = 2
"""What producers write in ``schema_version``; bump with every change of telemetry_event.avsc."""

TELEMETRY_EVENT = f"{NAMESPACE}.TelemetryEvent"
WIDGET_UPDATE = f"{NAMESPACE}.WidgetUpdate"
PATTERN_ALERT = f"{NAMESPACE}.PatternAlert"
DEAD_LETTER = f"{NAMESPACE}.DeadLetter"

AGENT_TASK_EVENT = f"{NAMESPACE}.AgentTaskEvent"
AGENT_STATE_TRANSITION = f"{NAMESPACE}.AgentStateTransition"
FILE_EVENT = f"{NAMESPACE}.FileEvent"
COMMAND_EVENT = f"{NAMESPACE}.CommandEvent"
TEST_EVENT = f"{NAMESPACE}.TestEvent"
BUILD_EVENT = f"{NAMESPACE}.BuildEvent"
NETWORK_REQUEST = f"{NAMESPACE}.NetworkRequest"
RESOURCE_SAMPLE = f"{NAMESPACE}.ResourceSample"
LLM_REQUEST = f"{NAMESPACE}.LlmRequest"
SESSION_EVENT = f"{NAMESPACE}.SessionEvent"
USER_PROMPT = f"{NAMESPACE}.UserPrompt"
NOTIFICATION = f"{NAMESPACE}.Notification"
OTHER_EVENT = f"{NAMESPACE}.OtherEvent"

PAYLOAD_RECORD_NAMES: tuple[str, ...] = (
    AGENT_TASK_EVENT,
    AGENT_STATE_TRANSITION,
    FILE_EVENT,
    COMMAND_EVENT,
    TEST_EVENT,
    BUILD_EVENT,
    NETWORK_REQUEST,
    RESOURCE_SAMPLE,
    LLM_REQUEST,
    SESSION_EVENT,
    USER_PROMPT,
    NOTIFICATION,
    OTHER_EVENT,
)
"""The payload union's records, in the schema's order."""

EVENT_TYPES: Mapping[str, str] = {
    "agent.task.started": AGENT_TASK_EVENT,
    "agent.task.progress": AGENT_TASK_EVENT,
    "agent.task.completed": AGENT_TASK_EVENT,
    "agent.task.failed": AGENT_TASK_EVENT,
    "agent.state.transition": AGENT_STATE_TRANSITION,
    "file.read": FILE_EVENT,
    "file.write": FILE_EVENT,
    "file.delete": FILE_EVENT,
    "file.search": FILE_EVENT,
    "command.executed": COMMAND_EVENT,
    "test.executed": TEST_EVENT,
    "build.completed": BUILD_EVENT,
    "network.request": NETWORK_REQUEST,
    "resource.sample": RESOURCE_SAMPLE,
    "llm.request": LLM_REQUEST,
    "session.started": SESSION_EVENT,
    "session.ended": SESSION_EVENT,
    "session.stalled": SESSION_EVENT,
    "user.prompt": USER_PROMPT,
    "notification": NOTIFICATION,
}
"""Every event type with its own family; anything else travels as OtherEvent."""

# A future action of a known category (file.rename) keeps its category's family.
_CATEGORY_FAMILIES: Mapping[str, str] = {
    "agent.task": AGENT_TASK_EVENT,
    "agent.state": AGENT_STATE_TRANSITION,
    "file": FILE_EVENT,
    "command": COMMAND_EVENT,
    "test": TEST_EVENT,
    "build": BUILD_EVENT,
    "network": NETWORK_REQUEST,
    "resource": RESOURCE_SAMPLE,
    "llm": LLM_REQUEST,
    "session": SESSION_EVENT,
}


class Severity(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class Source(StrEnum):
    HOOK = "hook"
    OTLP = "otlp"
    TRANSCRIPT = "transcript"
    SDK = "sdk"
    SIMULATOR = "simulator"
    UNKNOWN = "unknown"


Payload = tuple[str, dict[str, Any]]


class TraceContext(TypedDict):
    trace_id: str
    span_id: str
    sampled: NotRequired[bool]


class TelemetryEvent(TypedDict):
    """The envelope; NotRequired marks fields with a schema default (decode always fills them)."""

    event_id: str
    event_type: str
    timestamp: int
    session_id: str
    agent: str
    task_id: NotRequired[str | None]
    severity: str
    source: str
    trace_context: NotRequired[TraceContext | None]
    metadata: NotRequired[dict[str, str]]
    redacted_fields: NotRequired[list[str]]
    schema_version: NotRequired[int]
    prompt_id: NotRequired[str | None]
    tool_use_id: NotRequired[str | None]
    payload: Payload


class AgentTaskEvent(TypedDict):
    agent_name: NotRequired[str]
    task_type: NotRequired[str | None]
    input_description: NotRequired[str | None]
    input_hash: NotRequired[str | None]
    files_count: NotRequired[int | None]
    progress_pct: NotRequired[float | None]
    current_step: NotRequired[str | None]
    phase: NotRequired[str | None]
    milestones: NotRequired[list[str]]
    duration_ms: NotRequired[int | None]
    output_hash: NotRequired[str | None]
    exit_code: NotRequired[int | None]
    error_type: NotRequired[str | None]
    error_message: NotRequired[str | None]
    error_file: NotRequired[str | None]
    error_line: NotRequired[int | None]
    error_column: NotRequired[int | None]
    error_stacktrace: NotRequired[str | None]


class AgentStateTransition(TypedDict):
    agent_name: NotRequired[str]
    from_state: str
    to_state: str
    reason: NotRequired[str | None]


class FileEvent(TypedDict):
    path: str
    size_bytes: NotRequired[int | None]
    lines_added: NotRequired[int | None]
    lines_removed: NotRequired[int | None]
    checksum_sha256: NotRequired[str | None]
    pattern: NotRequired[str | None]
    files_matched: NotRequired[int | None]
    duration_us: NotRequired[int | None]
    reason: NotRequired[str | None]
    justification: NotRequired[str | None]


class CommandEvent(TypedDict):
    binary: str
    args: NotRequired[list[str]]
    cwd: NotRequired[str | None]
    env_vars_count: NotRequired[int | None]
    exit_code: NotRequired[int | None]
    duration_ms: NotRequired[int | None]
    cpu_user_ms: NotRequired[int | None]
    cpu_system_ms: NotRequired[int | None]
    peak_memory_mib: NotRequired[float | None]
    stdout_lines: NotRequired[int | None]
    stderr_lines: NotRequired[int | None]
    stdout_excerpt: NotRequired[str | None]
    stderr_excerpt: NotRequired[str | None]
    network_requests: NotRequired[list[str]]


class TestEvent(TypedDict):
    suite: str
    test_name: str
    outcome: str
    duration_ms: NotRequired[int | None]
    coverage_pct: NotRequired[float | None]


class BuildEvent(TypedDict):
    component: str
    build_type: NotRequired[str | None]
    outcome: str
    duration_ms: NotRequired[int | None]


class NetworkRequest(TypedDict):
    protocol: str
    domain: str
    endpoint: NotRequired[str | None]
    status_code: NotRequired[int | None]
    bytes_sent: NotRequired[int | None]
    bytes_received: NotRequired[int | None]
    duration_ms: NotRequired[int | None]


class ResourceSample(TypedDict):
    memory_mib: float
    cpu_pct: float
    memory_limit_mib: NotRequired[float | None]
    cpu_limit_pct: NotRequired[float | None]


class LlmRequest(TypedDict):
    model: str
    input_tokens: NotRequired[int]
    output_tokens: NotRequired[int]
    cache_read_tokens: NotRequired[int]
    cache_creation_tokens: NotRequired[int]
    cost_usd: NotRequired[float | None]
    duration_ms: NotRequired[int | None]
    request_id: NotRequired[str | None]


class SessionEvent(TypedDict):
    reason: NotRequired[str | None]
    cwd: NotRequired[str | None]
    model: NotRequired[str | None]
    permission_mode: NotRequired[str | None]
    transcript_path: NotRequired[str | None]
    duration_ms: NotRequired[int | None]
    idle_ms: NotRequired[int | None]


class UserPrompt(TypedDict):
    prompt_length: NotRequired[int]
    prompt_excerpt: NotRequired[str | None]


class Notification(TypedDict):
    message: str
    notification_type: NotRequired[str | None]
    title: NotRequired[str | None]


class OtherEvent(TypedDict):
    name: str
    json: NotRequired[str]


class WidgetUpdate(TypedDict):
    session_id: str
    widget: str
    data_json: NotRequired[str]
    version: NotRequired[int]
    timestamp: int
    agent: NotRequired[str | None]


class PatternAlert(TypedDict):
    alert_id: str
    pattern: str
    session_id: str
    agent: str
    severity: str
    window_start: int
    window_end: int
    evidence_event_ids: NotRequired[list[str]]
    message: str
    suggested_mitigation: NotRequired[str | None]
    detected_at: int


class DeadLetter(TypedDict):
    original_bytes: NotRequired[bytes | None]
    original_text: NotRequired[str | None]
    original_truncated: NotRequired[bool]
    source_topic: str
    source_partition: NotRequired[int]
    source_offset: NotRequired[int]
    error_kind: str
    error_message: str
    first_seen: int
    attempts: NotRequired[int]
    session_id: NotRequired[str | None]
    event_id: NotRequired[str | None]
    stage: NotRequired[str | None]


TYPED_RECORDS: Mapping[str, type] = {
    TELEMETRY_EVENT: TelemetryEvent,
    f"{NAMESPACE}.TraceContext": TraceContext,
    AGENT_TASK_EVENT: AgentTaskEvent,
    AGENT_STATE_TRANSITION: AgentStateTransition,
    FILE_EVENT: FileEvent,
    COMMAND_EVENT: CommandEvent,
    TEST_EVENT: TestEvent,
    BUILD_EVENT: BuildEvent,
    NETWORK_REQUEST: NetworkRequest,
    RESOURCE_SAMPLE: ResourceSample,
    LLM_REQUEST: LlmRequest,
    SESSION_EVENT: SessionEvent,
    USER_PROMPT: UserPrompt,
    NOTIFICATION: Notification,
    OTHER_EVENT: OtherEvent,
    WIDGET_UPDATE: WidgetUpdate,
    PATTERN_ALERT: PatternAlert,
    DEAD_LETTER: DeadLetter,
}
"""Record name -> TypedDict; the drift test walks this against the schemas."""


def payload_record_names() -> tuple[str, ...]:
    return PAYLOAD_RECORD_NAMES


def payload_name_for(event_type: str) -> str:
    """The payload family of an event type: exact match, then its category, else OtherEvent."""
    name = EVENT_TYPES.get(event_type)
    if name is not None:
        return name
    category = event_type.rpartition(".")[0]
    while category:
        name = _CATEGORY_FAMILIES.get(category)
        if name is not None:
            return name
        category = category.rpartition(".")[0]
    return OTHER_EVENT


def short_name(record_name: str) -> str:
    """``dev.agentwatch.FileEvent`` -> ``FileEvent``."""
    return record_name.rpartition(".")[2]


def infer_severity(event_type: str, payload: Payload | None = None) -> str:
    """A severity for producers that do not say: from the action, then from the outcome."""
    action = event_type.rpartition(".")[2]
    if action in ("failed", "error", "crashed"):
        return Severity.ERROR.value
    if action in ("stalled", "timeout"):
        return Severity.WARNING.value
    if action == "progress" or event_type == "resource.sample":
        return Severity.DEBUG.value
    if payload is not None:
        name, body = payload
        if name == COMMAND_EVENT and body.get("exit_code") not in (None, 0):
            return Severity.WARNING.value
        if name == TEST_EVENT and body.get("outcome") in ("failed", "errored"):
            return Severity.WARNING.value
        if name == BUILD_EVENT and body.get("outcome") == "failure":
            return Severity.ERROR.value
        if name == AGENT_TASK_EVENT and body.get("exit_code") not in (None, 0):
            return Severity.ERROR.value
    return Severity.INFO.value


def record_defaults(record_name: str, catalog: SchemaCatalog | None = None) -> dict[str, Any]:
    """Field -> default of a record of the current schemas; a deep copy the caller may mutate."""
    return copy.deepcopy(dict((catalog or load_catalog()).record(record_name).defaults))


def required_fields(record_name: str, catalog: SchemaCatalog | None = None) -> tuple[str, ...]:
    """Fields of a record that have no default: a producer must set them."""
    return (catalog or load_catalog()).record(record_name).required


def _complete(record_name: str, given: Mapping[str, Any], catalog: SchemaCatalog) -> dict[str, Any]:
    info = catalog.record(record_name)
    missing = [f for f in info.required if f not in given]
    if missing:
        raise ValidationError(
            f"{short_name(record_name)} needs {', '.join(missing)}",
            kind=ErrorKind.SCHEMA_VIOLATION,
        )
    # Copy list/map defaults: every event must own its containers.
    out = {
        k: (copy.copy(v) if isinstance(v, (list, dict)) else v) for k, v in info.defaults.items()
    }
    out.update(given)
    return out


def now_us() -> int:
    return time.time_ns() // 1000


def new_event(
    event_type: str,
    session_id: str,
    payload: Payload | Mapping[str, Any] | None = None,
    *,
    agent: str = "claude-code",
    source: str = Source.SDK.value,
    severity: str | None = None,
    timestamp_us: int | None = None,
    event_id: str | None = None,
    task_id: str | None = None,
    metadata: Mapping[str, str] | None = None,
    trace_context: TraceContext | None = None,
    prompt_id: str | None = None,
    tool_use_id: str | None = None,
    catalog: SchemaCatalog | None = None,
) -> dict[str, Any]:
    """A complete event dict, equal to what decoding its encoding gives back.

    ``payload`` may be the ``(record name, dict)`` tuple, a bare dict (its family then comes from
    ``event_type``) or ``None`` (the family's defaults; OtherEvent gets ``name=event_type``).
    Raises ``ValidationError(kind=SCHEMA_VIOLATION)`` when a required payload field is missing.
    """
    cat = catalog or load_catalog()
    if isinstance(payload, tuple):
        family, body = payload
    else:
        family = payload_name_for(event_type)
        body = dict(payload) if payload is not None else {}
        if family == OTHER_EVENT and "name" not in body:
            body["name"] = event_type
    full_payload: Payload = (family, _complete(family, body, cat))
    event: dict[str, Any] = {
        "event_id": event_id or str(uuid.uuid4()),
        "event_type": event_type,
        "timestamp": now_us() if timestamp_us is None else timestamp_us,
        "session_id": session_id,
        "agent": agent,
        "task_id": task_id,
        "severity": str(severity) if severity is not None
        else infer_severity(event_type, full_payload),
        "source": str(source),
        "trace_context": None if trace_context is None
        else _complete(f"{NAMESPACE}.TraceContext", trace_context, cat),
        "metadata": dict(metadata) if metadata else {},
        "redacted_fields": [],
        "schema_version": SCHEMA_VERSION,
        "prompt_id": prompt_id,
        "tool_use_id": tool_use_id,
        "payload": full_payload,
    }
    return event
