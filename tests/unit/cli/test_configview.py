"""`inv config`'s view: each setting's value and source, secrets masked, unknown keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecr_release.cli.configview import ConfigView, view
from ecr_release.errors import SettingsError
from ecr_release.model.masking import MASK

SECRET = "wJalrXUtnFEMI-a-secret-that-must-not-show"


def _view(root: Path, flags: dict[str, str | None] | None = None, **environ: str) -> ConfigView:
    return view(flags or {}, environ=environ, env_file=".env", env_file_required=False, root=root)


def _sources(found: ConfigView) -> dict[str, tuple[str | None, str | None]]:
    return {line.key: (line.value, line.source) for line in found.lines}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / ".env").write_text(
        f"ECR_REPOSITORY=from-dotenv\nIMAGE_NAME=img\nAWS_SECRET_ACCESS_KEY={SECRET}\n"
        "ECR_REPOSITRY=typo\nMY_API_TOKEN=t0ken\n"
    )
    return tmp_path


def test_each_source_is_named(project: Path) -> None:
    found = _view(
        project, {"ECR_REPOSITORY": "from-flag"}, AWS_REGION="eu-west-1", IMAGE_NAME="env-img"
    )
    sources = _sources(found)
    assert sources["ECR_REPOSITORY"] == ("from-flag", "flag")
    assert sources["AWS_REGION"] == ("eu-west-1", "environment")
    assert sources["IMAGE_NAME"] == ("env-img", "environment")
    assert sources["SMOKE_TIMEOUT"] == ("60", "default")
    assert sources["AWS_ACCOUNT_ID"] == (None, None)
    assert found.problems is None


def test_dotenv_and_the_aws_config_are_sources(project: Path) -> None:
    sources = _sources(_view(project, AWS_DEFAULT_REGION="ap-south-1"))
    assert sources["ECR_REPOSITORY"] == ("from-dotenv", ".env")
    assert sources["AWS_REGION"] == ("ap-south-1", "AWS config")


def test_image_name_defaults_to_the_repository(tmp_path: Path) -> None:
    sources = _sources(_view(tmp_path, AWS_REGION="eu-west-1"))
    assert sources["IMAGE_NAME"] == ("widget-server", "default: ECR_REPOSITORY")


def test_secret_looking_values_are_masked(project: Path) -> None:
    found = _view(project, AWS_REGION="eu-west-1", AWS_SESSION_TOKEN="session-t0ken")
    sources = _sources(found)
    assert sources["AWS_SECRET_ACCESS_KEY"] == (MASK, ".env")
    assert sources["AWS_SESSION_TOKEN"] == (MASK, "environment")
    for text in (found.as_text(), json.dumps(found.as_json())):
        assert SECRET not in text and "session-t0ken" not in text and "t0ken" not in text


def test_unknown_dotenv_keys_are_listed_without_their_values(project: Path) -> None:
    found = _view(project, AWS_REGION="eu-west-1")
    assert found.unknown == ["ECR_REPOSITRY", "MY_API_TOKEN"]
    assert "unknown keys in .env: ECR_REPOSITRY, MY_API_TOKEN" in found.as_text()
    assert "typo" not in found.as_text()


def test_invalid_settings_are_shown_and_named(project: Path) -> None:
    found = _view(project, AWS_REGION="sa-east-1#prod")
    assert _sources(found)["AWS_REGION"] == ("sa-east-1#prod", "environment")
    assert found.problems is not None and "AWS_REGION 'sa-east-1#prod'" in found.problems
    assert found.as_text().splitlines()[-1].startswith("settings problems: AWS_REGION")
    assert found.as_json()["valid"] is False


def test_the_json_document(project: Path) -> None:
    document = _view(project, AWS_REGION="eu-west-1").as_json()
    assert document["settings"]["AWS_REGION"] == {"value": "eu-west-1", "source": "environment"}
    assert document["unknown_env_keys"] == ["ECR_REPOSITRY", "MY_API_TOKEN"]
    assert document["valid"] is True and document["env_file"] == ".env"


def test_a_named_env_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"--env-file 'prod\.env' does not exist"):
        view({}, environ={}, env_file="prod.env", env_file_required=True, root=tmp_path)


def test_ids_and_url_passwords_are_not_shown_whole(project: Path) -> None:
    sources = _sources(
        _view(
            project,
            AWS_REGION="eu-west-1",
            AWS_ACCESS_KEY_ID="AKIDEXAMPLEWXYZ",
            AWS_ENDPOINT_URL="https://ci:s3cr3t@proxy.example:8443/ecr",
            SECRET_SCAN_ALLOW="fixtures/*.pem",
        )
    )
    assert sources["AWS_ACCESS_KEY_ID"] == ("***WXYZ", "environment")
    assert sources["AWS_ENDPOINT_URL"] == ("https://***@proxy.example:8443/ecr", "environment")
    assert sources["SECRET_SCAN_ALLOW"] == ("fixtures/*.pem", "environment")  # not a secret
