"""The context managers create, wait ready and delete the workspace — also on an error."""

from __future__ import annotations

from typing import List

import pytest

import wsp


def _gone(client: wsp.Client, workspace_id: str) -> bool:
    try:
        return client.get_workspace(workspace_id).status in ("deleted", "deleting")
    except wsp.ApiError as error:
        return error.code == "not_found"


def test_context_manager_deletes(client: wsp.Client) -> None:
    """Inside: ready; after the block: deleted."""
    steps: List[wsp.Step] = []
    with client.workspace(timeout=300, on_progress=steps.append, labels={"cm": "1"}) as ws:
        assert ws.status == "ready"
        assert client.run(ws.id, "true").exit_code == 0
        workspace_id = ws.id
    assert steps
    assert _gone(client, workspace_id)


def test_context_manager_deletes_on_error(client: wsp.Client) -> None:
    """An exception in the block still deletes the workspace, and propagates."""
    seen = []
    with pytest.raises(RuntimeError, match="boom"), client.workspace(timeout=300) as ws:
        seen.append(ws.id)
        raise RuntimeError("boom")
    assert _gone(client, seen[0])
