"""Errors carry the API's status, code, message and details."""

from __future__ import annotations

import socket

import pytest
from conftest import Provider

import wsp


def test_not_found(client: wsp.Client) -> None:
    """An unknown workspace is 404 not_found."""
    with pytest.raises(wsp.ApiError) as error:
        client.get_workspace("ws-" + "0" * 24)
    assert (error.value.status, error.value.code) == (404, "not_found")
    assert "not found" in error.value.message


def test_bad_request_names_the_field(client: wsp.Client) -> None:
    """Bad input is 400 bad_request; details name the bad fields."""
    with pytest.raises(wsp.ApiError) as error:
        client.create_workspace(ttl_seconds=5)
    assert (error.value.status, error.value.code) == (400, "bad_request")
    assert any(d.get("path") == "body.ttlSeconds" for d in error.value.details)
    with pytest.raises(wsp.ApiError) as bad_id:
        client.get_workspace("not-an-id")
    assert bad_id.value.code == "bad_request"


def test_range_not_satisfiable(client: wsp.Client, ready_ws: wsp.WorkspaceView) -> None:
    """A range past the end of the file is 416."""
    client.write_file(ready_ws.id, "short.txt", b"abc")
    with pytest.raises(wsp.ApiError) as error:
        client.read_file(ready_ws.id, "short.txt", range=(10, 20))
    assert (error.value.status, error.value.code) == (416, "range_not_satisfiable")


def test_conflict_on_non_empty_dir(client: wsp.Client, ready_ws: wsp.WorkspaceView) -> None:
    """Deleting a non-empty directory without recursive is 409 conflict."""
    client.write_file(ready_ws.id, "dir/file.txt", b"x")
    with pytest.raises(wsp.ApiError) as error:
        client.delete_file(ready_ws.id, "dir")
    assert (error.value.status, error.value.code) == (409, "conflict")


def test_unauthorized(provider: Provider) -> None:
    """A wrong token is 401 unauthorized; /healthz needs none."""
    bad = wsp.Client(provider.url, "wrong-token-0123456789")
    with pytest.raises(wsp.ApiError) as error:
        bad.list_workspaces()
    assert (error.value.status, error.value.code) == (401, "unauthorized")
    assert bad.health() == {"ok": True}


def test_unreachable() -> None:
    """No server: status 0, code unreachable."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(wsp.ApiError) as error:
        wsp.Client(f"http://127.0.0.1:{port}", "t").health()
    assert (error.value.status, error.value.code) == (0, "unreachable")


def test_wait_timeout(client: wsp.Client, ready_ws: wsp.WorkspaceView) -> None:
    """A wait that runs out raises wsp.TimeoutError (also a built-in TimeoutError)."""
    cmd = client.run(ready_ws.id, "sleep 30", wait_ms=0, wait=False)
    with pytest.raises(wsp.TimeoutError) as error:
        client.wait_command(ready_ws.id, cmd.id, timeout=0.5)
    assert isinstance(error.value, TimeoutError)
    client.cancel_command(ready_ws.id, cmd.id)
