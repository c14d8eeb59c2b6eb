"""Typed views of the API's answers.

Each dataclass models the fields a controller needs; the whole JSON object is kept in ``raw`` so
fields not modelled (or added to the API later) are still at hand. Field names are the API's in
snake_case (``exitCode`` -> ``exit_code``), or the JSON name in the field's ``metadata["json"]``.
``RESPONSE_SCHEMAS`` says which response schema of /openapi.json each dataclass follows, so a test
can check the two against each other (tests/test_drift.py).
"""

from __future__ import annotations

import base64
import dataclasses
import re
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Type, TypeVar, Union

__all__ = [
    "RESPONSE_SCHEMAS",
    "ArchiveWritten",
    "CacheInfo",
    "ChangesView",
    "CommandView",
    "CpuUsage",
    "DiskUsage",
    "Failure",
    "FetchResult",
    "FetchedRepo",
    "FileData",
    "FileEntry",
    "FileList",
    "FileStat",
    "ForkView",
    "MemoryUsage",
    "OperationView",
    "Output",
    "OutputChunk",
    "PidsUsage",
    "RepoChanges",
    "RepoState",
    "ResetResult",
    "SessionRunView",
    "SessionView",
    "SnapshotView",
    "Step",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEvent",
    "UsageView",
    "WorkspaceView",
    "json_name",
]

T = TypeVar("T")


def _raw() -> Any:
    return field(default_factory=dict, repr=False, compare=False, metadata={"raw": True})


def json_name(f: dataclasses.Field) -> str:  # type: ignore[type-arg]
    """The JSON property a dataclass field is read from."""
    explicit = f.metadata.get("json")
    if explicit:
        return str(explicit)
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), f.name)


def _decode(tp: Any, value: Any) -> Any:
    """``value`` (parsed JSON) as type ``tp``: dataclasses built, lists and Optionals followed."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(args[0], value) if len(args) == 1 else value
    if origin in (list, List):
        (item,) = typing.get_args(tp) or (Any,)
        return [_decode(item, v) for v in value]
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value)
    return value


_HINTS: Dict[type, Dict[str, Any]] = {}


def from_dict(cls: Type[T], data: Dict[str, Any]) -> T:
    """Build dataclass ``cls`` from a JSON object; unknown properties stay in ``raw``."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    kwargs: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.metadata.get("raw"):
            kwargs[f.name] = data
            continue
        name = json_name(f)
        if name in data:
            kwargs[f.name] = _decode(hints[f.name], data[name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kwargs[f.name] = None  # a required field the answer lacked: tolerated, seen as None
    return cls(**kwargs)


# ---- workspaces ----


@dataclass
class Step:
    """One progress step of a workspace (clone, cache, setup, ...)."""

    at: str
    step: str
    message: str


@dataclass
class RepoState:
    """A repository of the workspace and the commit it is at."""

    name: str
    path: str
    commit: Optional[str] = None
    ref: Optional[str] = None


@dataclass
class CacheInfo:
    """Cache hit or miss, and why."""

    key: str
    hit: bool
    reason: str
    restored_from: Optional[str] = None


@dataclass
class Failure:
    """Which step failed, and its message."""

    step: str
    message: str


@dataclass
class WorkspaceView:
    """A workspace: status, plan, commits, cache hit or miss, progress steps."""

    id: str
    status: str
    plan: Dict[str, Any]
    repos: List[RepoState]
    labels: Dict[str, str]
    warnings: List[str]
    steps: List[Step]
    created_at: str
    updated_at: str
    cache: Optional[CacheInfo] = None
    baseline_fingerprint: Optional[str] = None
    failure: Optional[Failure] = None
    setup_command_id: Optional[str] = None
    expires_at: Optional[float] = None
    from_snapshot: Optional[str] = None
    forked_from: Optional[str] = None
    raw: Dict[str, Any] = _raw()


# ---- commands and sessions ----


@dataclass
class Output:
    """One output stream of a command from ``offset``; ``next_offset`` is where to read on."""

    data: str
    encoding: str
    offset: int
    next_offset: int
    total_bytes: int = field(metadata={"json": "bytes"})
    truncated: bool

    @property
    def content(self) -> bytes:
        """The bytes of this chunk (``data`` decoded from its ``encoding``)."""
        if self.encoding == "base64":
            return base64.b64decode(self.data)
        return self.data.encode("utf-8")

    @property
    def text(self) -> str:
        """The chunk as text (invalid UTF-8 replaced)."""
        if self.encoding == "base64":
            return self.content.decode("utf-8", "replace")
        return self.data


@dataclass
class OutputChunk:
    """New output of a running command, as ``stream_output`` yields it."""

    stream: str
    data: bytes
    offset: int


@dataclass
class CommandView:
    """A command: state, exit code, signal and output."""

    id: str
    workspace_id: str
    state: str
    exit_code: Optional[int]
    signal: Optional[str]
    argv: List[str]
    cwd: str
    stdout: Output
    stderr: Output
    started_at: str
    reason: Optional[str] = None
    ended_at: Optional[str] = None
    duration_ms: Optional[float] = None
    raw: Dict[str, Any] = _raw()


@dataclass
class SessionRunView:
    """One command line run in a session."""

    run_id: str
    state: str
    exit_code: Optional[int]
    stdout: Output
    stderr: Output
    started_at: str
    reason: Optional[str] = None
    ended_at: Optional[str] = None
    duration_ms: Optional[float] = None
    raw: Dict[str, Any] = _raw()


@dataclass
class SessionView:
    """A persistent shell session and its current or last run."""

    id: str
    workspace_id: str
    state: str
    cwd: str
    shell: str
    created_at: str
    reason: Optional[str] = None
    last_run: Optional[SessionRunView] = None
    raw: Dict[str, Any] = _raw()


# ---- files ----


@dataclass
class FileStat:
    """An entry itself (a symlink is not followed)."""

    type: str
    size: int
    mode: str
    mtime: str
    target: Optional[str] = None
    raw: Dict[str, Any] = _raw()


@dataclass
class FileEntry:
    """One entry of a directory listing."""

    name: str
    path: str
    type: str
    size: int
    mode: str
    mtime: str
    target: Optional[str] = None


@dataclass
class FileList:
    """A directory's entries, sorted by path."""

    path: str
    entries: List[FileEntry]
    truncated: bool
    skipped_non_utf8: int
    raw: Dict[str, Any] = _raw()


@dataclass
class FileData:
    """A file read: its bytes, the whole file's ``size``, and ``range`` (first, last) for a range read."""

    data: bytes
    size: int
    range: Optional[Tuple[int, int]] = None


@dataclass
class ArchiveWritten:
    """What an archive upload extracted."""

    path: str
    entries: int
    raw: Dict[str, Any] = _raw()


# ---- git, changes, operations ----


@dataclass
class RepoChanges:
    """One repository's status and diff against the baseline."""

    name: str
    path: str
    status: List[Dict[str, Any]]
    hidden: List[Dict[str, Any]]
    diff: str
    diff_truncated: bool
    base_commit: Optional[str] = None
    head: Optional[str] = None


@dataclass
class ChangesView:
    """What the agent changed, per repository."""

    repos: List[RepoChanges]
    raw: Dict[str, Any] = _raw()


# ---- usage ----


@dataclass
class CpuUsage:
    """CPU seconds used (user + system) since the workspace's compute began; None: cannot tell."""

    usage_seconds: Optional[float]


@dataclass
class MemoryUsage:
    """Memory charged to the workspace (page cache and tmpfs included) and its limit (None: none)."""

    current_bytes: Optional[int]
    limit_bytes: Optional[int]


@dataclass
class DiskUsage:
    """Bytes its writable content takes (as the disk limit measures it) and that limit (None: none)."""

    used_bytes: Optional[int]
    limit_bytes: Optional[int]


@dataclass
class PidsUsage:
    """Tasks (processes and threads) now and their limit (None: none)."""

    current: Optional[int]
    limit: Optional[int]


@dataclass
class UsageView:
    """What a workspace uses now, measured by its backend (``source`` says where); None: cannot tell."""

    workspace_id: str
    at: str
    source: str
    cpu: CpuUsage
    memory: MemoryUsage
    disk: DiskUsage
    pids: PidsUsage
    raw: Dict[str, Any] = _raw()


@dataclass
class FetchedRepo:
    """One repository a fetch went through."""

    name: str
    heads: Dict[str, str]
    before: Optional[str] = None
    after: Optional[str] = None
    checked_out: Optional[str] = None


@dataclass
class FetchResult:
    """The result of a fetch."""

    repos: List[FetchedRepo]
    raw: Dict[str, Any] = _raw()


@dataclass
class ResetResult:
    """The result of a reset, with the fingerprint check."""

    fingerprint: str
    baseline_fingerprint: str
    matches: bool
    duration_ms: float
    restored: Optional[int] = None
    removed: Optional[int] = None
    recreated: Optional[bool] = None
    previous_baseline_fingerprint: Optional[str] = None
    raw: Dict[str, Any] = _raw()


@dataclass
class OperationView:
    """A long operation (fetch, reset, snapshot): running, or its result or error."""

    id: str
    workspace_id: str
    kind: str
    status: str
    input: Dict[str, Any]
    created_at: str
    updated_at: str
    phase: Optional[str] = None
    result: Optional[Dict[str, Any]] = None
    error: Optional[Dict[str, Any]] = None
    ended_at: Optional[str] = None
    raw: Dict[str, Any] = _raw()


# ---- snapshots and fork ----


@dataclass
class SnapshotView:
    """A snapshot (a user's, or a fork point): creating, ready or failed."""

    id: str
    status: str
    kind: str
    source_workspace_id: str
    operation_id: str
    labels: Dict[str, str]
    created_at: str
    updated_at: str
    name: Optional[str] = None
    size_bytes: Optional[int] = None
    failure: Optional[Failure] = None
    raw: Dict[str, Any] = _raw()


@dataclass
class ForkView:
    """A fork: its fork point and the new workspaces (provisioning)."""

    snapshot: SnapshotView
    workspaces: List[WorkspaceView]
    raw: Dict[str, Any] = _raw()


# ---- lifecycle webhook events ----


@dataclass
class WebhookAttempt:
    """One delivery attempt: the receiver's ``status`` when it answered, else ``error``."""

    at: str
    duration_ms: int
    status: Optional[int] = None
    error: Optional[str] = None


@dataclass
class WebhookDelivery:
    """An event's delivery to one hook (``config:<n>`` or ``workspace``): its state and every attempt."""

    hook: str
    url: str
    state: str
    attempts: List[WebhookAttempt]
    next_attempt_at: Optional[str] = None


@dataclass
class WebhookEvent:
    """A lifecycle event of a workspace, the body sent (``payload``) and its deliveries."""

    id: str
    workspace_id: str
    type: str
    created_at: str
    payload: Dict[str, Any]
    deliveries: List[WebhookDelivery]
    raw: Dict[str, Any] = _raw()


#: Which response schema each dataclass follows: (operationId, HTTP status, JSON path inside the
#: body: property names, ``[]`` for an array's items). Checked against /openapi.json by the tests.
RESPONSE_SCHEMAS: Dict[type, Tuple[str, str, Tuple[str, ...]]] = {
    WorkspaceView: ("getWorkspace", "200", ()),
    Step: ("getWorkspace", "200", ("steps", "[]")),
    RepoState: ("getWorkspace", "200", ("repos", "[]")),
    CacheInfo: ("getWorkspace", "200", ("cache",)),
    Failure: ("getWorkspace", "200", ("failure",)),
    CommandView: ("getCommand", "200", ()),
    Output: ("getCommand", "200", ("stdout",)),
    SessionView: ("getSession", "200", ()),
    SessionRunView: ("runInSession", "200", ()),
    FileStat: ("statFile", "200", ()),
    FileList: ("listFiles", "200", ()),
    FileEntry: ("listFiles", "200", ("entries", "[]")),
    ArchiveWritten: ("writeArchive", "200", ()),
    ChangesView: ("getChanges", "200", ()),
    RepoChanges: ("getChanges", "200", ("repos", "[]")),
    UsageView: ("getUsage", "200", ()),
    CpuUsage: ("getUsage", "200", ("cpu",)),
    MemoryUsage: ("getUsage", "200", ("memory",)),
    DiskUsage: ("getUsage", "200", ("disk",)),
    PidsUsage: ("getUsage", "200", ("pids",)),
    FetchResult: ("gitFetch", "200", ()),
    FetchedRepo: ("gitFetch", "200", ("repos", "[]")),
    ResetResult: ("resetWorkspace", "200", ()),
    OperationView: ("getOperation", "200", ()),
    SnapshotView: ("getSnapshot", "200", ()),
    ForkView: ("forkWorkspace", "202", ()),
    WebhookEvent: ("watchWorkspace", "200", ("events", "[]")),
    WebhookDelivery: ("watchWorkspace", "200", ("events", "[]", "deliveries", "[]")),
    WebhookAttempt: ("watchWorkspace", "200", ("events", "[]", "deliveries", "[]", "attempts", "[]")),
}
