"""Fixtures: a REAL provider (local backend) started once per test session, and clients for it.

The provider is ``node --import tsx functions/server/main.ts`` run from the repository root with a
temporary data dir, port 0 (it prints ``wsp: serving on URL``), a generated token
(``WSP_AUTH_TOKEN``), one git repository ``app`` and a setup script. To test against a provider
that is already running instead, set ``WSP_TEST_URL`` and ``WSP_TEST_TOKEN`` (the tests that need
the ``app`` repository's source then skip).
"""

from __future__ import annotations

import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest

import wsp

REPO_ROOT = Path(os.environ.get("WSP_REPO_ROOT", Path(__file__).resolve().parents[3]))
START_TIMEOUT_S = 120.0


@dataclass
class Provider:
    """A running provider: its URL and token, and the source repository of ``app`` (when ours)."""

    url: str
    token: str
    source_repo: Optional[Path]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture(scope="session")
def provider() -> Iterator[Provider]:
    """The provider under test, started as a subprocess and stopped after the session."""
    if os.environ.get("WSP_TEST_URL"):
        yield Provider(os.environ["WSP_TEST_URL"], os.environ.get("WSP_TEST_TOKEN", ""), None)
        return
    tmp = Path(tempfile.mkdtemp(prefix="wsp-pytest-"))
    source = tmp / "app-src"
    subprocess.run(["git", "init", "-q", "-b", "main", str(source)], check=True)
    (source / "README.md").write_text("hello from app\n")
    _git(source, "add", "README.md")
    _git(source, "commit", "-q", "-m", "first")
    token = secrets.token_urlsafe(24)
    # Webhook tests run their receiver on 127.0.0.1 over http: allowed for workspace hooks here only.
    config_path = tmp / "config.json"
    config_path.write_text('{"webhookDelivery": {"allowHttp": true, "allowPrivateAddresses": true, "retryBaseMs": 100}}')
    log_path = tmp / "provider.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed after the process
    env = {**os.environ, "WSP_AUTH_TOKEN": token}
    for name in ("WSP_CONFIG", "WSP_MODE", "WSP_PORT", "WSP_HOST", "WSP_DATA_DIR"):
        env.pop(name, None)
    argv = [
        "node", "--import", "tsx", "functions/server/main.ts",
        "--config", str(config_path),
        "--data-dir", str(tmp / "data"),
        "--host", "127.0.0.1",
        "--port", "0",
        "--repo", f"app=file://{source}",
        "--setup", 'echo "setup ran"',
    ]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=log)
    lines: queue.Queue[bytes] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(b"")

    threading.Thread(target=pump, daemon=True).start()
    url = None
    try:
        while url is None:
            try:
                line = lines.get(timeout=START_TIMEOUT_S)
            except queue.Empty:
                line = b""
            if not line:
                log.flush()
                raise RuntimeError(f"the provider did not start:\n{log_path.read_text(errors='replace')[-4000:]}")
            match = re.search(rb"serving on (\S+)", line)
            if match:
                url = match.group(1).decode()
        yield Provider(url, token, source)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def client(provider: Provider) -> wsp.Client:
    """A sync client with the provider's token."""
    return wsp.Client(provider.url, provider.token, poll_interval=0.2)


@pytest.fixture(scope="session")
def aclient(provider: Provider) -> wsp.AsyncClient:
    """An asyncio client with the provider's token."""
    return wsp.AsyncClient(provider.url, provider.token, poll_interval=0.2)


@pytest.fixture(scope="module")
def ready_ws(client: wsp.Client) -> Iterator[wsp.WorkspaceView]:
    """One ready workspace shared by a module's tests (deleted after them)."""
    with client.workspace(timeout=300, labels={"test": "pytest"}) as ws:
        yield ws
