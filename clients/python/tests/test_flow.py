"""The sync client against a real provider: the whole loop, then each group of routes."""

from __future__ import annotations

import io
import tarfile
from typing import List

import pytest

import wsp

BINARY = b"\x00head\x00\x01\x02\xff\xfe middle \x00tail\n\x00"


def test_create_wait_run_files_session_changes_reset_delete(client: wsp.Client) -> None:
    """create → wait_ready (progress) → run → files → session keeps cwd → changes → reset → delete."""
    created = client.create_workspace(labels={"flow": "sync"})
    assert created.status == "provisioning"
    assert created.id.startswith("ws-")
    try:
        steps: List[wsp.Step] = []
        ready = client.wait_ready(created.id, timeout=300, on_progress=steps.append)
        assert ready.status == "ready"
        assert steps, "on_progress was never called"
        assert [s.step for s in steps][-1] == "ready"
        assert all(isinstance(s, wsp.Step) and s.message for s in steps)
        assert ready.labels == {"flow": "sync"}
        assert [r.name for r in ready.repos] == ["app"] and ready.repos[0].commit
        assert ready.baseline_fingerprint
        assert ready.raw["id"] == ready.id
        assert created.id in [w.id for w in client.list_workspaces()]

        # a command: exit code, stdout, stderr
        result = client.run(created.id, "echo hello; echo oops >&2; exit 3")
        assert isinstance(result, wsp.CommandView)
        assert result.state == "exited"
        assert result.exit_code == 3
        assert result.stdout.text == "hello\n"
        assert result.stderr.text == "oops\n"
        argv = client.run(created.id, ["cat", "app/README.md"])
        assert (argv.exit_code, argv.stdout.text) == (0, "hello from app\n")

        # files: binary with NULs, ranges, stat, list, delete
        stat = client.write_file(created.id, "app/data/blob.bin", BINARY)
        assert (stat.type, stat.size, stat.mode) == ("file", len(BINARY), "0644")
        assert client.read_file(created.id, "app/data/blob.bin").data == BINARY
        part = client.read_file(created.id, "app/data/blob.bin", range=(1, 7))
        assert part.data == BINARY[1:8]
        assert (part.size, part.range) == (len(BINARY), (1, 7))
        assert client.read_file(created.id, "app/data/blob.bin", range=(5, None)).data == BINARY[5:]
        assert client.read_file(created.id, "app/data/blob.bin", suffix=6).data == BINARY[-6:]
        listing = client.list_files(created.id, "app", recursive=True)
        assert f"{ready.plan['workdir']}/app/data/blob.bin" in [e.path for e in listing.entries]
        assert client.stat_file(created.id, "app/data").type == "dir"
        client.write_file(created.id, "app/notes.txt", "notes\n", mode="0600")
        assert client.stat_file(created.id, "app/notes.txt").mode == "0600"
        client.delete_file(created.id, "app/data", recursive=True)
        with pytest.raises(wsp.ApiError) as gone:
            client.stat_file(created.id, "app/data/blob.bin")
        assert gone.value.code == "not_found"

        # a session keeps its cwd and variables between runs
        session = client.create_session(created.id)
        assert session.state == "idle"
        first = client.run_in_session(created.id, session.id, "cd app && GREETING=hi")
        assert (first.state, first.exit_code) == ("exited", 0)
        second = client.run_in_session(created.id, session.id, 'pwd; echo "$GREETING"')
        assert second.stdout.text.splitlines() == [f"{ready.plan['workdir']}/app", "hi"]
        assert session.id in [s.id for s in client.list_sessions(created.id)]
        assert client.delete_session(created.id, session.id).state == "closed"

        # changes against the baseline
        changes = client.changes(created.id)
        (app,) = changes.repos
        assert app.name == "app"
        assert "notes.txt" in [s["path"] for s in app.status]

        # reset back to the baseline
        reset = client.reset(created.id)
        assert isinstance(reset, wsp.ResetResult)
        assert reset.matches is True
        assert reset.fingerprint == ready.baseline_fingerprint
        assert client.changes(created.id).repos[0].status == []
        with pytest.raises(wsp.ApiError) as after:
            client.read_file(created.id, "app/notes.txt")
        assert after.value.status == 404 and after.value.code == "not_found"
    finally:
        deleted = client.delete_workspace(created.id)
    assert deleted.status in ("deleted", "deleting")


def test_run_long_polls_past_202(client: wsp.Client, ready_ws: wsp.WorkspaceView) -> None:
    """waitMs=0 makes the server answer 202; run() long-polls until the end like the TS client."""
    result = client.run(ready_ws.id, "sleep 1; echo done", wait_ms=0)
    assert (result.state, result.exit_code, result.stdout.text) == ("exited", 0, "done\n")
    first = client.run(ready_ws.id, "sleep 1", wait_ms=0, wait=False)
    assert first.state == "running"
    assert client.wait_command(ready_ws.id, first.id).state == "exited"
    assert first.id in [c.id for c in client.list_commands(ready_ws.id)]


def test_stream_output_polls_offsets(client: wsp.Client, ready_ws: wsp.WorkspaceView) -> None:
    """stream_output yields stdout and stderr as they come, until the command ended."""
    cmd = client.run(
        ready_ws.id, "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.3; done", wait_ms=0, wait=False
    )
    chunks = list(client.stream_output(ready_ws.id, cmd.id, poll_interval=0.1))
    out = b"".join(c.data for c in chunks if c.stream == "stdout")
    err = b"".join(c.data for c in chunks if c.stream == "stderr")
    assert out == b"out1\nout2\nout3\n"
    assert err == b"err1\nerr2\nerr3\n"
    assert len(chunks) >= 2


def test_stdin_and_cancel(client: wsp.Client, ready_ws: wsp.WorkspaceView) -> None:
    """write_stdin feeds an open stdin (binary too); cancel kills a running command."""
    cat = client.run(ready_ws.id, ["cat"], open_stdin=True, wait_ms=0, wait=False)
    client.write_stdin(ready_ws.id, cat.id, b"abc\x00")
    client.write_stdin(ready_ws.id, cat.id, "def", eof=True)
    done = client.wait_command(ready_ws.id, cat.id, timeout=60)
    assert (done.exit_code, done.stdout.content) == (0, b"abc\x00def")

    given = client.run(ready_ws.id, ["wc", "-c"], stdin=b"\x00\x01\x02")
    assert given.stdout.text.strip() == "3"

    sleeper = client.run(ready_ws.id, "sleep 60", wait_ms=0, wait=False)
    cancelled = client.cancel_command(ready_ws.id, sleeper.id)
    final = client.wait_command(ready_ws.id, cancelled.id, timeout=30)
    assert final.state == "killed"


def test_session_interrupt(client: wsp.Client, ready_ws: wsp.WorkspaceView) -> None:
    """A run that would take long is interrupted (Ctrl-C); the shell lives on."""
    session = client.create_session(ready_ws.id, cwd="app")
    run = client.run_in_session(ready_ws.id, session.id, "sleep 30", wait_ms=0, wait=False)
    assert run.state == "running"
    client.interrupt_session(ready_ws.id, session.id)
    after = client.get_session(ready_ws.id, session.id, wait_ms=5000)
    assert after.last_run is not None and after.last_run.state == "interrupted"
    assert client.run_in_session(ready_ws.id, session.id, "basename $PWD").stdout.text == "app\n"
    client.delete_session(ready_ws.id, session.id)


def test_archive_round_trip(client: wsp.Client, ready_ws: wsp.WorkspaceView) -> None:
    """read_archive gives a tar of a directory; write_archive extracts one."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("sub/hello.txt")
        info.size = len(BINARY)
        tar.addfile(info, io.BytesIO(BINARY))
    written = client.write_archive(ready_ws.id, "/tmp/arch", buf.getvalue())
    assert written.entries >= 1
    assert client.read_file(ready_ws.id, "/tmp/arch/sub/hello.txt").data == BINARY
    with tarfile.open(fileobj=io.BytesIO(client.read_archive(ready_ws.id, "/tmp/arch")), mode="r") as tar:
        names = [m.name.lstrip("./") for m in tar.getmembers()]
    assert "sub/hello.txt" in names


def test_usage(client: wsp.Client, ready_ws: wsp.WorkspaceView) -> None:
    """usage: typed figures from the backend; 4 MB written and a sleeper left running show in them."""
    before = client.usage(ready_ws.id)
    assert isinstance(before, wsp.UsageView) and before.workspace_id == ready_ws.id and before.source
    assert isinstance(before.cpu, wsp.CpuUsage) and isinstance(before.memory, wsp.MemoryUsage)
    assert isinstance(before.disk, wsp.DiskUsage) and isinstance(before.pids, wsp.PidsUsage)
    assert before.disk.used_bytes is not None and before.pids.current is not None
    wrote = client.run(ready_ws.id, "head -c 4000000 /dev/zero > big.bin && (setsid sleep 2718 >/dev/null 2>&1 &)")
    assert wrote.exit_code == 0
    after = client.usage(ready_ws.id)
    assert after.disk.used_bytes is not None and after.disk.used_bytes - before.disk.used_bytes >= 4_000_000
    assert after.pids.current is not None and after.pids.current > before.pids.current
    assert after.raw["workspaceId"] == ready_ws.id
    client.run(ready_ws.id, "rm big.bin; pkill -x -f 'sleep 2718'")
    with pytest.raises(wsp.ApiError) as missing:
        client.usage("ws-000000000000000000000000")
    assert (missing.value.status, missing.value.code) == (404, "not_found")


def test_fetch_snapshot_fork(client: wsp.Client, ready_ws: wsp.WorkspaceView) -> None:
    """fetch (a long operation), snapshots (create/get/list/delete) and fork."""
    fetched = client.fetch(ready_ws.id, checkout=("app", "main"))
    assert [r.name for r in fetched.repos] == ["app"]
    assert fetched.repos[0].heads
    ops = client.list_operations(ready_ws.id)
    assert ops and ops[-1].kind == "fetch" and ops[-1].status == "succeeded"
    assert client.get_operation(ready_ws.id, ops[-1].id).result is not None

    client.write_file(ready_ws.id, "app/forked.txt", "from the source\n")
    snap = client.create_snapshot(ready_ws.id, name="pytest", timeout=120)
    assert snap.status == "ready" and snap.name == "pytest"
    assert client.get_snapshot(snap.id).id == snap.id
    assert snap.id in [s.id for s in client.list_snapshots()]
    client.delete_snapshot(snap.id)
    with pytest.raises(wsp.ApiError) as gone:
        client.get_snapshot(snap.id)
    assert gone.value.code == "not_found"

    fork = client.fork(ready_ws.id, 1)
    (child,) = fork.workspaces
    try:
        ready = client.wait_ready(child.id, timeout=300)
        assert ready.forked_from == ready_ws.id or ready.raw.get("forkedFrom") is not None
        assert client.read_file(child.id, "app/forked.txt").data == b"from the source\n"
    finally:
        client.delete_workspace(child.id)
