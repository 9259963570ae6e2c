"""Settings: precedence, the AWS variables from .env, and every bad input refused in one line."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ecr_release.errors import SettingsError
from ecr_release.model.settings import TASK_NEEDS, Sources, load_settings


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    return tmp_path


def write_env(path: Path, **values: str) -> Path:
    env = path / ".env"
    env.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return env


def test_precedence_flag_over_environment_over_dotenv_over_default(workdir: Path) -> None:
    write_env(
        workdir, AWS_REGION="eu-west-1", ECR_REPOSITORY="from-dotenv", IMAGE_NAME="img-dotenv"
    )
    environ = {"ECR_REPOSITORY": "from-environ"}

    assert load_settings(task="login", environ={}).repository == "from-dotenv"
    assert load_settings(task="login", environ=environ).repository == "from-environ"
    flagged = load_settings({"ECR_REPOSITORY": "from-flag"}, task="login", environ=environ)
    assert flagged.repository == "from-flag"
    # IMAGE_NAME comes from .env; DOCKERFILE keeps its default.
    assert flagged.image_name == "img-dotenv"
    assert flagged.dockerfile == workdir / "Dockerfile"
    assert flagged.region == "eu-west-1"


def test_defaults(workdir: Path) -> None:
    settings = load_settings(task="login", environ={"AWS_REGION": "us-east-1"})
    assert settings.repository == "widget-server"
    assert settings.image_name == "widget-server"
    assert settings.build_context == workdir
    assert settings.scan_on_push is True
    assert settings.tag_mutability == "IMMUTABLE"
    assert settings.encryption == "AES256"
    assert settings.kms_key is None
    assert settings.base_image is None


def test_empty_values_in_dotenv_mean_unset(workdir: Path) -> None:
    write_env(workdir, AWS_REGION="eu-west-1", IMAGE_NAME="", BASE_IMAGE="", ECR_KMS_KEY="")
    settings = load_settings(task="login", environ={})
    assert settings.image_name == "widget-server"
    assert settings.base_image is None


def test_dotenv_does_not_touch_os_environ_and_aws_keys_are_kept_for_boto3(workdir: Path) -> None:
    write_env(
        workdir,
        AWS_REGION="eu-west-1",
        AWS_ENDPOINT_URL="http://127.0.0.1:5999",
        AWS_SECRET_ACCESS_KEY="from-dotenv-secret",
        AWS_ACCOUNT_ID="123456789012",
    )
    before = dict(os.environ)
    settings = load_settings(task="login", environ={"AWS_SECRET_ACCESS_KEY": "from-environ"})
    assert dict(os.environ) == before
    # The environment wins, so only what it lacks is handed to boto3.
    assert settings.aws_env == {
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5999",
    }
    assert "from-dotenv-secret" not in repr(settings)


def test_no_dotenv_and_no_region_names_the_key_and_says_copy_example(workdir: Path) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(task="login", environ={})
    assert "AWS_REGION" in err.value.message
    assert "copy .env.example" in err.value.message
    assert "\n" not in err.value.message


def test_dotenv_without_region_says_add_it(workdir: Path) -> None:
    write_env(workdir, ECR_REPOSITORY="x1")
    with pytest.raises(SettingsError, match=r"AWS_REGION is not set .*add it to \.env"):
        load_settings(task="login", environ={})


def test_region_from_aws_configuration_chain(workdir: Path) -> None:
    assert (
        load_settings(task="login", environ={"AWS_DEFAULT_REGION": "ap-south-1"}).region
        == "ap-south-1"
    )
    config = workdir / "aws-config"
    config.write_text("[default]\nregion = eu-north-1\n[profile ci]\nregion = sa-east-1\n")
    environ = {"AWS_CONFIG_FILE": str(config)}
    assert load_settings(task="login", environ=environ).region == "eu-north-1"
    assert load_settings({"AWS_PROFILE": "ci"}, task="login", environ=environ).region == "sa-east-1"


def test_build_does_not_need_a_region(workdir: Path) -> None:
    assert load_settings({"version": "v1"}, task="build", environ={}).region is None


def test_unknown_dotenv_key_is_a_warning(workdir: Path) -> None:
    write_env(workdir, AWS_REGION="eu-west-1", ECR_REPOSITRY="typo")
    assert load_settings(task="login", environ={}).warnings == (
        ".env: unknown key ECR_REPOSITRY is ignored",
    )


BAD_VERSIONS = [
    "v1;rm -rf ~",
    "$(id)",
    "`id`",
    "v1 v2",
    "-v1",
    ".v1",
    "",
    "a" * 129,
    "vé1",
    "v1\n",
]


@pytest.mark.parametrize("version", BAD_VERSIONS)
def test_bad_versions_are_refused(workdir: Path, version: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"version": version}, task="push", environ={"AWS_REGION": "eu-west-1"})
    message = err.value.message
    assert "--version" in message
    assert "\n" not in message
    if version:
        assert "not a valid image tag" in message
    else:
        assert "required" in message


RESERVED = (
    "starts with 'ecr-release-candidate-', which the release keeps for its candidate tags (it "
    "removes them, and the lifecycle rule expires their images): choose another name"
)


@pytest.mark.parametrize(
    ("options", "env", "said"),
    [
        ({"version": "ecr-release-candidate-v1"}, {}, "--version 'ecr-release-candidate-v1'"),
        (
            {"version": "v1"},
            {"ECR_EXTRA_TAGS": "latest,ecr-release-candidate-x"},
            "ECR_EXTRA_TAGS (--also-tag) 'ecr-release-candidate-x'",
        ),
        ({"version": "v1", "tags": "ecr-release-candidate-"}, {}, "'ecr-release-candidate-'"),
    ],
)
def test_the_candidates_names_are_no_person_s_tags(
    workdir: Path, options: dict[str, str], env: dict[str, str], said: str
) -> None:
    write_env(workdir, AWS_REGION="eu-west-1", **env)
    task = "promote" if "tags" in options else "push"
    with pytest.raises(SettingsError) as err:
        load_settings(options, task=task, environ={})
    assert said in err.value.message and err.value.message.endswith(RESERVED)


@pytest.mark.parametrize(
    "version", ["v1", "1.4.2", "_x", "A" * 128, "v1.0-rc_1", "ecr-release-candidate"]
)
def test_good_versions(workdir: Path, version: str) -> None:
    settings = load_settings({"version": version}, environ={"AWS_REGION": "eu-west-1"}, task="push")
    assert settings.version == version


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"ECR_REPOSITORY": "Widget-Server"}, "must be lowercase"),
        ({"ECR_REPOSITORY": "a"}, "2 to 256 characters"),
        ({"ECR_REPOSITORY": "a" * 257}, "2 to 256 characters"),
        ({"ECR_REPOSITORY": "widget..server"}, "not a valid ECR repository name"),
        ({"ECR_REPOSITORY": "-widget"}, "not a valid ECR repository name"),
        (
            {"ECR_REPOSITORY": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/widget-server"},
            "looks like an image URI: give only the repository name (e.g. 'widget-server')",
        ),
        ({"ECR_REPOSITORY": "widget-server:v1"}, "looks like an image URI"),
        ({"IMAGE_NAME": "Bad Name"}, "IMAGE_NAME 'Bad Name' is not a valid local image name"),
        ({"ECR_TAG_MUTABILITY": "SOMETIMES"}, "ECR_TAG_MUTABILITY 'SOMETIMES' is not one of"),
        ({"ECR_ENCRYPTION": "ROT13"}, "ECR_ENCRYPTION 'ROT13' is not one of AES256, KMS, KMS_DSSE"),
        ({"ECR_ENCRYPTION": "KMS"}, "ECR_ENCRYPTION=KMS needs ECR_KMS_KEY"),
        ({"ECR_ENCRYPTION": "KMS_DSSE"}, "ECR_ENCRYPTION=KMS_DSSE needs ECR_KMS_KEY"),
        ({"ECR_KMS_KEY": "alias/x"}, "ECR_KMS_KEY is set but ECR_ENCRYPTION is AES256"),
        ({"ECR_SCAN_ON_PUSH": "maybe"}, "ECR_SCAN_ON_PUSH 'maybe' is not a boolean"),
        ({"AWS_ACCOUNT_ID": "12345"}, "AWS_ACCOUNT_ID '12345' must be exactly 12 digits"),
        ({"AWS_ACCOUNT_ID": "1234567890123"}, "must be exactly 12 digits"),
        ({"AWS_ACCOUNT_ID": "12345678901a"}, "must be exactly 12 digits"),
        ({"DOCKERFILE": "nope/Dockerfile"}, "DOCKERFILE 'nope/Dockerfile' does not exist"),
        ({"BUILD_CONTEXT": "nope"}, "BUILD_CONTEXT 'nope' is not a directory"),
    ],
)
def test_bad_settings_are_refused_with_one_line(
    workdir: Path, overrides: dict[str, str], expected: str
) -> None:
    write_env(workdir, AWS_REGION="eu-west-1", **overrides)
    with pytest.raises(SettingsError) as err:
        load_settings(task="config", environ={})
    assert expected in err.value.message
    assert "\n" not in err.value.message


def test_every_problem_is_named_at_once(workdir: Path) -> None:
    write_env(workdir, ECR_REPOSITORY="UPPER", ECR_TAG_MUTABILITY="x", AWS_ACCOUNT_ID="1")
    with pytest.raises(SettingsError) as err:
        load_settings({"version": "-bad"}, task="push", environ={})
    message = err.value.message
    for part in (
        "--version",
        "AWS_REGION",
        "ECR_REPOSITORY",
        "ECR_TAG_MUTABILITY",
        "AWS_ACCOUNT_ID",
    ):
        assert part in message


@pytest.mark.parametrize(
    ("text", "value"), [("true", True), ("FALSE", False), ("1", True), ("off", False)]
)
def test_booleans(workdir: Path, text: str, value: bool) -> None:
    write_env(workdir, AWS_REGION="eu-west-1", ECR_SCAN_ON_PUSH=text)
    assert load_settings(task="login", environ={}).scan_on_push is value


def test_settings_are_frozen(workdir: Path) -> None:
    settings = load_settings(task="login", environ={"AWS_REGION": "eu-west-1"})
    with pytest.raises(AttributeError):
        settings.repository = "other"  # type: ignore[misc]


def test_lowercase_enum_values_are_accepted(workdir: Path) -> None:
    write_env(workdir, AWS_REGION="eu-west-1", ECR_TAG_MUTABILITY="mutable")
    assert load_settings(task="login", environ={}).tag_mutability == "MUTABLE"


def test_the_shipped_env_example_works_as_is(workdir: Path) -> None:
    """`cp .env.example .env` leaves optional keys empty: empty means unset, for boto3 too."""
    root = Path(__file__).resolve().parents[3]
    (workdir / ".env").write_text((root / ".env.example").read_text())
    settings = load_settings(task="config", environ={})
    assert settings.profile is None
    assert settings.account_id is None
    assert "AWS_PROFILE" not in settings.aws_env
    assert all(value.strip() for value in settings.aws_env.values())

    from ecr_release.outside.ecr import connect

    connect(settings)  # no "The config profile () could not be found"


def test_an_explicit_env_file_must_exist(workdir: Path) -> None:
    with pytest.raises(SettingsError, match=r"--env-file 'missing\.env' does not exist"):
        load_settings(
            task="login",
            environ={"AWS_REGION": "eu-west-1"},
            env_file="missing.env",
            env_file_required=True,
        )


def test_a_dotenv_that_is_not_utf8_is_one_line(workdir: Path) -> None:
    (workdir / ".env").write_bytes("AWS_REGION=eu-west-1\n".encode("utf-16"))
    with pytest.raises(SettingsError, match=r"cannot read \.env: .*save it as UTF-8"):
        load_settings(task="login", environ={})


@pytest.mark.parametrize(
    ("mutability", "exclusions", "expected"),
    [
        ("IMMUTABLE_WITH_EXCLUSION", "", "needs ECR_TAG_MUTABILITY_EXCLUSIONS"),
        ("MUTABLE_WITH_EXCLUSION", "bad tag!", "needs ECR_TAG_MUTABILITY_EXCLUSIONS"),
        ("IMMUTABLE_WITH_EXCLUSION", "a,b,c,d,e,f", "needs ECR_TAG_MUTABILITY_EXCLUSIONS"),
        ("IMMUTABLE", "latest", "use IMMUTABLE_WITH_EXCLUSION"),
    ],
)
def test_mutability_exclusions_are_checked(
    workdir: Path, mutability: str, exclusions: str, expected: str
) -> None:
    write_env(
        workdir,
        AWS_REGION="eu-west-1",
        ECR_TAG_MUTABILITY=mutability,
        ECR_TAG_MUTABILITY_EXCLUSIONS=exclusions,
    )
    with pytest.raises(SettingsError, match=expected):
        load_settings(task="login", environ={})


def test_mutability_exclusions_are_kept(workdir: Path) -> None:
    write_env(
        workdir,
        AWS_REGION="eu-west-1",
        ECR_TAG_MUTABILITY="IMMUTABLE_WITH_EXCLUSION",
        ECR_TAG_MUTABILITY_EXCLUSIONS="latest, dev-*",
    )
    assert load_settings(task="login", environ={}).tag_mutability_exclusions == ("latest", "dev-*")


# -- hardening: regions, Docker's name limit, the secret scan's allow list ----------------


@pytest.mark.parametrize(
    "region",
    [
        "eu-west-1",
        "us-gov-west-1",
        "us-isob-east-1",
        "ap-southeast-4",
        "cn-north-1",
        "il-central-1",
    ],
)
def test_real_region_names_are_accepted(workdir: Path, region: str) -> None:
    write_env(workdir, AWS_REGION=region)
    assert load_settings(task="login", environ={}).region == region


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "AWS_REGION=sa-east-1#prod",
            "AWS_REGION 'sa-east-1#prod' is not an AWS region name such as eu-west-1: a '#' "
            "with no space before it stays in the value",
        ),
        ("AWS_REGION=eu west 1", "AWS_REGION 'eu west 1' is not an AWS region name"),
        ("AWS_REGION=https://ecr.eu-west-1.amazonaws.com", "is not an AWS region name"),
    ],
)
def test_a_malformed_region_is_named_with_its_value(
    workdir: Path, line: str, expected: str
) -> None:
    (workdir / ".env").write_text(line + "\n")
    with pytest.raises(SettingsError) as err:
        load_settings(task="login", environ={})
    assert expected in err.value.message
    assert "AWS_ENDPOINT_URL" not in err.value.message


def test_a_malformed_region_from_the_aws_config_says_where_it_came_from(workdir: Path) -> None:
    with pytest.raises(SettingsError, match="the region from the AWS config 'moon-1'"):
        load_settings(task="login", environ={"AWS_DEFAULT_REGION": "moon-1"})


def test_a_repository_docker_cannot_name_is_refused(workdir: Path) -> None:
    # eu-west-1's host is 44 characters: 210 are left for the repository.
    write_env(workdir, AWS_REGION="eu-west-1", ECR_REPOSITORY="a" * 210)
    assert load_settings(task="login", environ={}).repository == "a" * 210
    write_env(workdir, AWS_REGION="eu-west-1", ECR_REPOSITORY="a" * 211)
    with pytest.raises(SettingsError) as err:
        load_settings(task="login", environ={})
    assert err.value.message == (
        "ECR_REPOSITORY is 211 characters: with the registry host "
        "000000000000.dkr.ecr.eu-west-1.amazonaws.com that makes an image name of 256, and "
        "Docker allows 255: use at most 210 characters"
    )


def test_the_secret_scan_allow_list_is_read(workdir: Path) -> None:
    write_env(workdir, AWS_REGION="eu-west-1", SECRET_SCAN_ALLOW="fixtures/*.pem, certs/ca.key")
    assert load_settings(task="login", environ={}).secret_scan_allow == (
        "fixtures/*.pem",
        "certs/ca.key",
    )
    assert load_settings(task="login", environ={}).warnings == ()


# -- release gates and tags -----------------------------------------------------------------


def test_gate_and_tag_settings_are_read(workdir: Path) -> None:
    write_env(
        workdir,
        AWS_REGION="eu-west-1",
        ECR_EXTRA_TAGS="latest, stable,latest",
        SMOKE_TEST="false",
        SMOKE_TIMEOUT="90",
        ECR_EXPIRE_UNTAGGED_DAYS="14",
    )
    found = load_settings(task="login", environ={})
    assert found.extra_tags == ("latest", "stable")
    assert (found.smoke_test, found.smoke_timeout, found.expire_untagged_days) == (False, 90, 14)
    defaults = load_settings(
        task="login", environ={"AWS_REGION": "eu-west-1"}, root=workdir / "elsewhere"
    )
    assert (defaults.smoke_test, defaults.smoke_timeout) == (True, 60)
    assert (defaults.expire_untagged_days, defaults.extra_tags) == (None, ())


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"ECR_EXTRA_TAGS": "latest,-bad"}, "ECR_EXTRA_TAGS (--also-tag) '-bad' is not a valid"),
        ({"ECR_EXTRA_TAGS": "la test"}, "'la test' is not a valid image tag"),
        ({"SMOKE_TIMEOUT": "0"}, "SMOKE_TIMEOUT '0' must be a whole number of seconds from 1"),
        ({"SMOKE_TIMEOUT": "3601"}, "from 1 to 3600"),
        ({"SMOKE_TIMEOUT": "1.5"}, "must be a whole number"),
        ({"SMOKE_TEST": "sometimes"}, "SMOKE_TEST 'sometimes' is not a boolean"),
        ({"ECR_EXPIRE_UNTAGGED_DAYS": "0"}, "ECR_EXPIRE_UNTAGGED_DAYS '0' must be a whole number"),
        ({"ECR_EXPIRE_UNTAGGED_DAYS": "3651"}, "of days from 1 to 3650"),
        ({"SCAN_TIMEOUT": "9"}, "SCAN_TIMEOUT '9' must be a whole number of seconds from 10 to"),
        ({"SCAN_TIMEOUT": "3601"}, "SCAN_TIMEOUT '3601' must be a whole number of seconds"),
        (
            {"SCAN_FAIL_ON": "SEVERE"},
            "SCAN_FAIL_ON 'SEVERE' is not one of CRITICAL, HIGH, MEDIUM, LOW: the lowest",
        ),
        ({"SCAN_FAIL_ON": "INFORMATIONAL"}, "SCAN_FAIL_ON 'INFORMATIONAL' is not one of"),
        (
            {"SCAN_IGNORE": "CVE-2024-1 CVE-2024-2"},
            "SCAN_IGNORE 'CVE-2024-1 CVE-2024-2' is not one finding id: separate the ids with",
        ),
    ],
)
def test_bad_gate_and_tag_settings(workdir: Path, values: dict[str, str], expected: str) -> None:
    write_env(workdir, AWS_REGION="eu-west-1", **values)
    with pytest.raises(SettingsError, match=re.escape(expected)):
        load_settings(task="login", environ={})


def test_the_scan_gate_settings_and_their_defaults(workdir: Path) -> None:
    write_env(
        workdir,
        AWS_REGION="eu-west-1",
        SCAN_TIMEOUT="600",
        SCAN_FAIL_ON="high",
        SCAN_IGNORE="CVE-2024-1234, GHSA-abcd-efgh-ijkl,",
    )
    found = load_settings(task="login", environ={})
    assert (found.scan_timeout, found.scan_fail_on) == (600.0, "HIGH")
    assert found.scan_ignore == ("CVE-2024-1234", "GHSA-abcd-efgh-ijkl")
    defaults = load_settings(
        task="login", environ={"AWS_REGION": "eu-west-1"}, root=workdir / "elsewhere"
    )
    assert (defaults.scan_timeout, defaults.scan_fail_on, defaults.scan_ignore) == (300.0, None, ())
    # An empty value is unset: findings are reported only.
    empty = load_settings(
        task="login",
        environ={"AWS_REGION": "eu-west-1", "SCAN_FAIL_ON": ""},
        root=workdir / "elsewhere",
    )
    assert empty.scan_fail_on is None


@pytest.mark.parametrize(
    ("tags", "expected"),
    [(None, "--tag is required"), ("", "--tag is required"), ("latest,.x", "--tag '.x'")],
)
def test_promote_tags_are_required_and_checked(
    workdir: Path, tags: str | None, expected: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(expected)):
        load_settings(
            {"version": "v1", "tags": tags}, environ={"AWS_REGION": "eu-west-1"}, task="promote"
        )
    found = load_settings(
        {"version": "v1", "tags": "latest,prod"},
        environ={"AWS_REGION": "eu-west-1"},
        task="promote",
    )
    assert found.tags == ("latest", "prod")


def test_an_aws_config_that_is_not_utf8_is_one_line(workdir: Path) -> None:
    config = workdir / "aws-config"
    config.write_bytes(b"[default]\nregion = eu-west-1\n# caf\xe9\n")
    with pytest.raises(SettingsError, match=r"cannot read the AWS config file .*UTF-8"):
        load_settings(task="login", environ={"AWS_CONFIG_FILE": str(config)})


# -- an empty AWS variable in the environment, and where the region comes from -----------


@pytest.mark.parametrize("empty", ["", "   "])
def test_an_empty_aws_variable_in_the_environment_does_not_hide_dotenvs(
    workdir: Path, empty: str
) -> None:
    write_env(
        workdir,
        AWS_ENDPOINT_URL="http://127.0.0.1:5999",
        AWS_DEFAULT_REGION="ap-south-1",
        AWS_ACCESS_KEY_ID="AKFROMDOTENV",
    )
    environ = {"AWS_ENDPOINT_URL": empty, "AWS_DEFAULT_REGION": empty, "AWS_ACCESS_KEY_ID": "AK"}
    settings = load_settings(task="login", environ=environ)
    assert settings.aws_env == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5999",
        "AWS_DEFAULT_REGION": "ap-south-1",
    }
    assert settings.region == "ap-south-1"  # the AWS config chain sees .env's too


def test_the_region_and_where_it_comes_from(workdir: Path) -> None:
    config = workdir / "aws-config"
    config.write_text("[default]\nregion = eu-north-1\n")

    def region(flags: dict[str, str | bool | None], **environ: str) -> tuple[object, ...]:
        environ = {"AWS_CONFIG_FILE": str(workdir / "absent"), **environ}
        src = Sources.read(flags, environ, Path(".env"), workdir)
        return (*src.region_lookup, src.region_origin)

    assert region({}) == (None, None, "")
    assert region({}, AWS_CONFIG_FILE=str(config)) == (
        "eu-north-1",
        "AWS config",
        "the AWS config",
    )
    write_env(workdir, AWS_REGION="eu-west-1")
    assert region({}) == ("eu-west-1", ".env", "AWS_REGION in .env")
    assert region({}, AWS_REGION="us-east-1") == (
        "us-east-1",
        "environment",
        "AWS_REGION in the environment",
    )
    assert region({"AWS_REGION": "sa-east-1"}, AWS_REGION="us-east-1") == (
        "sa-east-1",
        "flag",
        "--region",
    )
    assert region({"AWS_REGION": ""}, AWS_REGION=" ") == ("eu-west-1", ".env", "AWS_REGION in .env")
    (workdir / "prod.env").write_text("AWS_REGION=eu-west-3\n")
    assert Sources.read({}, {}, Path("prod.env"), workdir).region_origin == "AWS_REGION in prod.env"


def test_flag_only_inputs_are_never_read_from_the_environment(workdir: Path) -> None:
    write_env(workdir, AWS_REGION="eu-west-1", version="v9", tags="latest")
    with pytest.raises(SettingsError, match="--tag is required"):
        load_settings({"version": "v1"}, task="promote", environ={"tags": "prod"})
    settings = load_settings(task="login", environ={"version": "v9"})
    assert settings.version is None and settings.tags == ()
    assert settings.warnings == (
        ".env: unknown key tags is ignored",
        ".env: unknown key version is ignored",
    )


def test_what_each_task_checks(workdir: Path) -> None:
    """Each task checks its declared needs, and nothing it does not need."""
    (workdir / "Dockerfile").unlink()
    problems = {}
    for task in TASK_NEEDS:
        try:
            load_settings(task=task, environ={})
        except SettingsError as exc:
            problems[task] = exc.message
    checked = {
        task: {
            "version": "--version" in message,
            "aws": "AWS_REGION" in message,
            "build": "DOCKERFILE" in message,
            "tags": "--tag " in message,
        }
        for task, message in problems.items()
    }
    assert checked == {
        task: {need: need in needs for need in ("version", "aws", "build", "tags")}
        for task, needs in TASK_NEEDS.items()
        if needs
    }
    assert all(needs for task, needs in TASK_NEEDS.items() if task in problems)


def test_an_undeclared_task_is_a_bug_not_a_settings_error(workdir: Path) -> None:
    with pytest.raises(ValueError, match="unknown task 'deploy'"):
        load_settings(task="deploy", environ={"AWS_REGION": "eu-west-1"})


def test_the_sandbox_reads_no_aws_setting_and_needs_no_region(workdir: Path) -> None:
    (workdir / ".env").write_text(
        "AWS_PROFILE=real\nAWS_ACCOUNT_ID=111122223333\nAWS_ENDPOINT_URL=http://10.9.9.9\n"
        "AWS_ACCESS_KEY_ID=AKIAREALREALREALREAL\n"
    )
    environ = {"AWS_CONFIG_FILE": str(workdir / "nothing-to-read"), "SANDBOX": "true"}
    settings = load_settings(task="release", environ=environ, flags={"version": "v1"})
    assert settings.sandbox and settings.region == "us-east-1"
    assert (settings.profile, settings.account_id, dict(settings.aws_env)) == (None, None, {})
    assert load_settings(task="release", environ={**environ, "AWS_REGION": "eu-west-2"},
                         flags={"version": "v1"}).region == "us-east-1"  # fmt: skip
    without = load_settings(
        task="release", environ={"AWS_REGION": "eu-west-1"}, flags={"version": "v1"}
    )
    assert not without.sandbox and without.profile == "real"
    assert without.aws_env["AWS_ENDPOINT_URL"] == "http://10.9.9.9"
    with pytest.raises(SettingsError, match="SANDBOX 'maybe' is not a boolean"):
        load_settings(task="release", environ={"SANDBOX": "maybe"}, flags={"version": "v1"})


def test_the_sandbox_takes_its_region_from_region_only_and_ignores_the_account(
    workdir: Path,
) -> None:
    environ = {"SANDBOX": "true", "AWS_REGION": "eu-west-1 # prod", "AWS_ACCOUNT_ID": "12345"}
    settings = load_settings(task="release", environ=environ, flags={"version": "v1"})
    assert (settings.region, settings.account_id) == ("us-east-1", None)
    flagged = load_settings(
        task="release", environ=environ, flags={"version": "v1", "AWS_REGION": "eu-north-1"}
    )
    assert flagged.region == "eu-north-1"
