"""Shared fixtures: no test can reach a real AWS account."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fake credentials, and AWS config files that do not exist."""
    missing = tmp_path_factory.mktemp("no-aws") / "absent"
    for key in list(__import__("os").environ):
        if key.startswith("AWS_") or key.startswith("ECR_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(Path(missing) / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(Path(missing) / "credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
