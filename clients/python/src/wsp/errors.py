"""Exceptions raised by the wsp clients."""

from __future__ import annotations

import builtins
import json
from typing import Any, Optional

__all__ = ["ApiError", "TimeoutError", "WorkspaceFailedError"]


class ApiError(Exception):
    """An error answer of the API, ``{"error": {"code", "message", "details"}}``.

    ``status`` is the HTTP status (0 when the server could not be reached, code ``unreachable``);
    ``code`` is the API's error code (``not_found``, ``bad_request``, ``conflict``, ...);
    ``details`` is whatever the API put there (for ``bad_request``: the bad fields), or ``None``.
    """

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    @classmethod
    def from_response(cls, status: int, body: bytes) -> ApiError:
        """The error an answer that is not ok carries (its JSON error body, when it has one)."""
        try:
            parsed = json.loads(body.decode("utf-8")) if body else None
        except (ValueError, UnicodeDecodeError):
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            err = parsed["error"]
            return cls(
                status,
                str(err.get("code", "http_error")),
                str(err.get("message", "")),
                err.get("details"),
            )
        text = body[:200].decode("utf-8", "replace") if body else ""
        return cls(status, "http_error", text or f"HTTP {status}")

    def __repr__(self) -> str:
        return f"ApiError(status={self.status!r}, code={self.code!r}, message={self.message!r})"


class WorkspaceFailedError(ApiError):
    """``wait_ready`` saw the workspace end ``failed`` (or ``deleted``) instead of ``ready``.

    Status 502 and code ``step_failed`` like a failed step of the API; ``details`` is the
    workspace's ``failure`` (``{"step", "message"}``) and ``workspace`` the last view.
    """

    def __init__(self, workspace: Any) -> None:
        failure = getattr(workspace, "failure", None)
        step = getattr(failure, "step", None) or workspace.status
        message = getattr(failure, "message", None) or f"workspace is {workspace.status}"
        super().__init__(
            502,
            "step_failed",
            f"workspace {workspace.id} {workspace.status} ({step}): {message}",
            {"step": step, "message": message},
        )
        self.workspace = workspace


class TimeoutError(builtins.TimeoutError):
    """A wait (``wait_ready``, a command, an operation, a snapshot) did not end in time.

    The work itself goes on on the provider. A subclass of the built-in ``TimeoutError``.
    """

    def __init__(self, message: str, last: Optional[Any] = None) -> None:
        super().__init__(message)
        self.last = last
