"""Lifecycle webhooks through the SDK: a receiver on 127.0.0.1 (standard library), deliveries checked
with ``wsp.verify_webhook``, retried while the receiver answers 503, attempts read back."""

from __future__ import annotations

import http.server
import queue
import threading
import time
from typing import Any, Dict, Iterator, List, Tuple

import pytest

import wsp

SECRET = "whsec_" + "c2RrLXRlc3Qtd2ViaG9vay1zZWNyZXQ="


class _Receiver(http.server.BaseHTTPRequestHandler):
    got: "queue.Queue[Tuple[Dict[str, str], bytes]]"
    answers: List[int]

    def do_POST(self) -> None:  # noqa: N802 - the http.server spelling
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.got.put(({k: v for k, v in self.headers.items()}, body))
        status = self.answers.pop(0) if self.answers else 200
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def receiver() -> Iterator[Tuple[str, "queue.Queue[Tuple[Dict[str, str], bytes]]", List[int]]]:
    got: "queue.Queue[Tuple[Dict[str, str], bytes]]" = queue.Queue()
    answers: List[int] = [503]  # the first attempt fails: the provider retries
    handler = type("Handler", (_Receiver,), {"got": got, "answers": answers})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", got, answers
    finally:
        server.shutdown()
        server.server_close()


def test_ready_event_is_signed_retried_and_listed(client: wsp.Client, receiver: Any) -> None:
    url, got, _ = receiver
    ws = client.create_workspace(webhook={"url": url, "secret": SECRET, "events": ["workspace.ready"]})
    assert ws.raw["webhook"] == {"url": url, "events": ["workspace.ready"]}
    try:
        first_headers, first_body = got.get(timeout=120)
        second_headers, second_body = got.get(timeout=60)
        events = [wsp.verify_webhook(SECRET, h, b) for h, b in ((first_headers, first_body), (second_headers, second_body))]
        assert events[0] == events[1] and events[0]["type"] == "workspace.ready"
        assert first_headers["webhook-id"] == second_headers["webhook-id"] == events[0]["id"]
        assert events[0]["data"]["workspace"]["id"] == ws.id
        # A forged or altered delivery is refused.
        with pytest.raises(ValueError):
            wsp.verify_webhook("whsec_" + "b3RoZXItc2VjcmV0", first_headers, first_body)
        with pytest.raises(ValueError):
            wsp.verify_webhook(SECRET, first_headers, first_body.replace(b"ready", b"reset"))
        with pytest.raises(ValueError):
            wsp.verify_webhook(SECRET, first_headers, first_body, now=time.time() + 3600)

        deadline = time.monotonic() + 60
        while True:
            listed = client.list_webhook_events(ws.id)
            own = [d for d in listed[0].deliveries if d.hook == "workspace"]
            if own and own[0].state == "delivered" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert listed[0].id == events[0]["id"] and listed[0].type == "workspace.ready"
        assert [a.status for a in own[0].attempts] == [503, 200]
        assert SECRET not in str(client.get_workspace(ws.id).raw)
    finally:
        client.delete_workspace(ws.id)


def test_a_bad_hook_is_an_api_error(client: wsp.Client) -> None:
    with pytest.raises(wsp.ApiError) as caught:
        client.create_workspace(webhook={"url": "ftp://127.0.0.1/hook", "secret": SECRET})
    assert caught.value.status == 400 and caught.value.code == "bad_request"
