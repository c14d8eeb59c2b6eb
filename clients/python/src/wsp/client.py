"""The synchronous client: ``wsp.Client(base_url, token)``.

Standard library only (``urllib.request`` + ``json``). Every request is built from the route table
in ``wsp.routes`` (operationId -> method and path), the same names /openapi.json uses.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union, cast

from .errors import ApiError, TimeoutError, WorkspaceFailedError
from .models import (
    ArchiveWritten,
    ChangesView,
    CommandView,
    FetchResult,
    FileData,
    FileList,
    FileStat,
    ForkView,
    OperationView,
    OutputChunk,
    ResetResult,
    SessionRunView,
    SessionView,
    SnapshotView,
    Step,
    WebhookEvent,
    UsageView,
    WorkspaceView,
    from_dict,
)
from .routes import ROUTES

__all__ = ["Client", "status_for_code"]

#: The server holds a long-poll at most 25 s.
LONG_POLL_MS = 25_000

_STATUS_BY_CODE = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "range_not_satisfiable": 416,
    "too_many_requests": 429,
    "internal": 500,
    "step_failed": 502,
    "backend_unavailable": 503,
}

_SETTLED = ("ready", "failed", "deleted")
_NO_BODY = object()


def status_for_code(code: str) -> int:
    """The HTTP status the API answers an error code with (unknown codes: 500)."""
    return _STATUS_BY_CODE.get(code, 500)


def _compact(values: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@dataclass
class Response:
    """A raw HTTP answer: status, headers, body bytes."""

    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON (``None`` when empty)."""
        if not self.body:
            return None
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError as error:
            raise ApiError(self.status, "bad_response", f"HTTP {self.status} answer is not JSON") from error


class Client:
    """Typed client for the Workspace Provider API.

    Every method raises :class:`wsp.ApiError` for an error answer (``code``, ``message``,
    ``details`` are the API's) and for an unreachable server (status 0, code ``unreachable``);
    waits raise :class:`wsp.TimeoutError`.

    >>> client = wsp.Client("http://127.0.0.1:7070", token)
    >>> with client.workspace(refs={"app": "main"}, timeout=600) as ws:
    ...     print(client.run(ws.id, "git -C app log --oneline").stdout.text)
    """

    def __init__(
        self,
        base_url: str,
        token: Optional[str] = None,
        *,
        timeout: float = 60.0,
        poll_interval: float = 0.5,
    ) -> None:
        """``timeout``: seconds one HTTP request may take (long-polls last at most 25 s);
        ``poll_interval``: seconds between polls where the API has no long-poll."""
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.poll_interval = poll_interval

    # ---- transport ----

    def _call(
        self,
        operation_id: str,
        params: Optional[Mapping[str, str]] = None,
        *,
        query: Optional[Mapping[str, Any]] = None,
        body: Any = _NO_BODY,
        raw: Optional[bytes] = None,
        content_type: str = "application/octet-stream",
        accept: str = "application/json",
        headers: Optional[Mapping[str, str]] = None,
    ) -> Response:
        """One request of the route ``operation_id``; an error answer raises ApiError."""
        method, template = ROUTES[operation_id]
        path = re.sub(
            r"\{(\w+)\}",
            lambda m: urllib.parse.quote(str((params or {})[m.group(1)]), safe=""),
            template,
        )
        url = self.base_url + path
        if query:
            pairs = []
            for key, value in query.items():
                if value is None:
                    continue
                pairs.append((key, ("true" if value else "false") if isinstance(value, bool) else str(value)))
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        sent: Dict[str, str] = {"accept": accept, **(headers or {})}
        if self._token is not None:
            sent["authorization"] = f"Bearer {self._token}"
        data: Optional[bytes] = None
        if body is not _NO_BODY:
            data = json.dumps(body).encode("utf-8")
            sent["content-type"] = "application/json"
        elif raw is not None:
            data = raw
            sent["content-type"] = content_type
        elif method in ("POST", "PUT"):
            data = b""
        request = urllib.request.Request(url, data=data, headers=sent, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return Response(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as error:
            payload = error.read() if error.fp is not None else b""
            raise ApiError.from_response(error.code, payload) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ApiError(0, "unreachable", f"cannot reach {self.base_url}: {reason}") from error

    def _json(self, operation_id: str, params: Optional[Mapping[str, str]] = None, **kwargs: Any) -> Any:
        return self._call(operation_id, params, **kwargs).json()

    # ---- the provider ----

    def health(self) -> Dict[str, Any]:
        """Liveness (``{"ok": true}``); needs no token."""
        return cast(Dict[str, Any], self._json("health"))

    def openapi(self) -> Dict[str, Any]:
        """The provider's OpenAPI 3.1 document."""
        return cast(Dict[str, Any], self._json("openApi"))

    # ---- workspaces ----

    def create_workspace(
        self,
        *,
        refs: Optional[Mapping[str, str]] = None,
        env: Optional[Mapping[str, str]] = None,
        labels: Optional[Mapping[str, str]] = None,
        ttl_seconds: Optional[int] = None,
        idempotency_key: Optional[str] = None,
        from_snapshot: Optional[str] = None,
        webhook: Optional[Mapping[str, Any]] = None,
    ) -> WorkspaceView:
        """Start provisioning (status ``provisioning``); use :meth:`wait_ready` next.

        An idempotent repeat (same ``idempotency_key``) returns the workspace made earlier.
        ``webhook``: this workspace's own lifecycle hook, ``{"url", "secret", "events"?}`` — check
        deliveries with :func:`wsp.verify_webhook`; the secret is never answered back.
        """
        body = _compact(
            {
                "refs": dict(refs) if refs is not None else None,
                "env": dict(env) if env is not None else None,
                "labels": dict(labels) if labels is not None else None,
                "ttlSeconds": ttl_seconds,
                "idempotencyKey": idempotency_key,
                "fromSnapshot": from_snapshot,
                "webhook": dict(webhook) if webhook is not None else None,
            }
        )
        return from_dict(WorkspaceView, self._json("createWorkspace", body=body))

    def get_workspace(self, workspace_id: str) -> WorkspaceView:
        """Status, plan, commits, cache hit or miss, progress steps."""
        return from_dict(WorkspaceView, self._json("getWorkspace", {"id": workspace_id}))

    def list_workspaces(self) -> List[WorkspaceView]:
        """All workspaces."""
        return [from_dict(WorkspaceView, w) for w in self._json("listWorkspaces")["workspaces"]]

    def delete_workspace(self, workspace_id: str) -> WorkspaceView:
        """Tear a workspace down (idempotent): status ``deleted``, or ``deleting`` meanwhile."""
        return from_dict(WorkspaceView, self._json("deleteWorkspace", {"id": workspace_id}))

    def wait_ready(
        self,
        workspace_id: str,
        timeout: float = 600.0,
        on_progress: Optional[Callable[[Step], None]] = None,
        *,
        poll_interval: Optional[float] = None,
    ) -> WorkspaceView:
        """Poll the workspace until it is ``ready`` and return it.

        ``on_progress`` is called once with each new step of the workspace (clone, cache, setup,
        ...), in order. Raises :class:`wsp.WorkspaceFailedError` (an ApiError, code
        ``step_failed``) when it ends ``failed`` or ``deleted``, :class:`wsp.TimeoutError` after
        ``timeout`` seconds (the workspace goes on provisioning).
        """
        deadline = time.monotonic() + timeout
        interval = self.poll_interval if poll_interval is None else poll_interval
        seen = 0
        while True:
            view = self.get_workspace(workspace_id)
            if on_progress is not None:
                for step in view.steps[seen:]:
                    on_progress(step)
                seen = max(seen, len(view.steps))
            if view.status == "ready":
                return view
            if view.status in _SETTLED:
                raise WorkspaceFailedError(view)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"workspace {workspace_id} still {view.status} after {timeout} s", view)
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))

    @contextlib.contextmanager
    def workspace(
        self,
        *,
        timeout: float = 600.0,
        on_progress: Optional[Callable[[Step], None]] = None,
        **create: Any,
    ) -> Iterator[WorkspaceView]:
        """Create a workspace (``create``: the keyword arguments of :meth:`create_workspace`),
        wait until it is ready, yield it, and delete it on exit — also when setup failed or the
        wait timed out.

        >>> with client.workspace(refs={"app": "main"}, timeout=300) as ws:
        ...     client.run(ws.id, "make test")
        """
        view = self.create_workspace(**create)
        try:
            yield self.wait_ready(view.id, timeout, on_progress)
        finally:
            self.delete_workspace(view.id)

    # ---- commands ----

    @staticmethod
    def _command_body(
        command: Union[str, Sequence[str]],
        cwd: Optional[str],
        env: Optional[Mapping[str, str]],
        stdin: Union[str, bytes, None],
        open_stdin: Optional[bool],
        timeout_ms: Optional[int],
        wait_ms: Optional[int],
        tty: Optional[Tuple[int, int]],
    ) -> Dict[str, Any]:
        body: Dict[str, Any] = {"command": command} if isinstance(command, str) else {"argv": list(command)}
        if isinstance(stdin, bytes):
            body["stdin"] = base64.b64encode(stdin).decode("ascii")
            body["stdinEncoding"] = "base64"
        elif stdin is not None:
            body["stdin"] = stdin
        body.update(
            _compact(
                {
                    "cwd": cwd,
                    "env": dict(env) if env is not None else None,
                    "openStdin": open_stdin,
                    "timeoutMs": timeout_ms,
                    "waitMs": wait_ms,
                    "tty": {"rows": tty[0], "cols": tty[1]} if tty is not None else None,
                }
            )
        )
        return body

    def run(
        self,
        workspace_id: str,
        command: Union[str, Sequence[str]],
        *,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        stdin: Union[str, bytes, None] = None,
        open_stdin: Optional[bool] = None,
        timeout_ms: Optional[int] = None,
        wait_ms: Optional[int] = None,
        tty: Optional[Tuple[int, int]] = None,
        wait: bool = True,
        timeout: Optional[float] = None,
    ) -> CommandView:
        """Run a command: a shell string (``bash -lc``) or an argv list.

        Like the TS client's runCommand: POST with ``wait_ms``; if the server answers 202 (still
        running), long-poll ``GET …/commands/{cid}?waitMs=`` until it ends and return the final
        view with its output from offset 0. ``wait=False`` returns the first answer as is (state
        may be ``running``). ``timeout`` (seconds) bounds the client's wait (wsp.TimeoutError;
        the command runs on); ``timeout_ms`` is the command's own limit on the provider.
        """
        body = self._command_body(command, cwd, env, stdin, open_stdin, timeout_ms, wait_ms, tty)
        answer = self._call("runCommand", {"id": workspace_id}, body=body)
        first = from_dict(CommandView, answer.json())
        if answer.status != 202 or not wait:
            return first
        return self.wait_command(workspace_id, first.id, timeout=timeout)

    def wait_command(self, workspace_id: str, command_id: str, *, timeout: Optional[float] = None) -> CommandView:
        """Long-poll (no output transferred) until the command ends; then its full view."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left_ms = LONG_POLL_MS if deadline is None else int(max(0.0, deadline - time.monotonic()) * 1000)
            view = self.get_command(workspace_id, command_id, limit=0, wait_ms=min(LONG_POLL_MS, left_ms))
            if view.state != "running":
                return self.get_command(workspace_id, command_id)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"command {command_id} still running after {timeout} s", view)

    def get_command(
        self,
        workspace_id: str,
        command_id: str,
        *,
        stdout_offset: int = 0,
        stderr_offset: int = 0,
        limit: Optional[int] = None,
        wait_ms: int = 0,
    ) -> CommandView:
        """State and output from the given byte offsets (``limit`` bytes per stream, default 1 MiB);
        ``wait_ms`` long-polls for the end."""
        query = _compact(
            {"stdoutOffset": stdout_offset, "stderrOffset": stderr_offset, "limit": limit, "waitMs": wait_ms}
        )
        return from_dict(CommandView, self._json("getCommand", {"id": workspace_id, "cid": command_id}, query=query))

    def list_commands(self, workspace_id: str) -> List[CommandView]:
        """The workspace's commands."""
        return [from_dict(CommandView, c) for c in self._json("listCommands", {"id": workspace_id})["commands"]]

    def cancel_command(self, workspace_id: str, command_id: str) -> CommandView:
        """Kill a running command's process group; its view after."""
        return from_dict(CommandView, self._json("cancelCommand", {"id": workspace_id, "cid": command_id}))

    def write_stdin(self, workspace_id: str, command_id: str, data: Union[bytes, str], *, eof: bool = False) -> None:
        """Feed a command started with ``open_stdin=True`` (in call order); ``eof`` closes its stdin after."""
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        self._call("writeStdin", {"id": workspace_id, "cid": command_id}, query={"eof": eof}, raw=raw)

    def resize_command(self, workspace_id: str, command_id: str, rows: int, cols: int) -> None:
        """New terminal size for a running command started with ``tty``."""
        self._call("resizeCommand", {"id": workspace_id, "cid": command_id}, body={"rows": rows, "cols": cols})

    def stream_output(
        self,
        workspace_id: str,
        command_id: str,
        *,
        poll_interval: Optional[float] = None,
        timeout: Optional[float] = None,
    ) -> Iterator[OutputChunk]:
        """Yield the command's output as it comes (polling from the last offsets), until it ended
        and all its output was read. Each chunk says its stream (``stdout``/``stderr``) and offset."""
        interval = self.poll_interval if poll_interval is None else poll_interval
        deadline = None if timeout is None else time.monotonic() + timeout
        offsets = {"stdout": 0, "stderr": 0}
        while True:
            view = self.get_command(
                workspace_id, command_id, stdout_offset=offsets["stdout"], stderr_offset=offsets["stderr"]
            )
            got = False
            for name in ("stdout", "stderr"):
                out = getattr(view, name)
                data = out.content
                if data:
                    got = True
                    yield OutputChunk(name, data, out.offset)
                offsets[name] = max(offsets[name], out.next_offset)
            if view.state != "running" and not got:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"command {command_id} still running after {timeout} s", view)
            if not got:
                time.sleep(interval)

    # ---- persistent shell sessions ----

    def create_session(
        self,
        workspace_id: str,
        *,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        shell: Optional[str] = None,
    ) -> SessionView:
        """A persistent shell: cd, variables, functions, aliases persist between its runs."""
        body = _compact({"cwd": cwd, "env": dict(env) if env is not None else None, "shell": shell})
        return from_dict(SessionView, self._json("createSession", {"id": workspace_id}, body=body))

    def run_in_session(
        self,
        workspace_id: str,
        session_id: str,
        command: str,
        *,
        timeout_ms: Optional[int] = None,
        wait_ms: Optional[int] = None,
        wait: bool = True,
        timeout: Optional[float] = None,
    ) -> SessionRunView:
        """Run one command line in the session's shell; waits for its end like :meth:`run`
        (on 202 it long-polls the session until this run ended)."""
        params = {"id": workspace_id, "sid": session_id}
        body = _compact({"command": command, "timeoutMs": timeout_ms, "waitMs": wait_ms})
        answer = self._call("runInSession", params, body=body)
        first = from_dict(SessionRunView, answer.json())
        if answer.status != 202 or not wait:
            return first
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left_ms = LONG_POLL_MS if deadline is None else int(max(0.0, deadline - time.monotonic()) * 1000)
            session = self.get_session(workspace_id, session_id, wait_ms=min(LONG_POLL_MS, left_ms))
            run = session.last_run
            if run is None or run.run_id != first.run_id:
                first.state = "lost"
                first.reason = "the session forgot the run"
                return first
            if run.state != "running":
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"session run {first.run_id} still running after {timeout} s", run)

    def get_session(self, workspace_id: str, session_id: str, *, wait_ms: int = 0) -> SessionView:
        """The session and its current or last run; ``wait_ms`` long-polls for the run's end."""
        params = {"id": workspace_id, "sid": session_id}
        return from_dict(SessionView, self._json("getSession", params, query={"waitMs": wait_ms}))

    def list_sessions(self, workspace_id: str) -> List[SessionView]:
        """The workspace's sessions, each with its last run."""
        return [from_dict(SessionView, s) for s in self._json("listSessions", {"id": workspace_id})["sessions"]]

    def interrupt_session(self, workspace_id: str, session_id: str) -> SessionView:
        """SIGINT to what the session runs (Ctrl-C); the shell lives on."""
        return from_dict(SessionView, self._json("interruptSession", {"id": workspace_id, "sid": session_id}))

    def delete_session(self, workspace_id: str, session_id: str) -> SessionView:
        """Kill the shell and forget the session (the answer says ``closed``)."""
        return from_dict(SessionView, self._json("deleteSession", {"id": workspace_id, "sid": session_id}))

    # ---- git, baseline, long operations ----

    def _operation(
        self,
        operation_id: str,
        workspace_id: str,
        body: Dict[str, Any],
        wait_ms: Optional[int],
        timeout: Optional[float],
    ) -> Dict[str, Any]:
        """POST a long operation; its result (200), or poll the operation (202) until it ends.
        A failed operation raises the ApiError the request would have answered."""
        query = _compact({"waitMs": wait_ms})
        answer = self._call(operation_id, {"id": workspace_id}, body=body, query=query)
        if answer.status != 202:
            return cast(Dict[str, Any], answer.json())
        op = self.wait_operation(workspace_id, answer.json()["id"], timeout=timeout)
        if op.status == "succeeded":
            return op.result or {}
        error = op.error or {"code": "internal", "message": "operation failed"}
        code = str(error.get("code", "internal"))
        raise ApiError(status_for_code(code), code, str(error.get("message", "")), error.get("details"))

    def fetch(
        self,
        workspace_id: str,
        *,
        repos: Optional[Sequence[str]] = None,
        checkout: Optional[Tuple[str, str]] = None,
        wait_ms: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> FetchResult:
        """Fetch new commits (all or some ``repos``; ``checkout=(repo, ref)`` checks one out);
        waits for the end, polling the operation past the server's wait."""
        body = _compact(
            {
                "repos": list(repos) if repos is not None else None,
                "checkout": {"repo": checkout[0], "ref": checkout[1]} if checkout is not None else None,
            }
        )
        return from_dict(FetchResult, self._operation("gitFetch", workspace_id, body, wait_ms, timeout))

    def reset(
        self,
        workspace_id: str,
        *,
        refs: Optional[Mapping[str, str]] = None,
        mode: Optional[str] = None,
        wait_ms: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> ResetResult:
        """Back to the baseline (or to new ``refs``; ``mode="recreate"`` replaces the compute),
        with the fingerprint check; waits for the end, polling the operation past the server's wait."""
        body = _compact({"refs": dict(refs) if refs is not None else None, "mode": mode})
        return from_dict(ResetResult, self._operation("resetWorkspace", workspace_id, body, wait_ms, timeout))

    def get_operation(self, workspace_id: str, operation_id: str, *, wait_ms: Optional[int] = None) -> OperationView:
        """A long operation: running, or succeeded with ``result``, or failed with ``error``."""
        params = {"id": workspace_id, "oid": operation_id}
        return from_dict(OperationView, self._json("getOperation", params, query=_compact({"waitMs": wait_ms})))

    def list_operations(self, workspace_id: str) -> List[OperationView]:
        """The workspace's long operations, oldest first."""
        return [from_dict(OperationView, o) for o in self._json("listOperations", {"id": workspace_id})["operations"]]

    def wait_operation(self, workspace_id: str, operation_id: str, *, timeout: Optional[float] = None) -> OperationView:
        """Long-poll a long operation until it ends (returned, failed or not) or ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left_ms = LONG_POLL_MS if deadline is None else int(max(0.0, deadline - time.monotonic()) * 1000)
            op = self.get_operation(workspace_id, operation_id, wait_ms=min(LONG_POLL_MS, left_ms))
            if op.status != "running":
                return op
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"operation {operation_id} still running after {timeout} s", op)

    def list_webhook_events(self, workspace_id: str) -> List[WebhookEvent]:
        """Its lifecycle webhook events, oldest first, each with every delivery attempt (GET …/events as JSON)."""
        answer = self._json("watchWorkspace", {"id": workspace_id})
        return [from_dict(WebhookEvent, e) for e in answer["events"]]

    def changes(self, workspace_id: str) -> ChangesView:
        """Per repository: status and diff against the baseline."""
        return from_dict(ChangesView, self._json("getChanges", {"id": workspace_id}))

    def usage(self, workspace_id: str) -> UsageView:
        """CPU, memory, disk and pids of a ready workspace now, measured by its backend (None: cannot tell)."""
        return from_dict(UsageView, self._json("getUsage", {"id": workspace_id}))

    # ---- fork and snapshots ----

    def fork(
        self,
        workspace_id: str,
        count: int,
        *,
        labels: Optional[Mapping[str, str]] = None,
        ttl_seconds: Optional[int] = None,
        wait_ms: Optional[int] = None,
    ) -> ForkView:
        """``count`` new workspaces from the workspace's current state; they provision from the
        fork point (``wait_ready`` each)."""
        body = _compact(
            {"count": count, "labels": dict(labels) if labels is not None else None, "ttlSeconds": ttl_seconds}
        )
        query = _compact({"waitMs": wait_ms})
        return from_dict(ForkView, self._json("forkWorkspace", {"id": workspace_id}, body=body, query=query))

    def create_snapshot(
        self,
        workspace_id: str,
        *,
        name: Optional[str] = None,
        labels: Optional[Mapping[str, str]] = None,
        wait_ms: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> SnapshotView:
        """A named snapshot of the workspace's current state; waits until it is taken (a failed
        one raises ApiError 409)."""
        body = _compact({"name": name, "labels": dict(labels) if labels is not None else None})
        query = _compact({"waitMs": wait_ms})
        snap = from_dict(SnapshotView, self._json("createSnapshot", {"id": workspace_id}, body=body, query=query))
        deadline = None if timeout is None else time.monotonic() + timeout
        while snap.status == "creating":
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"snapshot {snap.id} still being taken after {timeout} s", snap)
            time.sleep(self.poll_interval)
            snap = self.get_snapshot(snap.id)
        if snap.status == "failed":
            message = snap.failure.message if snap.failure else f"snapshot {snap.id} failed"
            raise ApiError(409, "conflict", message, snap.raw.get("failure"))
        return snap

    def get_snapshot(self, snapshot_id: str) -> SnapshotView:
        """A snapshot: creating, ready (``size_bytes``) or failed (why)."""
        return from_dict(SnapshotView, self._json("getSnapshot", {"sid": snapshot_id}))

    def list_snapshots(self) -> List[SnapshotView]:
        """User snapshots and the fork points of forks still being made."""
        return [from_dict(SnapshotView, s) for s in self._json("listSnapshots")["snapshots"]]

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Delete a snapshot (409 while it is taken or a workspace is being made from it)."""
        self._call("deleteSnapshot", {"sid": snapshot_id})

    # ---- files (inside the workspace, as its user; paths relative to the workdir or absolute) ----

    def read_file(
        self,
        workspace_id: str,
        path: str,
        *,
        range: Optional[Tuple[int, Optional[int]]] = None,
        suffix: Optional[int] = None,
    ) -> FileData:
        """A file's bytes. ``range=(first, last)`` (inclusive; ``last`` None: to the end) or
        ``suffix=n`` (the last n bytes) reads only those; ``FileData.range`` says which, ``size``
        is the whole file's. Past the end: ApiError 416; over the server's limit: 413."""
        headers: Dict[str, str] = {}
        if suffix is not None:
            headers["range"] = f"bytes=-{suffix}"
        elif range is not None:
            first, last = range
            headers["range"] = f"bytes={first}-{'' if last is None else last}"
        answer = self._call(
            "readFile", {"id": workspace_id}, query={"path": path}, accept="application/octet-stream", headers=headers
        )
        match = re.match(r"^bytes (\d+)-(\d+)/(\d+)$", answer.headers.get("content-range") or "")
        if answer.status == 206 and match:
            first_b, last_b, size = (int(g) for g in match.groups())
            return FileData(answer.body, size, (first_b, last_b))
        return FileData(answer.body, len(answer.body))

    def write_file(
        self, workspace_id: str, path: str, data: Union[bytes, str], *, mode: Optional[str] = None
    ) -> FileStat:
        """Write a file atomically (parents created); ``mode`` e.g. ``"0755"``. Its new stat."""
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        query = _compact({"path": path, "mode": mode})
        return from_dict(FileStat, self._call("writeFile", {"id": workspace_id}, query=query, raw=raw).json())

    def stat_file(self, workspace_id: str, path: str) -> FileStat:
        """Type, size, mode, mtime (and a symlink's target) of the entry itself."""
        return from_dict(FileStat, self._json("statFile", {"id": workspace_id}, query={"path": path}))

    def list_files(self, workspace_id: str, path: str = ".", *, recursive: bool = False) -> FileList:
        """A directory's entries (``recursive``: the whole tree), sorted by path."""
        query = {"path": path, "recursive": recursive}
        return from_dict(FileList, self._json("listFiles", {"id": workspace_id}, query=query))

    def delete_file(self, workspace_id: str, path: str, *, recursive: bool = False) -> None:
        """Delete a file, symlink or directory (a non-empty one needs ``recursive``, else 409)."""
        self._call("deleteFile", {"id": workspace_id}, query={"path": path, "recursive": recursive})

    def read_archive(self, workspace_id: str, path: str) -> bytes:
        """A directory as a tar (GNU format; symlinks stored as links)."""
        return self._call("readArchive", {"id": workspace_id}, query={"path": path}, accept="application/x-tar").body

    def write_archive(self, workspace_id: str, path: str, tar: bytes) -> ArchiveWritten:
        """Extract a tar into a directory (created if missing); a hostile archive raises 400."""
        answer = self._call(
            "writeArchive", {"id": workspace_id}, query={"path": path}, raw=bytes(tar), content_type="application/x-tar"
        )
        return from_dict(ArchiveWritten, answer.json())
