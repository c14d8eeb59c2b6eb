"""The asyncio client: ``wsp.AsyncClient(base_url, token)``.

It runs the synchronous client's calls in worker threads (``asyncio.to_thread``): the transport is
the same blocking ``urllib.request`` code, so the event loop is never blocked, but each request in
flight holds one thread of the default executor. Methods, arguments and results are those of
:class:`wsp.Client`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .client import Client
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
)

__all__ = ["AsyncClient"]

_END = object()


class AsyncClient:
    """asyncio client for the Workspace Provider API, over the sync transport in threads
    (``asyncio.to_thread``). Same errors as :class:`wsp.Client`.

    >>> client = wsp.AsyncClient("http://127.0.0.1:7070", token)
    >>> async with client.workspace(refs={"app": "main"}) as ws:
    ...     result = await client.run(ws.id, "make test")
    """

    def __init__(
        self, base_url: str, token: Optional[str] = None, *, timeout: float = 60.0, poll_interval: float = 0.5
    ) -> None:
        """Arguments as for :class:`wsp.Client`; ``sync`` is the client doing the work."""
        self.sync = Client(base_url, token, timeout=timeout, poll_interval=poll_interval)

    @property
    def base_url(self) -> str:
        """The provider's base URL."""
        return self.sync.base_url

    async def health(self) -> Dict[str, Any]:
        """See :meth:`wsp.Client.health`."""
        return await asyncio.to_thread(self.sync.health)

    async def openapi(self) -> Dict[str, Any]:
        """See :meth:`wsp.Client.openapi`."""
        return await asyncio.to_thread(self.sync.openapi)

    # ---- workspaces ----

    async def create_workspace(self, **kwargs: Any) -> WorkspaceView:
        """See :meth:`wsp.Client.create_workspace` (same keyword arguments)."""
        return await asyncio.to_thread(lambda: self.sync.create_workspace(**kwargs))

    async def get_workspace(self, workspace_id: str) -> WorkspaceView:
        """See :meth:`wsp.Client.get_workspace`."""
        return await asyncio.to_thread(self.sync.get_workspace, workspace_id)

    async def list_workspaces(self) -> List[WorkspaceView]:
        """See :meth:`wsp.Client.list_workspaces`."""
        return await asyncio.to_thread(self.sync.list_workspaces)

    async def delete_workspace(self, workspace_id: str) -> WorkspaceView:
        """See :meth:`wsp.Client.delete_workspace`."""
        return await asyncio.to_thread(self.sync.delete_workspace, workspace_id)

    async def wait_ready(
        self,
        workspace_id: str,
        timeout: float = 600.0,
        on_progress: Optional[Callable[[Step], None]] = None,
        *,
        poll_interval: Optional[float] = None,
    ) -> WorkspaceView:
        """See :meth:`wsp.Client.wait_ready` (``on_progress`` is called from a worker thread)."""
        return await asyncio.to_thread(
            lambda: self.sync.wait_ready(workspace_id, timeout, on_progress, poll_interval=poll_interval)
        )

    @contextlib.asynccontextmanager
    async def workspace(
        self, *, timeout: float = 600.0, on_progress: Optional[Callable[[Step], None]] = None, **create: Any
    ) -> AsyncIterator[WorkspaceView]:
        """Create, wait ready, yield, delete on exit: see :meth:`wsp.Client.workspace`."""
        view = await self.create_workspace(**create)
        try:
            yield await self.wait_ready(view.id, timeout, on_progress)
        finally:
            await self.delete_workspace(view.id)

    # ---- commands ----

    async def run(self, workspace_id: str, command: Union[str, Sequence[str]], **kwargs: Any) -> CommandView:
        """See :meth:`wsp.Client.run` (same keyword arguments)."""
        return await asyncio.to_thread(lambda: self.sync.run(workspace_id, command, **kwargs))

    async def wait_command(self, workspace_id: str, command_id: str, *, timeout: Optional[float] = None) -> CommandView:
        """See :meth:`wsp.Client.wait_command`."""
        return await asyncio.to_thread(lambda: self.sync.wait_command(workspace_id, command_id, timeout=timeout))

    async def get_command(self, workspace_id: str, command_id: str, **kwargs: Any) -> CommandView:
        """See :meth:`wsp.Client.get_command`."""
        return await asyncio.to_thread(lambda: self.sync.get_command(workspace_id, command_id, **kwargs))

    async def list_commands(self, workspace_id: str) -> List[CommandView]:
        """See :meth:`wsp.Client.list_commands`."""
        return await asyncio.to_thread(self.sync.list_commands, workspace_id)

    async def cancel_command(self, workspace_id: str, command_id: str) -> CommandView:
        """See :meth:`wsp.Client.cancel_command`."""
        return await asyncio.to_thread(self.sync.cancel_command, workspace_id, command_id)

    async def write_stdin(
        self, workspace_id: str, command_id: str, data: Union[bytes, str], *, eof: bool = False
    ) -> None:
        """See :meth:`wsp.Client.write_stdin`."""
        await asyncio.to_thread(lambda: self.sync.write_stdin(workspace_id, command_id, data, eof=eof))

    async def resize_command(self, workspace_id: str, command_id: str, rows: int, cols: int) -> None:
        """See :meth:`wsp.Client.resize_command`."""
        await asyncio.to_thread(self.sync.resize_command, workspace_id, command_id, rows, cols)

    async def stream_output(self, workspace_id: str, command_id: str, **kwargs: Any) -> AsyncIterator[OutputChunk]:
        """See :meth:`wsp.Client.stream_output`: each poll runs in a worker thread."""
        chunks = self.sync.stream_output(workspace_id, command_id, **kwargs)
        while True:
            chunk = await asyncio.to_thread(next, chunks, _END)
            if chunk is _END:
                return
            yield chunk  # type: ignore[misc]

    # ---- sessions ----

    async def create_session(self, workspace_id: str, **kwargs: Any) -> SessionView:
        """See :meth:`wsp.Client.create_session`."""
        return await asyncio.to_thread(lambda: self.sync.create_session(workspace_id, **kwargs))

    async def run_in_session(self, workspace_id: str, session_id: str, command: str, **kwargs: Any) -> SessionRunView:
        """See :meth:`wsp.Client.run_in_session`."""
        return await asyncio.to_thread(lambda: self.sync.run_in_session(workspace_id, session_id, command, **kwargs))

    async def get_session(self, workspace_id: str, session_id: str, *, wait_ms: int = 0) -> SessionView:
        """See :meth:`wsp.Client.get_session`."""
        return await asyncio.to_thread(lambda: self.sync.get_session(workspace_id, session_id, wait_ms=wait_ms))

    async def list_sessions(self, workspace_id: str) -> List[SessionView]:
        """See :meth:`wsp.Client.list_sessions`."""
        return await asyncio.to_thread(self.sync.list_sessions, workspace_id)

    async def interrupt_session(self, workspace_id: str, session_id: str) -> SessionView:
        """See :meth:`wsp.Client.interrupt_session`."""
        return await asyncio.to_thread(self.sync.interrupt_session, workspace_id, session_id)

    async def delete_session(self, workspace_id: str, session_id: str) -> SessionView:
        """See :meth:`wsp.Client.delete_session`."""
        return await asyncio.to_thread(self.sync.delete_session, workspace_id, session_id)

    # ---- git, baseline, long operations ----

    async def fetch(
        self,
        workspace_id: str,
        *,
        repos: Optional[Sequence[str]] = None,
        checkout: Optional[Tuple[str, str]] = None,
        wait_ms: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> FetchResult:
        """See :meth:`wsp.Client.fetch`."""
        return await asyncio.to_thread(
            lambda: self.sync.fetch(workspace_id, repos=repos, checkout=checkout, wait_ms=wait_ms, timeout=timeout)
        )

    async def reset(
        self,
        workspace_id: str,
        *,
        refs: Optional[Mapping[str, str]] = None,
        mode: Optional[str] = None,
        wait_ms: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> ResetResult:
        """See :meth:`wsp.Client.reset`."""
        return await asyncio.to_thread(
            lambda: self.sync.reset(workspace_id, refs=refs, mode=mode, wait_ms=wait_ms, timeout=timeout)
        )

    async def get_operation(
        self, workspace_id: str, operation_id: str, *, wait_ms: Optional[int] = None
    ) -> OperationView:
        """See :meth:`wsp.Client.get_operation`."""
        return await asyncio.to_thread(lambda: self.sync.get_operation(workspace_id, operation_id, wait_ms=wait_ms))

    async def list_operations(self, workspace_id: str) -> List[OperationView]:
        """See :meth:`wsp.Client.list_operations`."""
        return await asyncio.to_thread(self.sync.list_operations, workspace_id)

    async def wait_operation(
        self, workspace_id: str, operation_id: str, *, timeout: Optional[float] = None
    ) -> OperationView:
        """See :meth:`wsp.Client.wait_operation`."""
        return await asyncio.to_thread(lambda: self.sync.wait_operation(workspace_id, operation_id, timeout=timeout))

    async def list_webhook_events(self, workspace_id: str) -> List[WebhookEvent]:
        """See :meth:`wsp.Client.list_webhook_events`."""
        return await asyncio.to_thread(self.sync.list_webhook_events, workspace_id)

    async def changes(self, workspace_id: str) -> ChangesView:
        """See :meth:`wsp.Client.changes`."""
        return await asyncio.to_thread(self.sync.changes, workspace_id)

    async def usage(self, workspace_id: str) -> UsageView:
        """See :meth:`wsp.Client.usage`."""
        return await asyncio.to_thread(self.sync.usage, workspace_id)

    # ---- fork and snapshots ----

    async def fork(self, workspace_id: str, count: int, **kwargs: Any) -> ForkView:
        """See :meth:`wsp.Client.fork`."""
        return await asyncio.to_thread(lambda: self.sync.fork(workspace_id, count, **kwargs))

    async def create_snapshot(self, workspace_id: str, **kwargs: Any) -> SnapshotView:
        """See :meth:`wsp.Client.create_snapshot`."""
        return await asyncio.to_thread(lambda: self.sync.create_snapshot(workspace_id, **kwargs))

    async def get_snapshot(self, snapshot_id: str) -> SnapshotView:
        """See :meth:`wsp.Client.get_snapshot`."""
        return await asyncio.to_thread(self.sync.get_snapshot, snapshot_id)

    async def list_snapshots(self) -> List[SnapshotView]:
        """See :meth:`wsp.Client.list_snapshots`."""
        return await asyncio.to_thread(self.sync.list_snapshots)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        """See :meth:`wsp.Client.delete_snapshot`."""
        await asyncio.to_thread(self.sync.delete_snapshot, snapshot_id)

    # ---- files ----

    async def read_file(self, workspace_id: str, path: str, **kwargs: Any) -> FileData:
        """See :meth:`wsp.Client.read_file` (``range=``, ``suffix=``)."""
        return await asyncio.to_thread(lambda: self.sync.read_file(workspace_id, path, **kwargs))

    async def write_file(
        self, workspace_id: str, path: str, data: Union[bytes, str], *, mode: Optional[str] = None
    ) -> FileStat:
        """See :meth:`wsp.Client.write_file`."""
        return await asyncio.to_thread(lambda: self.sync.write_file(workspace_id, path, data, mode=mode))

    async def stat_file(self, workspace_id: str, path: str) -> FileStat:
        """See :meth:`wsp.Client.stat_file`."""
        return await asyncio.to_thread(self.sync.stat_file, workspace_id, path)

    async def list_files(self, workspace_id: str, path: str = ".", *, recursive: bool = False) -> FileList:
        """See :meth:`wsp.Client.list_files`."""
        return await asyncio.to_thread(lambda: self.sync.list_files(workspace_id, path, recursive=recursive))

    async def delete_file(self, workspace_id: str, path: str, *, recursive: bool = False) -> None:
        """See :meth:`wsp.Client.delete_file`."""
        await asyncio.to_thread(lambda: self.sync.delete_file(workspace_id, path, recursive=recursive))

    async def read_archive(self, workspace_id: str, path: str) -> bytes:
        """See :meth:`wsp.Client.read_archive`."""
        return await asyncio.to_thread(self.sync.read_archive, workspace_id, path)

    async def write_archive(self, workspace_id: str, path: str, tar: bytes) -> ArchiveWritten:
        """See :meth:`wsp.Client.write_archive`."""
        return await asyncio.to_thread(self.sync.write_archive, workspace_id, path, tar)
