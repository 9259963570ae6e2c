"""Shared fixtures: no test can reach a real AWS account; the package's wheel."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.wheel import build_wheel


@pytest.fixture(autouse=True)
def _fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fake credentials, and AWS config files that do not exist."""
    missing = tmp_path_factory.mktemp("no-aws") / "absent"
    for key in list(os.environ):
        if key.startswith("AWS_") or key.startswith("ECR_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(Path(missing) / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(Path(missing) / "credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def make_settings() -> Callable[..., Any]:
    """Valid settings for library tests; keyword arguments override single fields."""
    from ecr_release.model.settings import Settings

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "region": "eu-west-1",
            "profile": None,
            "account_id": None,
            "repository": "widget-server",
            "image_name": "widget-server",
            "dockerfile": Path("Dockerfile"),
            "build_context": Path("."),
            "base_image": None,
            "scan_on_push": True,
            "tag_mutability": "IMMUTABLE",
            "encryption": "AES256",
            "kms_key": None,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's wheel, as ``uv build --wheel`` makes it: built once per session."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))
