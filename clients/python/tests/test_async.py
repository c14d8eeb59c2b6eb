"""The asyncio client: one whole flow."""

from __future__ import annotations

import asyncio
from typing import List

import wsp


def test_async_flow(aclient: wsp.AsyncClient, client: wsp.Client) -> None:
    """async with workspace → run → files → session → stream → changes → reset; deleted after."""

    async def flow() -> str:
        steps: List[wsp.Step] = []
        async with aclient.workspace(timeout=300, on_progress=steps.append) as ws:
            assert steps and ws.status == "ready"
            both = await asyncio.gather(
                aclient.run(ws.id, "echo one"),
                aclient.run(ws.id, ["sh", "-c", "sleep 0.2; echo two"], wait_ms=0),
            )
            assert [r.stdout.text for r in both] == ["one\n", "two\n"]
            await aclient.write_file(ws.id, "app/a.bin", b"\x00a\x00")
            assert (await aclient.read_file(ws.id, "app/a.bin", range=(1, 2))).data == b"a\x00"
            session = await aclient.create_session(ws.id)
            await aclient.run_in_session(ws.id, session.id, "cd app")
            assert (await aclient.run_in_session(ws.id, session.id, "basename $PWD")).stdout.text == "app\n"
            cmd = await aclient.run(ws.id, "echo x; sleep 0.3; echo y", wait_ms=0, wait=False)
            got = b"".join([c.data async for c in aclient.stream_output(ws.id, cmd.id, poll_interval=0.1)])
            assert got == b"x\ny\n"
            assert (await aclient.changes(ws.id)).repos[0].status
            assert (await aclient.usage(ws.id)).workspace_id == ws.id
            assert (await aclient.reset(ws.id)).matches
            return ws.id

    workspace_id = asyncio.run(flow())
    try:
        status = client.get_workspace(workspace_id).status
    except wsp.ApiError as error:
        status = error.code
    assert status in ("deleted", "deleting", "not_found")
