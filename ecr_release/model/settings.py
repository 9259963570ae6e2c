"""Settings: declared once, read from flags, the environment, ``.env`` and defaults, validated,
frozen.

Each setting is one :class:`Setting` in :data:`SETTINGS`: its key, the ``Settings``
attribute it fills, its help, default, check, task flag, and whether it is secret.
Everything else is made from that table: the values and checks of
:func:`load_settings`, the task flags and their help (``cli/session.py``), ``inv
config`` and the masking of secrets (``model/masking.py``); a unit test holds
``.env.example``, the README's settings table and the release workflow's ``env:`` to
it. What a task needs checked beyond that (a version, a region, the build paths, the
tags) is declared per task in :data:`TASK_NEEDS`.

Precedence is task flag > process environment > ``.env`` > default; an empty value
means unset. ``.env`` is read with ``dotenv_values`` so ``os.environ`` is never
changed; the standard AWS variables found there (``AWS_ENDPOINT_URL``, keys, ...) are
kept apart in ``Settings.aws_env`` and handed to boto3 by ``ecr.connect``.

Every problem is collected and reported in one ``SettingsError`` line, before any
docker command or AWS call. This module does not talk to AWS or Docker, and importing
it stays cheap (``inv --list`` imports it): python-dotenv and configparser are imported
when a file is read, the scan's model when SCAN_FAIL_ON is checked, and a pattern is
compiled when it is first matched.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SettingsError

if TYPE_CHECKING:
    from .services import Service

# The patterns are text, matched with re.fullmatch: re compiles each on its first use
# (and keeps it), so importing this module (`inv --list` does) compiles none.
# Docker's tag grammar; ECR's API allows 300 characters but docker refuses more than 128.
TAG_RE = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
# ECR's repository-name pattern (2 to 256 characters, lowercase).
REPOSITORY_RE = r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*"
# Docker's local image name: optional registry host[:port], lowercase path components.
IMAGE_NAME_RE = (
    r"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
ACCOUNT_RE = r"[0-9]{12}"
# AWS region names: eu-west-1, us-gov-west-1, us-isob-east-1, ap-southeast-4, ...
REGION_RE = r"[a-z]{2}(?:-[a-z]+){1,3}-[0-9]{1,2}"
# Docker refuses a reference name (registry host, '/', repository) longer than this.
DOCKER_NAME_MAX = 255
# ECR's ImageTagMutabilityExclusionFilterValue.
EXCLUSION_RE = r"[0-9a-zA-Z._*-]{1,128}"

# The sandbox's region when AWS_REGION is not set (it reads no AWS config).
SANDBOX_REGION = "us-east-1"
TAG_MUTABILITY = ("IMMUTABLE", "MUTABLE", "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION")
ENCRYPTION = ("AES256", "KMS", "KMS_DSSE")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one run. Build it with :func:`load_settings`.

    Every attribute but the last five is a declared :class:`Setting`'s ``attr``.
    """

    region: str | None
    profile: str | None
    account_id: str | None
    repository: str
    image_name: str
    dockerfile: Path
    build_context: Path
    base_image: str | None
    scan_on_push: bool
    tag_mutability: str
    encryption: str
    kms_key: str | None
    tag_mutability_exclusions: tuple[str, ...] = ()
    secret_scan_allow: tuple[str, ...] = ()
    extra_tags: tuple[str, ...] = ()
    expire_untagged_days: int | None = None
    smoke_test: bool = True
    smoke_timeout: float = 60.0
    docker_idle_timeout: float = 600.0
    scan_timeout: float = 300.0
    scan_fail_on: str | None = None
    scan_ignore: tuple[str, ...] = ()
    require_clean: bool = False
    allow_dirty: bool = False
    sandbox: bool = False
    sandbox_registry_image: str = "registry:2"
    version: str | None = None
    tags: tuple[str, ...] = ()  # promote's --tag
    # Standard AWS_* variables from .env that the environment does not set (or sets
    # empty): boto3 reads them as if they were set in the environment. May hold keys:
    # no repr.
    aws_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    env_file: Path | None = None
    warnings: tuple[str, ...] = ()
    service: str | None = None  # the declared service (model/services.py) these are for
    build_args: Mapping[str, str] = field(default_factory=dict)  # the service's own

    def image(self, version: str) -> str:
        """The local image reference for a version."""
        return f"{self.image_name}:{version}"

    def remote_image(self, host: str, version: str) -> str:
        """The image's reference in the registry: ``HOST/REPOSITORY:version``."""
        return f"{host}/{self.repository}:{version}"

    @property
    def lock_name(self) -> str:
        """What one machine serializes releases on: the region's repository."""
        return f"{self.region or 'default'}-{self.repository}"


# -- the declaration ---------------------------------------------------------------------

# A setting's value in Settings, from the sources; its problems, in words.
Reader = Callable[["Sources", "Setting"], Any]
Checker = Callable[["Sources", "Setting"], list[str]]


def _no_problems(src: Sources, setting: Setting) -> list[str]:
    return []


@dataclass(frozen=True)
class Flag:
    """A task flag that sets a setting."""

    name: str  # the task's parameter: also_tag is --also-tag
    shared: bool = False  # every task has it
    help: str | None = None  # when the flag says something the setting's help does not
    sets: str | None = None  # a switch: the value it gives the setting when on

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def value(self, given: str | bool | None) -> str | None:
        """The setting's value from the flag's: a switch that is off sets nothing."""
        if self.sets is not None:
            return self.sets if given else None
        return None if given is None else str(given)


@dataclass(frozen=True)
class Setting:
    """One setting, declared once: where it is read from, what it fills, how it is checked."""

    key: str  # its name in the environment and .env; for a flag-only input, the flags' key
    attr: str  # the Settings attribute it fills
    help: str  # one line: what it is
    read: Reader  # its value in Settings (after a successful check)
    check: Checker = _no_problems  # its problems, in words, each naming the key
    default: str | None = None  # as written in .env; None: unset
    same_as: str | None = None  # unset, it takes this setting's value
    example: str | None = None  # what .env.example suggests when there is no default
    flag: Flag | None = None
    need: str | None = None  # checked only for the tasks with this need; None: always
    unneeded: Reader | None = None  # its value when not checked (default: read)
    env: bool = True  # read from the environment and .env (False: from a task flag only)
    secret: bool = False  # its value is never shown
    boto3: bool = False  # an AWS_* variable that boto3 reads too: .env's is handed on
    workflow: bool = True  # the release workflow sets it from the repository variable

    @property
    def label(self) -> str:
        """How a message names it: ``--tag``, ``ECR_EXTRA_TAGS (--also-tag)``, ``SMOKE_TEST``."""
        if self.flag is None or self.flag.shared or self.flag.sets is not None:
            return self.key
        return f"{self.key} ({self.flag.option})" if self.env else self.flag.option

    @property
    def flag_help(self) -> str:
        """Its flag's ``--help`` line."""
        if self.flag is None:
            raise ValueError(f"{self.key} has no flag")
        text = self.flag.help or self.help
        if self.flag.sets is not None:
            return f"{text} ({self.key}={self.flag.sets})"
        return f"{text} (overrides {self.key})" if self.env else text

    def flag_value(self, given: str | bool | None) -> str | None:
        """Its value from its flag's (None: the flag sets nothing)."""
        if self.flag is None:
            raise ValueError(f"{self.key} has no flag")
        return self.flag.value(given)

    @property
    def in_workflow(self) -> bool:
        """Set in the release workflow's ``env:`` as ``KEY: ${{ vars.KEY }}``."""
        return self.env and self.workflow


# -- readers: a setting's value in Settings ------------------------------------------------


def _text(src: Sources, setting: Setting) -> str | None:
    return src.get(setting.key)


def _name(src: Sources, setting: Setting) -> str:
    return src.get(setting.key) or ""


def _path(src: Sources, setting: Setting) -> Path:
    return src.path(setting.key)


def _aws_only(src: Sources, setting: Setting) -> str | None:
    """A setting of the real AWS target: the sandbox never reads it."""
    return None if src.sandbox else src.get(setting.key)


def _switch(src: Sources, setting: Setting) -> bool:
    return _parse_bool(src.get(setting.key)) is True


def _require_clean(src: Sources, setting: Setting) -> bool:
    """Its own value when set; unset, whether the run is CI's (``CI=true``, as GitHub
    Actions, GitLab CI and most others set it)."""
    given = _parse_bool(src.get(setting.key))
    return given if given is not None else _parse_bool(src.environ.get("CI")) is True


def _upper(src: Sources, setting: Setting) -> str:
    return src.upper(setting.key)


def _items(src: Sources, setting: Setting) -> tuple[str, ...]:
    return src.items(setting.key)


def _tags(src: Sources, setting: Setting) -> tuple[str, ...]:
    return _unique(src.items(setting.key))


def _upper_or_unset(src: Sources, setting: Setting) -> str | None:
    return src.upper(setting.key) or None


def _count(src: Sources, setting: Setting) -> int | None:
    return _number(src.get(setting.key))


def _seconds(src: Sources, setting: Setting) -> float:
    return float(_number(src.get(setting.key)) or _number(setting.default) or 0)


def _region(src: Sources, setting: Setting) -> str | None:
    return src.region


def _version(src: Sources, setting: Setting) -> str | None:
    return src.version


# -- checks: one per concern, each returning the problems it found ------------------------


def _version_problems(src: Sources, setting: Setting) -> list[str]:
    version, label = src.version, setting.label
    if version is None or version == "":
        return [f"{label} is required: a Docker tag such as v1 or 1.4.2"]
    if not version.isascii() or not re.fullmatch(TAG_RE, version):
        shown = version if len(version) <= 40 else version[:37] + "..."
        return [
            f"{label} {shown!r} is not a valid image tag: use 1 to 128 ASCII letters, digits, "
            "'_', '.' or '-', not starting with '.' or '-' (e.g. v1, 1.4.2)"
        ]
    return _reserved_problems(label, [version])


def _reserved_problems(label: str, tags: Sequence[str]) -> list[str]:
    """A tag named like the release's own candidate tags: the lifecycle rule for candidates
    would expire its image, and the release removes such tags."""
    from ..outside.ecr import CANDIDATE_PREFIX  # imported by every release already

    taken = [tag for tag in tags if tag.startswith(CANDIDATE_PREFIX)]
    if not taken:
        return []
    return [
        f"{label} {taken[0]!r} starts with {CANDIDATE_PREFIX!r}, which the release keeps for "
        "its candidate tags (it removes them, and the lifecycle rule expires their images): "
        "choose another name"
    ]


def _region_problems(src: Sources, setting: Setting) -> list[str]:
    if src.region:
        if re.fullmatch(REGION_RE, src.region):
            return []
        where = "AWS_REGION" if src.get("AWS_REGION") else "the region from the AWS config"
        hint = (
            ": a '#' with no space before it stays in the value (write AWS_REGION=eu-west-1 # note)"
            if "#" in src.region
            else ""
        )
        return [f"{where} {src.region!r} is not an AWS region name such as eu-west-1{hint}"]
    hint = (
        f"add it to {src.env_path}"
        if src.env_file.is_file()
        else f"no {src.env_path} found: copy .env.example to {src.env_path} and fill it in"
    )
    return [f"AWS_REGION is not set (e.g. AWS_REGION=eu-west-1): {hint}"]


def _account_problems(src: Sources, setting: Setting) -> list[str]:
    account_id = None if src.sandbox else src.get(setting.key)  # the sandbox ignores it
    if account_id and not re.fullmatch(ACCOUNT_RE, account_id):
        return [f"AWS_ACCOUNT_ID {account_id!r} must be exactly 12 digits"]
    return []


def _repository_name_problems(name: str) -> list[str]:
    if ".dkr.ecr." in name or name.startswith(("https://", "http://")) or ":" in name:
        short = name.rsplit("/", 1)[-1].split(":", 1)[0]
        return [
            f"ECR_REPOSITORY {name!r} looks like an image URI: give only the repository name "
            f"(e.g. {short!r})"
        ]
    if not 2 <= len(name) <= 256 or not re.fullmatch(REPOSITORY_RE, name):
        why = "must be lowercase" if name != name.lower() else "is not a valid ECR repository name"
        return [
            f"ECR_REPOSITORY {name!r} {why}: 2 to 256 characters of lowercase letters and "
            "digits, separated by '.', '_', '-' or '/' (e.g. widget-server, team/widget-server)"
        ]
    return []


def _repository_problems(src: Sources, setting: Setting) -> list[str]:
    """The name itself, then Docker's limit on the image name it makes in the region."""
    repository, region = src.get(setting.key) or "", src.region
    problems = _repository_name_problems(repository)
    if problems or not region or not re.fullmatch(REGION_RE, region):
        return problems
    problem = reference_name_problem(
        registry_host_for(region, src.get("AWS_ACCOUNT_ID")), repository
    )
    return [problem] if problem else []


def registry_host_for(region: str, account_id: str | None = None) -> str:
    """The ECR registry host of a region (the token's proxyEndpoint names the real one)."""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account_id or '0' * 12}.dkr.ecr.{region}.{suffix}"


def reference_name_problem(host: str, repository: str) -> str | None:
    """Docker's limit on ``host/repository``, which ECR's own 256 characters do not imply."""
    name = f"{host}/{repository}"
    if len(name) <= DOCKER_NAME_MAX:
        return None
    room = DOCKER_NAME_MAX - len(host) - 1
    return (
        f"ECR_REPOSITORY is {len(repository)} characters: with the registry host {host} that "
        f"makes an image name of {len(name)}, and Docker allows {DOCKER_NAME_MAX}: use at most "
        f"{room} characters"
    )


def _image_name_problems(src: Sources, setting: Setting) -> list[str]:
    image_name = src.get(setting.key) or ""
    if re.fullmatch(IMAGE_NAME_RE, image_name):
        return []
    return [
        f"IMAGE_NAME {image_name!r} is not a valid local image name: lowercase letters, "
        "digits and '.', '_', '-' separators (e.g. widget-server)"
    ]


def _unset_or_boolean_problems(src: Sources, setting: Setting) -> list[str]:
    return _boolean_problems(src, setting) if (src.get(setting.key) or "").strip() else []


def _boolean_problems(src: Sources, setting: Setting) -> list[str]:
    key = setting.key
    if _parse_bool(src.get(key)) is None:
        return [f"{key} {src.get(key)!r} is not a boolean: use true or false"]
    return []


def _mutability_problems(src: Sources, setting: Setting) -> list[str]:
    mutability = src.upper("ECR_TAG_MUTABILITY")
    exclusions = src.items("ECR_TAG_MUTABILITY_EXCLUSIONS")
    if mutability not in TAG_MUTABILITY:
        return [
            f"ECR_TAG_MUTABILITY {src.get('ECR_TAG_MUTABILITY')!r} is not one of "
            + ", ".join(TAG_MUTABILITY)
        ]
    if mutability.endswith("_WITH_EXCLUSION"):
        bad = [part for part in exclusions if not re.fullmatch(EXCLUSION_RE, part)]
        if not exclusions or len(exclusions) > 5 or bad:
            return [
                f"ECR_TAG_MUTABILITY={mutability} needs ECR_TAG_MUTABILITY_EXCLUSIONS: 1 to 5 "
                "comma-separated tag filters of letters, digits, '.', '_', '-' and '*' "
                "(e.g. latest,dev-*)"
            ]
    elif exclusions:
        return [
            "ECR_TAG_MUTABILITY_EXCLUSIONS is set but ECR_TAG_MUTABILITY is "
            f"{mutability}: use {mutability}_WITH_EXCLUSION"
        ]
    return []


def _encryption_problems(src: Sources, setting: Setting) -> list[str]:
    encryption = src.upper("ECR_ENCRYPTION")
    kms_key = src.get("ECR_KMS_KEY")
    if encryption not in ENCRYPTION:
        return [
            f"ECR_ENCRYPTION {src.get('ECR_ENCRYPTION')!r} is not one of " + ", ".join(ENCRYPTION)
        ]
    if encryption.startswith("KMS") and not kms_key:
        return [f"ECR_ENCRYPTION={encryption} needs ECR_KMS_KEY (a KMS key ARN, id or alias)"]
    if encryption == "AES256" and kms_key:
        return ["ECR_KMS_KEY is set but ECR_ENCRYPTION is AES256: set ECR_ENCRYPTION=KMS"]
    return []


def _directory_problems(src: Sources, setting: Setting) -> list[str]:
    if src.path(setting.key).is_dir():
        return []
    key = setting.key
    return [f"{key} {src.get(key)!r} is not a directory in the project folder {src.root}"]


def _file_problems(src: Sources, setting: Setting) -> list[str]:
    if src.path(setting.key).is_file():
        return []
    key = setting.key
    return [f"{key} {src.get(key)!r} does not exist in the project folder {src.root}"]


def _tags_problems(src: Sources, setting: Setting) -> list[str]:
    tags, name = src.items(setting.key), setting.label
    bad = [tag for tag in tags if not tag.isascii() or not re.fullmatch(TAG_RE, tag)]
    if bad:
        return [
            f"{name} {bad[0]!r} is not a valid image tag: use 1 to 128 ASCII letters, digits, "
            "'_', '.' or '-', not starting with '.' or '-'"
        ]
    return _reserved_problems(name, tags)


def _required_tags_problems(src: Sources, setting: Setting) -> list[str]:
    if not src.items(setting.key):
        return [
            f"{setting.label} is required: one or more tags, comma-separated (e.g. latest,prod)"
        ]
    return _tags_problems(src, setting)


def _threshold_problems(src: Sources, setting: Setting) -> list[str]:
    from .scan import THRESHOLDS  # the scan's model: not imported by `inv --list`

    value = src.get(setting.key)
    if value is None or value.upper() in THRESHOLDS:
        return []
    return [
        f"{setting.key} {value!r} is not one of {', '.join(THRESHOLDS)}: the lowest severity "
        "that fails the release (leave it empty to only report findings)"
    ]


def _finding_ids_problems(src: Sources, setting: Setting) -> list[str]:
    bad = [item for item in src.items(setting.key) if len(item.split()) > 1]
    if bad:
        return [
            f"{setting.key} {bad[0]!r} is not one finding id: separate the ids with commas "
            "(e.g. CVE-2024-1234,CVE-2023-44487)"
        ]
    return []


def _whole(low: int, high: int, unit: str) -> Checker:
    """A whole number from ``low`` to ``high``, or unset."""

    def problems(src: Sources, setting: Setting) -> list[str]:
        key, value = setting.key, src.get(setting.key)
        if value is None:
            return []
        number = _number(value)
        if number is None or not low <= number <= high:
            return [f"{key} {value!r} must be a whole number of {unit} from {low} to {high}"]
        return []

    return problems


# Every setting, in the order its problems are reported and `inv config` lists it.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "version",
        "version",
        "image tag to release, e.g. v1 or 1.4.2 (required)",
        _version,
        _version_problems,
        flag=Flag("version"),
        need="version",
        env=False,
    ),
    Setting(
        "AWS_REGION",
        "region",
        "AWS region",
        _region,
        _region_problems,
        example="eu-west-1",
        flag=Flag("region", shared=True),
        need="aws",
        unneeded=_text,  # a task with no AWS call does not ask the AWS config
        boto3=True,
        workflow=False,  # configure-aws-credentials sets it, from the AWS_REGION variable
    ),
    Setting(
        "AWS_PROFILE",
        "profile",
        "AWS profile",
        _aws_only,
        flag=Flag("profile", shared=True),
        boto3=True,
        workflow=False,  # a CI runner has no AWS profiles
    ),
    Setting(
        "AWS_ACCOUNT_ID",
        "account_id",
        "the 12-digit account the registry must belong to",
        _aws_only,
        _account_problems,
    ),
    Setting(
        "ECR_REPOSITORY",
        "repository",
        "ECR repository name",
        _name,
        _repository_problems,
        default="widget-server",
        flag=Flag("repository", shared=True),
    ),
    Setting(
        "IMAGE_NAME",
        "image_name",
        "local image name",
        _name,
        _image_name_problems,
        same_as="ECR_REPOSITORY",
    ),
    Setting(
        "ECR_SCAN_ON_PUSH",
        "scan_on_push",
        "scan images on push (new repositories)",
        _switch,
        _boolean_problems,
        default="true",
    ),
    Setting(
        "ECR_TAG_MUTABILITY",
        "tag_mutability",
        "whether a tag may move (new repositories)",
        _upper,
        _mutability_problems,  # and its exclusions
        default="IMMUTABLE",
    ),
    Setting(
        "ECR_TAG_MUTABILITY_EXCLUSIONS",
        "tag_mutability_exclusions",
        "tag filters exempt from the mutability rule",
        _items,
    ),
    Setting(
        "ECR_ENCRYPTION",
        "encryption",
        "AES256, KMS or KMS_DSSE (new repositories)",
        _upper,
        _encryption_problems,  # and its KMS key
        default="AES256",
    ),
    Setting("ECR_KMS_KEY", "kms_key", "KMS key ARN, id or alias", _text),
    Setting(
        "BUILD_CONTEXT",
        "build_context",
        "build context directory, from the project folder",
        _path,
        _directory_problems,
        default=".",
        need="build",
    ),
    Setting(
        "DOCKERFILE",
        "dockerfile",
        "path of the Dockerfile, from the project folder",
        _path,
        _file_problems,
        default="Dockerfile",
        need="build",
    ),
    Setting("BASE_IMAGE", "base_image", "the BASE_IMAGE build argument", _text),
    Setting(
        "SECRET_SCAN_ALLOW",
        "secret_scan_allow",
        "files that look like credentials but are meant to ship",
        _items,
    ),
    Setting(
        "ECR_EXTRA_TAGS",
        "extra_tags",
        "after the verified push, also point these tags at it, e.g. latest",
        _tags,
        _tags_problems,
        flag=Flag("also_tag"),
    ),
    Setting(
        "tags",
        "tags",
        "tags to point at the released VERSION, comma-separated, e.g. latest,prod (required)",
        _tags,
        _required_tags_problems,
        flag=Flag("tag"),
        need="tags",
        env=False,
    ),
    Setting(
        "SMOKE_TEST",
        "smoke_test",
        "smoke-test the image before the push",
        _switch,
        _boolean_problems,
        default="true",
        flag=Flag(
            "no_smoke", help="skip the smoke test of the image before the push", sets="false"
        ),
    ),
    Setting(
        "SMOKE_TIMEOUT",
        "smoke_timeout",
        "seconds the image has to become healthy",
        _seconds,
        _whole(1, 3600, "seconds"),
        default="60",
    ),
    Setting(
        "DOCKER_IDLE_TIMEOUT",
        "docker_idle_timeout",
        "seconds a docker build, push or pull may print nothing before it is stopped",
        _seconds,
        _whole(10, 86400, "seconds"),
        default="600",
    ),
    Setting(
        "SCAN_TIMEOUT",
        "scan_timeout",
        "seconds the scan gate waits for ECR's scan of the pushed image",
        _seconds,
        _whole(10, 3600, "seconds"),
        default="300",
    ),
    Setting(
        "SCAN_FAIL_ON",
        "scan_fail_on",
        "the lowest scan finding severity that fails the release: CRITICAL, HIGH, MEDIUM or "
        "LOW (unset: findings are reported only)",
        _upper_or_unset,
        _threshold_problems,
        example="HIGH",
    ),
    Setting(
        "SCAN_IGNORE",
        "scan_ignore",
        "scan finding ids accepted by the scan gate (shown as ignored), comma-separated",
        _items,
        _finding_ids_problems,
    ),
    Setting(
        "REQUIRE_CLEAN",
        "require_clean",
        "refuse to release uncommitted changes that reach the image (unset: refuse when "
        "CI=true, warn otherwise)",
        _require_clean,
        _unset_or_boolean_problems,
        example="true",
        flag=Flag("require_clean", sets="true"),
        need="build",
        workflow=False,  # CI=true already refuses
    ),
    Setting(
        "ALLOW_DIRTY",
        "allow_dirty",
        "release uncommitted changes even where a clean tree is required (said in the summary)",
        _switch,
        _boolean_problems,
        default="false",
        flag=Flag("allow_dirty", sets="true"),
        need="build",
        workflow=False,
    ),
    Setting(
        "SANDBOX",
        "sandbox",
        "run against the local ECR sandbox on this machine: no AWS account, nothing sent to AWS",
        _switch,
        _boolean_problems,
        default="false",
        flag=Flag("sandbox", shared=True, sets="true"),
        workflow=False,  # the release workflow releases to AWS
    ),
    Setting(
        "SANDBOX_REGISTRY_IMAGE",
        "sandbox_registry_image",
        "the image the sandbox runs its registry from (CNCF distribution)",
        _name,
        default="registry:2",
        workflow=False,
    ),
    Setting(
        "ECR_EXPIRE_UNTAGGED_DAYS",
        "expire_untagged_days",
        "expire untagged images pushed more than N days ago",
        _count,
        _whole(1, 3650, "days"),
    ),
)
DECLARED: Mapping[str, Setting] = {setting.key: setting for setting in SETTINGS}
# The keys read from the environment and .env, and their defaults.
KEYS = tuple(setting.key for setting in SETTINGS if setting.env)
DEFAULTS: Mapping[str, str] = {
    setting.key: setting.default for setting in SETTINGS if setting.default is not None
}
# The task flags that set a setting, by flag name.
FLAGS: Mapping[str, Setting] = {
    setting.flag.name: setting for setting in SETTINGS if setting.flag is not None
}

# What each task needs checked besides the settings every task checks: the `need`s of
# the settings above. A setting whose need a task lacks is neither checked nor required.
TASK_NEEDS: Mapping[str, frozenset[str]] = {
    "build": frozenset({"version", "build"}),
    "ensure-repo": frozenset({"aws"}),
    "login": frozenset({"aws"}),
    "tag": frozenset({"version", "aws"}),
    "push": frozenset({"version", "aws"}),
    "release": frozenset({"version", "aws", "build"}),
    "promote": frozenset({"version", "aws", "tags"}),
    "config": frozenset({"aws", "build"}),
    "doctor": frozenset({"aws", "build"}),
    "sandbox": frozenset(),
    "scan": frozenset({"version", "aws"}),
    "plan": frozenset({"version", "aws", "build"}),
}


def is_boto3_variable(key: str) -> bool:
    """An ``AWS_*`` variable boto3 reads: every one but the suite's own (AWS_ACCOUNT_ID)."""
    setting = DECLARED.get(key)
    return key.startswith("AWS_") and (setting is None or setting.boto3)


def aws_environment(environ: Mapping[str, str], aws_env: Mapping[str, str]) -> dict[str, str]:
    """The environment as botocore sees it while ``ecr.connect`` makes its client: ``.env``'s
    AWS variables (``aws_env``) fill the ones the environment lacks or leaves empty."""
    return {**environ, **aws_env}


# -- the sources ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sources:
    """Where each setting comes from, in precedence order: flags, environment, .env, default.

    ``flags`` are keyed by setting key. Relative paths in settings are taken from
    ``root``, the project's folder.
    """

    flags: Mapping[str, str | bool | None]
    environ: Mapping[str, str]
    dotenv: Mapping[str, str]
    env_path: Path  # as the user knows it, for messages
    root: Path
    # A declared service's values (model/services.py), above the environment and .env.
    declared: Mapping[str, str] = field(default_factory=dict)
    declared_by: str = ""  # where they come from, in words

    @classmethod
    def read(
        cls,
        flags: Mapping[str, str | bool | None],
        environ: Mapping[str, str],
        env_path: Path,
        root: Path,
        *,
        env_file_required: bool = False,
        service: Service | None = None,
    ) -> Sources:
        """Read ``env_path`` (relative to ``root``) with ``dotenv_values``: nothing is exported.
        ``service``: a declared service, whose values stand above the environment and .env."""
        full = root / env_path
        if env_file_required and not full.is_file():
            raise SettingsError(f"--env-file {str(env_path)!r} does not exist")
        dotenv: dict[str, str] = {}
        if full.is_file():
            from dotenv import dotenv_values

            try:
                values = dotenv_values(full, encoding="utf-8")
            except (UnicodeDecodeError, OSError) as exc:
                raise SettingsError(
                    f"cannot read {env_path}: {exc}; save it as UTF-8 text"
                ) from exc
            dotenv = {k: v for k, v in values.items() if v is not None}
        if service is None:
            return cls(flags, environ, dotenv, env_path, root)
        return cls(flags, environ, dotenv, env_path, root, service.values, service.origin)

    @property
    def env_file(self) -> Path:
        return self.root / self.env_path

    def path(self, key: str) -> Path:
        """A path setting, taken from the project's folder when relative."""
        return self.root / (self.get(key) or DEFAULTS[key])

    def get(self, key: str) -> str | None:
        """The value that wins; empty values mean unset."""
        return self.lookup(key)[0]

    def lookup(self, key: str) -> tuple[str | None, str | None]:
        """The value that wins and where it comes from: "flag", a declared service's
        table, "environment", ".env", "default" (or "default: KEY" for one that takes
        another's value), or None when the key is unset."""
        flag = self.flags.get(key)
        if flag is not None and flag != "":
            return str(flag), "flag"
        if key in self.declared:
            return self.declared[key], self.declared_by
        setting = DECLARED.get(key)
        if setting is None or setting.env:
            for source, origin in ((self.environ, "environment"), (self.dotenv, ".env")):
                value = source.get(key)
                if value is not None and value.strip() != "":
                    return value.strip(), origin
        if setting is not None and setting.same_as is not None:
            return self.get(setting.same_as), f"default: {setting.same_as}"
        default = DEFAULTS.get(key)
        return default, "default" if default is not None else None

    def found(self, key: str) -> tuple[str | None, str | None]:
        """What a run uses for a setting and where it comes from: :meth:`lookup`, and for
        AWS_REGION also the AWS config (source "AWS config")."""
        return self.region_lookup if key == "AWS_REGION" else self.lookup(key)

    def upper(self, key: str) -> str:
        return (self.get(key) or "").upper()

    def items(self, key: str) -> tuple[str, ...]:
        """A comma-separated value as its non-empty parts."""
        return tuple(part.strip() for part in (self.get(key) or "").split(",") if part.strip())

    @property
    def sandbox(self) -> bool:
        """Does this run target the local sandbox (``--sandbox``, ``SANDBOX=true``)?"""
        return _parse_bool(self.get("SANDBOX")) is True

    @property
    def sandbox_problem(self) -> bool:
        """Is SANDBOX set to something that is not a boolean (``ture``)?"""
        return _parse_bool(self.get("SANDBOX")) is None

    @functools.cached_property
    def aws_env(self) -> dict[str, str]:
        """Standard AWS_* variables from .env that the environment does not set: an empty
        or blank value in the environment counts as unset, as everywhere in the suite.
        None for the sandbox: it never reads AWS credentials or endpoints."""
        if self.sandbox:
            return {}
        return {
            key: value
            for key, value in self.dotenv.items()
            if is_boto3_variable(key)
            and (self.environ.get(key) or "").strip() == ""
            and value.strip() != ""  # `AWS_PROFILE=` means unset, not a profile named ""
        }

    @functools.cached_property
    def region_lookup(self) -> tuple[str | None, str | None]:
        """The region and its source: AWS_REGION as :meth:`lookup` finds it, else what the
        AWS configuration chain gives (``AWS_DEFAULT_REGION``, the profile's ``region``),
        source "AWS config"; (None, None) when there is none."""
        value, source = self.lookup("AWS_REGION")
        if self.sandbox:  # the sandbox reads no AWS setting: only --region names its region
            return (value, source) if source == "flag" else (SANDBOX_REGION, "sandbox default")
        if value:
            return value, source
        value = _region_from_aws_config(
            aws_environment(self.environ, self.aws_env), self.get("AWS_PROFILE")
        )
        return (value, "AWS config") if value else (None, None)

    @property
    def region(self) -> str | None:
        """AWS_REGION, else what the AWS configuration chain gives."""
        return self.region_lookup[0]

    @property
    def region_origin(self) -> str:
        """Where the region comes from, in words: "--region", "AWS_REGION in the
        environment", "AWS_REGION in .env" (the settings file's name), "the AWS config";
        "" when there is no region."""
        source = self.region_lookup[1]
        flag = DECLARED["AWS_REGION"].flag
        words = {
            "flag": flag.option if flag else "a flag",
            "environment": "AWS_REGION in the environment",
            ".env": f"AWS_REGION in {self.env_path}",
            "AWS config": "the AWS config",
            "sandbox default": "the sandbox's default",
        }
        return words.get(source or "", "")

    @property
    def version(self) -> str | None:
        version = self.flags.get("version")
        return None if version is None else str(version)

    @property
    def unknown_keys(self) -> list[str]:
        """The keys of the settings file that the suite does not read, sorted."""
        return sorted(key for key in self.dotenv if key not in KEYS and not key.startswith("AWS_"))


def load_settings(
    flags: Mapping[str, str | bool | None] | None = None,
    *,
    task: str,
    environ: Mapping[str, str] | None = None,
    env_file: str | Path = ".env",
    env_file_required: bool = False,
    root: Path | None = None,
    service: Service | None = None,
) -> Settings:
    """Merge flags, environment, ``.env`` and defaults; validate; return frozen settings.

    ``flags`` are keyed by setting key (``AWS_REGION``, ``version``, ``tags``...).
    ``task`` says what is checked besides what every task checks (:data:`TASK_NEEDS`):
    a version, a region, the build paths, promote's tags. ``root`` is the project's
    folder (default: the current one): ``env_file``, ``DOCKERFILE`` and
    ``BUILD_CONTEXT`` are taken from it when relative. ``env_file_required`` makes a
    missing ``env_file`` an error (it was named explicitly). ``service``: the settings of
    a declared service (``model/services.py``); its problems name it.
    """
    if task not in TASK_NEEDS:
        raise ValueError(f"unknown task {task!r}: declare its needs in TASK_NEEDS")
    src = Sources.read(
        flags or {},
        os.environ if environ is None else environ,
        Path(env_file),
        Path.cwd() if root is None else root,
        env_file_required=env_file_required,
        service=service,
    )
    if service is None:
        return settings_from(src, task)
    try:
        found = settings_from(src, task)
    except SettingsError as exc:
        raise SettingsError(f"service {service.name}: {exc.message}") from exc
    return replace(found, service=service.name, build_args=dict(service.build_args))


def settings_from(src: Sources, task: str) -> Settings:
    """The validated settings of ``task`` from sources already read (see :func:`load_settings`);
    one ``SettingsError`` line naming every problem."""
    needs = TASK_NEEDS[task]
    checked = {s.key for s in SETTINGS if s.need is None or s.need in needs}
    problems = [problem for s in SETTINGS if s.key in checked for problem in s.check(src, s)]
    if problems:
        raise SettingsError("; ".join(problems))
    values = {
        s.attr: (s.read if s.key in checked or s.unneeded is None else s.unneeded)(src, s)
        for s in SETTINGS
    }
    return Settings(
        **values,
        aws_env=src.aws_env,
        env_file=src.env_file if src.env_file.is_file() else None,
        warnings=tuple(f"{src.env_path}: unknown key {key} is ignored" for key in src.unknown_keys),
    )


# -- helpers -------------------------------------------------------------------------------


def _number(value: str | None) -> int | None:
    text = (value or "").strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _unique(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _parse_bool(value: str | None) -> bool | None:
    text = (value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def _region_from_aws_config(env: Mapping[str, str], profile: str | None) -> str | None:
    """The region the AWS configuration chain would give, read without importing botocore."""
    import configparser

    if env.get("AWS_DEFAULT_REGION"):
        return env["AWS_DEFAULT_REGION"]
    config_file = Path(env.get("AWS_CONFIG_FILE") or "~/.aws/config").expanduser()
    if not config_file.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(config_file, encoding="utf-8")
    except configparser.Error:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(
            f"cannot read the AWS config file {config_file}: {exc}; save it as UTF-8 text"
        ) from exc
    name = profile or env.get("AWS_PROFILE") or "default"
    section = "default" if name == "default" else f"profile {name}"
    return parser.get(section, "region", fallback=None) or None
