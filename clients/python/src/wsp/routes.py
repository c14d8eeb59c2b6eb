"""The routes this SDK calls: operationId -> (method, path template), as in /openapi.json.

The clients build every request from this table (``Client._call``), and tests/test_drift.py
asserts each entry against the running provider's /openapi.json, so they cannot drift apart.
"""

from __future__ import annotations

from typing import Dict, Tuple

__all__ = ["ROUTES"]

ROUTES: Dict[str, Tuple[str, str]] = {
    # workspaces
    "createWorkspace": ("POST", "/workspaces"),
    "listWorkspaces": ("GET", "/workspaces"),
    "getWorkspace": ("GET", "/workspaces/{id}"),
    "deleteWorkspace": ("DELETE", "/workspaces/{id}"),
    # commands
    "runCommand": ("POST", "/workspaces/{id}/commands"),
    "listCommands": ("GET", "/workspaces/{id}/commands"),
    "getCommand": ("GET", "/workspaces/{id}/commands/{cid}"),
    "cancelCommand": ("DELETE", "/workspaces/{id}/commands/{cid}"),
    "writeStdin": ("POST", "/workspaces/{id}/commands/{cid}/stdin"),
    "resizeCommand": ("POST", "/workspaces/{id}/commands/{cid}/resize"),
    # sessions
    "createSession": ("POST", "/workspaces/{id}/sessions"),
    "listSessions": ("GET", "/workspaces/{id}/sessions"),
    "getSession": ("GET", "/workspaces/{id}/sessions/{sid}"),
    "deleteSession": ("DELETE", "/workspaces/{id}/sessions/{sid}"),
    "runInSession": ("POST", "/workspaces/{id}/sessions/{sid}/run"),
    "interruptSession": ("POST", "/workspaces/{id}/sessions/{sid}/interrupt"),
    # git, baseline, long operations
    "gitFetch": ("POST", "/workspaces/{id}/git/fetch"),
    "resetWorkspace": ("POST", "/workspaces/{id}/reset"),
    "listOperations": ("GET", "/workspaces/{id}/operations"),
    "getOperation": ("GET", "/workspaces/{id}/operations/{oid}"),
    "getChanges": ("GET", "/workspaces/{id}/changes"),
    # lifecycle webhook events: the same route streams SSE progress unless JSON is asked for
    "watchWorkspace": ("GET", "/workspaces/{id}/events"),
    "getUsage": ("GET", "/workspaces/{id}/usage"),
    # fork and snapshots
    "forkWorkspace": ("POST", "/workspaces/{id}/fork"),
    "createSnapshot": ("POST", "/workspaces/{id}/snapshots"),
    "listSnapshots": ("GET", "/snapshots"),
    "getSnapshot": ("GET", "/snapshots/{sid}"),
    "deleteSnapshot": ("DELETE", "/snapshots/{sid}"),
    # files and archives
    "readFile": ("GET", "/workspaces/{id}/files"),
    "writeFile": ("PUT", "/workspaces/{id}/files"),
    "deleteFile": ("DELETE", "/workspaces/{id}/files"),
    "statFile": ("GET", "/workspaces/{id}/files/stat"),
    "listFiles": ("GET", "/workspaces/{id}/files/list"),
    "readArchive": ("GET", "/workspaces/{id}/archive"),
    "writeArchive": ("PUT", "/workspaces/{id}/archive"),
    # the provider
    "openApi": ("GET", "/openapi.json"),
    "health": ("GET", "/healthz"),
}
