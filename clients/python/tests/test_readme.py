"""README's Python quickstart, run as written against the test provider."""

from __future__ import annotations

import re

import pytest
from conftest import REPO_ROOT, Provider


def test_readme_python_quickstart(
    provider: Provider, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block between the python-quickstart markers runs and prints what its comments say."""
    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(
        r"<!-- python-quickstart:begin -->\s*```python\n(.*?)```\s*<!-- python-quickstart:end -->", readme, re.S
    )
    assert match, "README.md has no python-quickstart block"
    if provider.source_repo is None:
        pytest.skip("needs the fixture's own provider (its app repository)")
    monkeypatch.setenv("WSP_URL", provider.url)
    monkeypatch.setenv("WSP_AUTH_TOKEN", provider.token)
    monkeypatch.chdir(REPO_ROOT)
    exec(compile(match.group(1), "README.md:python-quickstart", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "ready: ready" in out
    assert "0 first\n" in out
    assert re.search(r"^hi from /\S*/app$", out, re.M)
    assert "['notes.txt']" in out
    assert "True" in out
    assert "404 not_found" in out
