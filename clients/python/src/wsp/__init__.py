"""Python client for the Workspace Provider (wsp) HTTP API.

>>> import wsp
>>> client = wsp.Client("http://127.0.0.1:7070", token)
>>> with client.workspace(refs={"app": "main"}, timeout=600) as ws:
...     result = client.run(ws.id, "git -C app log --oneline")
...     print(result.exit_code, result.stdout.text)

``wsp.Client`` is synchronous (urllib, standard library only); ``wsp.AsyncClient`` is the asyncio
client over the same transport in worker threads. Errors: ``wsp.ApiError`` (``status``, ``code``,
``message``, ``details``), ``wsp.TimeoutError`` for waits.
"""

from .aio import AsyncClient
from .client import Client, status_for_code
from .errors import ApiError, TimeoutError, WorkspaceFailedError
from .models import (
    ArchiveWritten,
    CacheInfo,
    ChangesView,
    CommandView,
    CpuUsage,
    DiskUsage,
    Failure,
    FetchedRepo,
    FetchResult,
    FileData,
    FileEntry,
    FileList,
    FileStat,
    ForkView,
    MemoryUsage,
    OperationView,
    Output,
    OutputChunk,
    PidsUsage,
    RepoChanges,
    RepoState,
    ResetResult,
    SessionRunView,
    SessionView,
    SnapshotView,
    Step,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    UsageView,
    WorkspaceView,
)
from .routes import ROUTES
from .webhooks import verify_webhook

__version__ = "0.1.0"

__all__ = [
    "ROUTES",
    "ApiError",
    "ArchiveWritten",
    "AsyncClient",
    "CacheInfo",
    "ChangesView",
    "Client",
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
    "TimeoutError",
    "UsageView",
    "WorkspaceFailedError",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEvent",
    "WorkspaceView",
    "status_for_code",
    "verify_webhook",
]
