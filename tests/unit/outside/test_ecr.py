"""The ECR module against moto (mock_aws) and botocore's Stubber."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from ecr_release.errors import AwsError, SettingsError
from ecr_release.model.settings import Settings
from ecr_release.outside.ecr import (
    Ecr,
    Limits,
    RepositoryConfig,
    SandboxApi,
    _isolated_environ,
    _overlay_environ,
    aws_identity,
    connect,
    lifecycle_policy,
    registry_host,
)
from ecr_release.outside.process import SubprocessRunner

REGION = "eu-west-1"
CONFIG = RepositoryConfig(scan_on_push=True, tag_mutability="IMMUTABLE", encryption="AES256")


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("ecr", region_name=REGION)


def test_ensure_creates_with_configured_settings(client: Any) -> None:
    config = RepositoryConfig(scan_on_push=False, tag_mutability="MUTABLE", encryption="AES256")
    repo, created = Ecr(client).ensure_repository("team/widget", config)
    assert created is True
    assert repo.name == "team/widget"
    assert repo.uri.endswith(".amazonaws.com/team/widget")
    described = client.describe_repositories(repositoryNames=["team/widget"])["repositories"][0]
    assert described["imageScanningConfiguration"] == {"scanOnPush": False}
    assert described["imageTagMutability"] == "MUTABLE"
    assert described["encryptionConfiguration"]["encryptionType"] == "AES256"


def test_ensure_existing_repository_is_not_created_again(client: Any) -> None:
    client.create_repository(repositoryName="widget-server", imageTagMutability="MUTABLE")
    repo, created = Ecr(client).ensure_repository("widget-server", CONFIG)
    assert created is False
    assert (
        repo.drift(CONFIG)
        == [
            "imageTagMutability is MUTABLE, configured IMMUTABLE",
            "scanOnPush is False, configured True",
        ][::-1]
    )
    # Nothing was changed on the existing repository.
    described = client.describe_repositories(repositoryNames=["widget-server"])["repositories"][0]
    assert described["imageTagMutability"] == "MUTABLE"


def test_no_drift_when_settings_match(client: Any) -> None:
    Ecr(client).ensure_repository("widget-server", CONFIG)
    repo, created = Ecr(client).ensure_repository("widget-server", CONFIG)
    assert created is False
    assert repo.drift(CONFIG) == []


def test_describe_missing_is_none(client: Any) -> None:
    assert Ecr(client).describe_repository("nothing-here") is None


def test_authorization_decodes_token_and_takes_host_from_proxy_endpoint(client: Any) -> None:
    auth = Ecr(client).authorization()
    assert auth.username == "AWS"
    assert auth.password  # moto: "<account>-auth-token"
    assert auth.host == f"123456789012.dkr.ecr.{REGION}.amazonaws.com"
    assert auth.password not in repr(auth)


def _stubbed() -> tuple[Any, Stubber]:
    client = boto3.client("ecr", region_name="cn-north-1")
    return client, Stubber(client)


def test_host_comes_from_the_api_not_a_template() -> None:
    client, stub = _stubbed()
    token = base64.b64encode(b"AWS:s3cret-password").decode()
    stub.add_response(
        "get_authorization_token",
        {
            "authorizationData": [
                {
                    "authorizationToken": token,
                    "expiresAt": datetime(2030, 1, 1, tzinfo=UTC),
                    "proxyEndpoint": "https://210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn",
                }
            ]
        },
    )
    with stub:
        auth = Ecr(client).authorization()
    assert auth.host == "210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn"
    assert (auth.username, auth.password) == ("AWS", "s3cret-password")
    assert auth.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    stub.assert_no_pending_responses()


def test_access_denied_names_the_action() -> None:
    client, stub = _stubbed()
    stub.add_client_error(
        "describe_repositories",
        service_error_code="RepositoryNotFoundException",
        http_status_code=400,
    )
    stub.add_client_error(
        "create_repository",
        service_error_code="AccessDeniedException",
        service_message="User: arn:aws:iam::1:user/ci is not authorized to perform: "
        "ecr:CreateRepository",
        http_status_code=400,
        expected_params=CONFIG.create_kwargs("widget-server"),
    )
    with stub, pytest.raises(AwsError) as err:
        Ecr(client).ensure_repository("widget-server", CONFIG)
    assert err.value.message.startswith("AWS denied ecr:CreateRepository:")
    assert "grant ecr:CreateRepository" in err.value.message


def test_create_race_counts_as_success() -> None:
    client, stub = _stubbed()
    repository = {
        "repositoryName": "widget-server",
        "repositoryUri": "210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn/widget-server",
        "repositoryArn": "arn:aws-cn:ecr:cn-north-1:210987654321:repository/widget-server",
        "imageTagMutability": "IMMUTABLE",
        "imageScanningConfiguration": {"scanOnPush": True},
        "encryptionConfiguration": {"encryptionType": "AES256"},
    }
    stub.add_client_error("describe_repositories", service_error_code="RepositoryNotFoundException")
    stub.add_client_error(
        "create_repository", service_error_code="RepositoryAlreadyExistsException"
    )
    stub.add_response(
        "describe_repositories",
        {"repositories": [repository]},
        expected_params={"repositoryNames": ["widget-server"]},
    )
    with stub:
        repo, created = Ecr(client).ensure_repository("widget-server", CONFIG)
    assert created is False
    assert repo.uri == repository["repositoryUri"]
    assert repo.host == "210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn"
    stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("config", "sent"),
    [
        (
            RepositoryConfig(
                scan_on_push=True, tag_mutability="IMMUTABLE", encryption="KMS", kms_key="alias/ecr"
            ),
            {
                "imageTagMutability": "IMMUTABLE",
                "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": "alias/ecr"},
            },
        ),
        (
            RepositoryConfig(
                scan_on_push=True,
                tag_mutability="IMMUTABLE_WITH_EXCLUSION",
                encryption="AES256",
                exclusions=("latest", "dev-*"),
            ),
            {
                "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
                "imageTagMutabilityExclusionFilters": [
                    {"filterType": "WILDCARD", "filter": "latest"},
                    {"filterType": "WILDCARD", "filter": "dev-*"},
                ],
                "encryptionConfiguration": {"encryptionType": "AES256"},
            },
        ),
    ],
    ids=["kms", "mutability-exclusions"],
)
def test_the_configured_settings_are_sent_on_create(
    config: RepositoryConfig, sent: dict[str, Any]
) -> None:
    client, stub = _stubbed()
    stub.add_client_error("describe_repositories", service_error_code="RepositoryNotFoundException")
    stub.add_response(
        "create_repository",
        {"repository": {"repositoryName": "w1", "repositoryUri": "1.dkr/w1"}},
        expected_params={
            "repositoryName": "w1",
            "imageScanningConfiguration": {"scanOnPush": True},
            **sent,
        },
    )
    with stub:
        _, created = Ecr(client).ensure_repository("w1", config)
    assert created is True
    stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("endpoint", "host"),
    [
        (
            "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        ),
        ("https://1.dkr.ecr.cn-north-1.amazonaws.com.cn/", "1.dkr.ecr.cn-north-1.amazonaws.com.cn"),
        ("registry.example:5000", "registry.example:5000"),
    ],
)
def test_registry_host_strips_the_scheme(endpoint: str, host: str) -> None:
    assert registry_host(endpoint) == host


def test_connect_uses_dotenv_aws_variables_without_leaving_them_in_environ(
    make_settings: Callable[..., Settings],
) -> None:
    os.environ.pop("AWS_ENDPOINT_URL", None)
    settings = make_settings(aws_env={"AWS_ENDPOINT_URL": "http://127.0.0.1:5999"})
    ecr = connect(settings)
    assert ecr._client.meta.endpoint_url == "http://127.0.0.1:5999"
    retries = cast(Any, ecr._client.meta.config).retries
    assert retries["mode"] == "standard"
    assert retries["total_max_attempts"] == 5
    assert "AWS_ENDPOINT_URL" not in os.environ


def test_environment_wins_over_dotenv_for_aws_variables(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:6001")
    # load_settings never puts a key the environment has into aws_env; connect keeps it so.
    ecr = connect(make_settings(aws_env={"AWS_ENDPOINT_URL": "http://127.0.0.1:5999"}))
    assert ecr._client.meta.endpoint_url == "http://127.0.0.1:6001"


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_aws_variable_in_the_environment_does_not_hide_dotenvs(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings], empty: str
) -> None:
    # `export AWS_ENDPOINT_URL=` means unset, as it does for the settings.
    monkeypatch.setenv("AWS_ENDPOINT_URL", empty)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")  # set: the overlay leaves it
    seen: dict[str, str | None] = {}

    with _overlay_environ(
        {"AWS_ENDPOINT_URL": "http://127.0.0.1:5999", "AWS_DEFAULT_REGION": "sa-east-1"}
    ):
        seen["endpoint"] = os.environ.get("AWS_ENDPOINT_URL")
        seen["region"] = os.environ.get("AWS_DEFAULT_REGION")
    assert seen == {"endpoint": "http://127.0.0.1:5999", "region": "eu-north-1"}
    assert os.environ["AWS_ENDPOINT_URL"] == empty  # put back exactly
    assert os.environ["AWS_DEFAULT_REGION"] == "eu-north-1"

    ecr = connect(make_settings(aws_env={"AWS_ENDPOINT_URL": "http://127.0.0.1:5999"}))
    assert ecr._client.meta.endpoint_url == "http://127.0.0.1:5999"
    assert os.environ["AWS_ENDPOINT_URL"] == empty


def test_the_overlay_is_undone_when_making_the_client_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "")
    monkeypatch.delenv("AWS_ENDPOINT_URL_ECR", raising=False)
    with (
        pytest.raises(RuntimeError),
        _overlay_environ({"AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_ECR": "http://b:2"}),
    ):
        raise RuntimeError("boom")
    assert os.environ["AWS_ENDPOINT_URL"] == ""
    assert "AWS_ENDPOINT_URL_ECR" not in os.environ


@pytest.mark.parametrize("overlay", ["dotenv", "sandbox"])
def test_no_command_started_meanwhile_inherits_the_overlay(
    monkeypatch: pytest.MonkeyPatch, overlay: str
) -> None:
    """While .env's keys are shown to botocore (or the user's hidden from it, in the sandbox),
    a command that another thread starts waits, and inherits the environment as it was."""
    if overlay == "dotenv":  # an empty variable is unset: .env's value is shown meanwhile
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "")
        changed, expected = _overlay_environ({"AWS_SECRET_ACCESS_KEY": "from-dotenv"}), ""
    else:  # the user's own variables are hidden meanwhile
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-shell")
        changed, expected = _isolated_environ(), "from-the-shell"
    inside, seen = threading.Event(), []

    def start_a_command() -> None:
        inside.wait(5)
        script = "import os; print(os.environ.get('AWS_SECRET_ACCESS_KEY'))"
        seen.append(SubprocessRunner()([sys.executable, "-c", script]).output.strip())

    other = threading.Thread(target=start_a_command)
    other.start()
    with changed:
        inside.set()
        time.sleep(0.3)  # the other thread would start its command now, without the lock
        during = os.environ.get("AWS_SECRET_ACCESS_KEY")
    other.join(10)
    assert during == ("from-dotenv" if overlay == "dotenv" else None)
    assert seen == [expected]  # as before the change, and after it


def test_credentials_from_dotenv_are_used(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key)
    ecr = connect(
        make_settings(aws_env={"AWS_ACCESS_KEY_ID": "AKFROMDOTENV", "AWS_SECRET_ACCESS_KEY": "x"})
    )
    signer = cast(Any, ecr._client)._request_signer
    assert signer._credentials.access_key == "AKFROMDOTENV"


def test_no_credentials_is_one_line(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(AwsError, match="no AWS credentials found"):
        connect(make_settings())


def test_unknown_profile_is_a_settings_error(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(SettingsError, match="fix AWS_PROFILE"):
        connect(make_settings(profile="does-not-exist"))


def test_unreachable_endpoint_is_one_line(make_settings: Callable[..., Settings]) -> None:
    ecr = connect(make_settings(aws_env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}))
    with pytest.raises(AwsError, match="cannot reach the ECR API"):
        ecr.authorization()


def test_a_malformed_endpoint_is_a_settings_error(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(SettingsError, match="check AWS_ENDPOINT_URL"):
        connect(make_settings(aws_env={"AWS_ENDPOINT_URL": "localhost:4566"}))


# -- lifecycle: expiring untagged images ----------------------------------------------------


def test_the_lifecycle_policy_expires_left_candidates_and_untagged_images_after_n_days() -> None:
    rules = json.loads(lifecycle_policy(14))["rules"]
    assert [rule["rulePriority"] for rule in rules] == [1, 2]
    candidates, untagged = (rule["selection"] for rule in rules)
    assert candidates == {
        "tagStatus": "tagged",
        "tagPrefixList": ["ecr-release-candidate-"],
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": 14,
    }
    assert untagged == {
        "tagStatus": "untagged",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": 14,
    }
    assert all(rule["action"] == {"type": "expire"} for rule in rules)
    assert "14 days" in rules[1]["description"]


def test_a_new_repository_gets_the_lifecycle_policy(client: Any) -> None:
    config = dataclasses.replace(CONFIG, expire_untagged_days=30)
    _, created = Ecr(client).ensure_repository("widget-server", config)
    assert created is True
    text = client.get_lifecycle_policy(repositoryName="widget-server")["lifecyclePolicyText"]
    assert json.loads(text) == json.loads(lifecycle_policy(30))
    assert Ecr(client).lifecycle_drift("widget-server", 30) is None


def test_no_policy_without_the_setting(client: Any) -> None:
    Ecr(client).ensure_repository("widget-server", CONFIG)
    assert Ecr(client).lifecycle_policy("widget-server") is None


@pytest.mark.parametrize(
    ("existing", "drift"),
    [
        (None, "has no lifecycle policy, configured ECR_EXPIRE_UNTAGGED_DAYS=30"),
        (lifecycle_policy(7), "has another lifecycle policy than ECR_EXPIRE_UNTAGGED_DAYS=30"),
        (lifecycle_policy(30), None),
    ],
)
def test_an_existing_repositorys_policy_is_compared_never_changed(
    client: Any, existing: str | None, drift: str | None
) -> None:
    client.create_repository(repositoryName="widget-server")
    if existing is not None:
        client.put_lifecycle_policy(repositoryName="widget-server", lifecyclePolicyText=existing)
    config = dataclasses.replace(CONFIG, expire_untagged_days=30)
    _, created = Ecr(client).ensure_repository("widget-server", config)
    assert created is False
    assert Ecr(client).lifecycle_drift("widget-server", 30) == drift
    assert Ecr(client).lifecycle_policy("widget-server") == existing  # left unchanged


def test_exclusion_filters_are_read_back(client: Any) -> None:
    client.create_repository(
        repositoryName="widget-server",
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest"}],
    )
    found = Ecr(client).describe_repository("widget-server")
    assert found is not None and found.exclusions == ("latest",)
    assert found.tag_is_mutable("latest") and not found.tag_is_mutable("v1")


def test_the_aws_identity_tells_default_profiles_and_container_roles_apart(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    base = {"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    identities = {
        aws_identity(settings, {**base, **extra})
        for extra in (
            {},
            {"AWS_DEFAULT_PROFILE": "prod"},
            {"AWS_DEFAULT_PROFILE": "staging"},
            {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/abc"},
            {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials"},
        )
    }
    assert len(identities) == 5


def test_the_aws_identity_sees_dotenvs_endpoint_behind_an_empty_variable(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(aws_env={"AWS_ENDPOINT_URL": "http://127.0.0.1:5999"})
    base = {"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    empty = aws_identity(settings, {**base, "AWS_ENDPOINT_URL": ""})
    assert empty == aws_identity(settings, base)
    assert empty != aws_identity(make_settings(), base)


# -- the AWS budget: an endpoint that accepts and never answers ----------------------------


def test_a_step_budget_stops_retries_that_could_end_past_it() -> None:
    from ecr_release.outside.ecr import Budget, Limits

    now = [0.0]
    budget = Budget(
        Limits(connect_timeout=1, read_timeout=4, attempts=5, budget=12), lambda: now[0]
    )
    budget._started()
    now[0] = 4.0  # the first attempt timed out
    assert budget._may_retry() is None  # 4 + 5 <= 12: botocore's own rule decides
    now[0] = 8.5  # the second one too
    assert budget._may_retry() is False  # 8.5 + 5 > 12: no third attempt
    budget._ended()
    with pytest.raises(AwsError, match="took 8 s of their 12 s"):
        budget._started()  # the next call of the step could end past it: not made
    budget.new_step()  # a new step: a budget of its own
    budget._started()
    assert budget._may_retry() is None


def test_unbounded_limits_leave_retries_to_botocore() -> None:
    from ecr_release.outside.ecr import Budget, Limits

    budget = Budget(Limits(connect_timeout=1, read_timeout=100, attempts=5), lambda: 1e9)
    budget._started()
    assert budget._may_retry() is None


def test_a_hung_endpoint_fails_within_the_budget_naming_it(
    make_settings: Callable[..., Settings],
) -> None:
    import socket
    import time

    from ecr_release.outside.ecr import Limits, connect

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
        limits = Limits(connect_timeout=0.5, read_timeout=0.5, attempts=5, budget=2.2)
        ecr = connect(make_settings(aws_env={"AWS_ENDPOINT_URL": endpoint}), limits=limits)
        started = time.monotonic()
        with pytest.raises(AwsError, match="cannot reach the ECR API: Read timeout") as caught:
            ecr.describe_repository("widget-server")
        elapsed = time.monotonic() - started
        attempts = 0
        listener.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                listener.accept()[0].close()
                attempts += 1
    assert endpoint in caught.value.message
    # 5 attempts of 0.5 s were allowed; the budget stops the retry that could end past
    # 2.2 s (an attempt counts as connect + read: 1 s), so 2 or 3 attempts were made.
    assert 2 <= attempts <= 3, attempts
    assert elapsed < 2.2 + 0.5, elapsed


def test_a_sandbox_session_reads_nothing_of_the_users_aws_setup(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from ecr_release.outside.ecr import open_session

    config = tmp_path / "config"
    config.write_text("[profile real]\nregion = eu-west-1\nendpoint_url = http://10.9.9.9\n")
    for key, value in {
        "AWS_ACCESS_KEY_ID": "AKIAREALREALREALREAL",
        "AWS_SECRET_ACCESS_KEY": "real-secret",
        "AWS_SESSION_TOKEN": "real-token",
        "AWS_PROFILE": "real",
        "AWS_CONFIG_FILE": str(config),
        "AWS_ENDPOINT_URL": "http://10.9.9.9:1",
        "AWS_ENDPOINT_URL_ECR": "http://10.9.9.9:2",
        "HTTP_PROXY": "http://10.9.9.9:3128",
        "https_proxy": "http://10.9.9.9:3128",
    }.items():
        monkeypatch.setenv(key, value)
    before = dict(os.environ)
    limits = Limits(connect_timeout=1, read_timeout=1, attempts=1)
    session = open_session(
        "us-east-1", "real", {"AWS_ENDPOINT_URL": "http://10.9.9.9:3"}, ["ecr", "sts"], limits,
        sandbox=SandboxApi("http://127.0.0.1:1234", "SANDBOXKEY"),
    )  # fmt: skip
    assert session.credentials is not None
    frozen = session.credentials.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == ("SANDBOXKEY", "sandbox", None)
    for client in session.clients.values():
        assert client.meta.endpoint_url == "http://127.0.0.1:1234"
        assert (
            client._endpoint.http_session._proxy_config.proxy_url_for("http://127.0.0.1:1") is None
        )
    assert dict(os.environ) == before  # put back exactly


def test_the_sandbox_connect_bounds_its_client_as_a_release_does(
    make_settings: Callable[..., Settings],
) -> None:
    api = SandboxApi("http://127.0.0.1:1234", "SANDBOXKEY")
    ecr = connect(make_settings(profile="absent-profile"), sandbox=api)
    assert ecr.budget is not None
    assert ecr._client.meta.endpoint_url == "http://127.0.0.1:1234"


def test_a_call_that_could_not_finish_within_the_steps_budget_is_not_made() -> None:
    from ecr_release.outside.ecr import Budget

    now = [0.0]
    budget = Budget(
        Limits(connect_timeout=1, read_timeout=9, attempts=5, budget=25), lambda: now[0]
    )
    for finished in (9.0, 18.0):  # two calls of 9 s each
        budget._started()
        now[0] = finished
        budget._ended()
    with pytest.raises(AwsError, match="took 18 s of their 25 s"):
        budget._started()  # 18 + 10 > 25: it could end past the budget
    budget.new_step()
    budget._started()  # a new step: a budget of its own
