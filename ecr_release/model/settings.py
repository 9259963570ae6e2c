"""Settings: read once from flags, the environment, ``.env`` and defaults, validated, frozen.

Precedence is task flag > process environment > ``.env`` > default. ``.env`` is
read with ``dotenv_values`` so ``os.environ`` is never changed; the standard AWS
variables found there (``AWS_ENDPOINT_URL``, keys, ...) are kept apart in
``Settings.aws_env`` and handed to boto3 by ``ecr.connect``.

Every problem is collected and reported in one ``SettingsError`` line, before
any docker command or AWS call. This module does not talk to AWS or Docker.
"""

from __future__ import annotations

import configparser
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from ..errors import SettingsError

# Docker's tag grammar; ECR's API allows 300 characters but docker refuses more than 128.
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# ECR's repository-name pattern (2 to 256 characters, lowercase).
REPOSITORY_RE = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
# Docker's local image name: optional registry host[:port], lowercase path components.
IMAGE_NAME_RE = re.compile(
    r"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
ACCOUNT_RE = re.compile(r"[0-9]{12}")
# AWS region names: eu-west-1, us-gov-west-1, us-isob-east-1, ap-southeast-4, ...
REGION_RE = re.compile(r"[a-z]{2}(?:-[a-z]+){1,3}-[0-9]{1,2}")
# Docker refuses a reference name (registry host, '/', repository) longer than this.
DOCKER_NAME_MAX = 255
# ECR's ImageTagMutabilityExclusionFilterValue.
EXCLUSION_RE = re.compile(r"[0-9a-zA-Z._*-]{1,128}")

TAG_MUTABILITY = ("IMMUTABLE", "MUTABLE", "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION")
ENCRYPTION = ("AES256", "KMS", "KMS_DSSE")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

# Keys this suite reads. AWS_REGION and AWS_PROFILE are also boto3's own.
KEYS = (
    "AWS_REGION",
    "AWS_PROFILE",
    "AWS_ACCOUNT_ID",
    "ECR_REPOSITORY",
    "IMAGE_NAME",
    "DOCKERFILE",
    "BUILD_CONTEXT",
    "BASE_IMAGE",
    "ECR_SCAN_ON_PUSH",
    "ECR_TAG_MUTABILITY",
    "ECR_ENCRYPTION",
    "ECR_KMS_KEY",
    "ECR_TAG_MUTABILITY_EXCLUSIONS",
    "ECR_EXTRA_TAGS",
    "ECR_EXPIRE_UNTAGGED_DAYS",
    "SMOKE_TEST",
    "SMOKE_TIMEOUT",
    "SECRET_SCAN_ALLOW",
)
DEFAULTS: Mapping[str, str] = {
    "ECR_REPOSITORY": "widget-server",
    "DOCKERFILE": "Dockerfile",
    "BUILD_CONTEXT": ".",
    "ECR_SCAN_ON_PUSH": "true",
    "ECR_TAG_MUTABILITY": "IMMUTABLE",
    "ECR_ENCRYPTION": "AES256",
    "SMOKE_TEST": "true",
    "SMOKE_TIMEOUT": "60",
}
# The only key that must be set; the AWS configuration chain may supply it.
REQUIRED = ("AWS_REGION",)
# The suite's own AWS_* key: boto3 does not know it, so it is not passed on.
_OWN_AWS_KEYS = {"AWS_ACCOUNT_ID"}


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one run. Build it with :func:`load_settings`."""

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
    version: str | None = None
    tags: tuple[str, ...] = ()  # promote's --tag
    # Standard AWS_* variables from .env that the environment does not override:
    # boto3 reads them as if they were set in the environment. May hold keys: no repr.
    aws_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    env_file: Path | None = None
    warnings: tuple[str, ...] = ()

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


@dataclass(frozen=True)
class Sources:
    """Where each setting comes from, in precedence order: flags, environment, .env, default.

    Relative paths in settings are taken from ``root``, the project's folder.
    """

    flags: Mapping[str, str | bool | None]
    environ: Mapping[str, str]
    dotenv: Mapping[str, str]
    env_path: Path  # as the user knows it, for messages
    root: Path

    @classmethod
    def read(
        cls,
        flags: Mapping[str, str | bool | None],
        environ: Mapping[str, str],
        env_path: Path,
        root: Path,
        *,
        env_file_required: bool = False,
    ) -> Sources:
        """Read ``env_path`` (relative to ``root``) with ``dotenv_values``: nothing is exported."""
        full = root / env_path
        if env_file_required and not full.is_file():
            raise SettingsError(f"--env-file {str(env_path)!r} does not exist")
        dotenv: dict[str, str] = {}
        if full.is_file():
            try:
                values = dotenv_values(full, encoding="utf-8")
            except (UnicodeDecodeError, OSError) as exc:
                raise SettingsError(
                    f"cannot read {env_path}: {exc}; save it as UTF-8 text"
                ) from exc
            dotenv = {k: v for k, v in values.items() if v is not None}
        return cls(flags, environ, dotenv, env_path, root)

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
        """The value that wins and where it comes from: "flag", "environment", ".env",
        "default", or None when the key is unset."""
        flag = self.flags.get(key)
        if flag is not None and flag != "":
            return str(flag), "flag"
        for source, origin in ((self.environ, "environment"), (self.dotenv, ".env")):
            value = source.get(key)
            if value is not None and value.strip() != "":
                return value.strip(), origin
        default = DEFAULTS.get(key)
        return default, "default" if default is not None else None

    def upper(self, key: str) -> str:
        return (self.get(key) or "").upper()

    def items(self, key: str) -> tuple[str, ...]:
        """A comma-separated value as its non-empty parts."""
        return tuple(part.strip() for part in (self.get(key) or "").split(",") if part.strip())

    @functools.cached_property
    def aws_env(self) -> dict[str, str]:
        """Standard AWS_* variables from .env that the environment does not set."""
        return {
            key: value
            for key, value in self.dotenv.items()
            if key.startswith("AWS_")
            and key not in _OWN_AWS_KEYS
            and key not in self.environ
            and value.strip() != ""  # `AWS_PROFILE=` means unset, not a profile named ""
        }

    @functools.cached_property
    def region(self) -> str | None:
        """AWS_REGION, else what the AWS configuration chain gives."""
        return self.get("AWS_REGION") or _region_from_aws_config(
            {**self.aws_env, **self.environ}, self.get("AWS_PROFILE")
        )

    @property
    def version(self) -> str | None:
        version = self.flags.get("version")
        return None if version is None else str(version)


def load_settings(
    flags: Mapping[str, str | bool | None] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    env_file: str | Path = ".env",
    need_aws: bool = True,
    need_build: bool = False,
    need_version: bool = False,
    need_tags: bool = False,
    env_file_required: bool = False,
    root: Path | None = None,
) -> Settings:
    """Merge flags, environment, ``.env`` and defaults; validate; return frozen settings.

    ``root`` is the project's folder (default: the current one): ``env_file``,
    ``DOCKERFILE`` and ``BUILD_CONTEXT`` are taken from it when relative.
    ``need_aws`` asks for a region; ``need_build`` checks the Dockerfile and build
    context exist; ``need_version`` checks ``flags["version"]`` and ``need_tags``
    ``flags["tags"]`` (promote's ``--tag``); ``env_file_required`` makes a missing
    ``env_file`` an error (it was named explicitly).
    """
    src = Sources.read(
        flags or {},
        os.environ if environ is None else environ,
        Path(env_file),
        Path.cwd() if root is None else root,
        env_file_required=env_file_required,
    )
    problems = [
        *(_version_problems(src.version) if need_version else []),
        *(_region_problems(src) if need_aws else []),
        *_account_problems(src),
        *_repository_problems(src.get("ECR_REPOSITORY") or ""),
        *_reference_length_problems(src),
        *_image_name_problems(src),
        *_boolean_problems(src, "ECR_SCAN_ON_PUSH"),
        *_mutability_problems(src),
        *_encryption_problems(src),
        *(_build_path_problems(src) if need_build else []),
        *_tags_problems(src, "ECR_EXTRA_TAGS", "ECR_EXTRA_TAGS (--also-tag)"),
        *(_tags_problems(src, "tags", "--tag", required=True) if need_tags else []),
        *_boolean_problems(src, "SMOKE_TEST"),
        *_number_problems(src, "SMOKE_TIMEOUT", 1, 3600, "seconds"),
        *_number_problems(src, "ECR_EXPIRE_UNTAGGED_DAYS", 1, 3650, "days"),
    ]
    if problems:
        raise SettingsError("; ".join(problems))
    repository = src.get("ECR_REPOSITORY") or ""
    return Settings(
        region=src.region if need_aws else src.get("AWS_REGION"),
        profile=src.get("AWS_PROFILE"),
        account_id=src.get("AWS_ACCOUNT_ID"),
        repository=repository,
        image_name=src.get("IMAGE_NAME") or repository,
        dockerfile=src.path("DOCKERFILE"),
        build_context=src.path("BUILD_CONTEXT"),
        base_image=src.get("BASE_IMAGE"),
        scan_on_push=_parse_bool(src.get("ECR_SCAN_ON_PUSH")) is True,
        tag_mutability=src.upper("ECR_TAG_MUTABILITY"),
        encryption=src.upper("ECR_ENCRYPTION"),
        kms_key=src.get("ECR_KMS_KEY"),
        tag_mutability_exclusions=src.items("ECR_TAG_MUTABILITY_EXCLUSIONS"),
        secret_scan_allow=src.items("SECRET_SCAN_ALLOW"),
        extra_tags=_unique(src.items("ECR_EXTRA_TAGS")),
        expire_untagged_days=_number(src.get("ECR_EXPIRE_UNTAGGED_DAYS")),
        smoke_test=_parse_bool(src.get("SMOKE_TEST")) is True,
        smoke_timeout=float(_number(src.get("SMOKE_TIMEOUT")) or 60),
        tags=_unique(src.items("tags")) if need_tags else (),
        version=src.version,
        aws_env=src.aws_env,
        env_file=src.env_file if src.env_file.is_file() else None,
        warnings=tuple(
            f"{src.env_path}: unknown key {key} is ignored"
            for key in sorted(src.dotenv)
            if key not in KEYS and not key.startswith("AWS_")
        ),
    )


# -- one check per concern, each returning the problems it found -------------------


def _version_problems(version: str | None) -> list[str]:
    if version is None or version == "":
        return ["--version is required: a Docker tag such as v1 or 1.4.2"]
    if not version.isascii() or not TAG_RE.fullmatch(version):
        shown = version if len(version) <= 40 else version[:37] + "..."
        return [
            f"--version {shown!r} is not a valid image tag: use 1 to 128 ASCII letters, digits, "
            "'_', '.' or '-', not starting with '.' or '-' (e.g. v1, 1.4.2)"
        ]
    return []


def _region_problems(src: Sources) -> list[str]:
    if src.region:
        if REGION_RE.fullmatch(src.region):
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


def _account_problems(src: Sources) -> list[str]:
    account_id = src.get("AWS_ACCOUNT_ID")
    if account_id and not ACCOUNT_RE.fullmatch(account_id):
        return [f"AWS_ACCOUNT_ID {account_id!r} must be exactly 12 digits"]
    return []


def _repository_problems(name: str) -> list[str]:
    if ".dkr.ecr." in name or name.startswith(("https://", "http://")) or ":" in name:
        short = name.rsplit("/", 1)[-1].split(":", 1)[0]
        return [
            f"ECR_REPOSITORY {name!r} looks like an image URI: give only the repository name "
            f"(e.g. {short!r})"
        ]
    if not 2 <= len(name) <= 256 or not REPOSITORY_RE.fullmatch(name):
        why = "must be lowercase" if name != name.lower() else "is not a valid ECR repository name"
        return [
            f"ECR_REPOSITORY {name!r} {why}: 2 to 256 characters of lowercase letters and "
            "digits, separated by '.', '_', '-' or '/' (e.g. widget-server, team/widget-server)"
        ]
    return []


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


def _reference_length_problems(src: Sources) -> list[str]:
    repository, region = src.get("ECR_REPOSITORY") or "", src.region
    if not region or not REGION_RE.fullmatch(region) or _repository_problems(repository):
        return []
    problem = reference_name_problem(
        registry_host_for(region, src.get("AWS_ACCOUNT_ID")), repository
    )
    return [problem] if problem else []


def _image_name_problems(src: Sources) -> list[str]:
    image_name = src.get("IMAGE_NAME") or src.get("ECR_REPOSITORY") or ""
    if IMAGE_NAME_RE.fullmatch(image_name):
        return []
    return [
        f"IMAGE_NAME {image_name!r} is not a valid local image name: lowercase letters, "
        "digits and '.', '_', '-' separators (e.g. widget-server)"
    ]


def _boolean_problems(src: Sources, key: str) -> list[str]:
    if _parse_bool(src.get(key)) is None:
        return [f"{key} {src.get(key)!r} is not a boolean: use true or false"]
    return []


def _mutability_problems(src: Sources) -> list[str]:
    mutability = src.upper("ECR_TAG_MUTABILITY")
    exclusions = src.items("ECR_TAG_MUTABILITY_EXCLUSIONS")
    if mutability not in TAG_MUTABILITY:
        return [
            f"ECR_TAG_MUTABILITY {src.get('ECR_TAG_MUTABILITY')!r} is not one of "
            + ", ".join(TAG_MUTABILITY)
        ]
    if mutability.endswith("_WITH_EXCLUSION"):
        bad = [part for part in exclusions if not EXCLUSION_RE.fullmatch(part)]
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


def _encryption_problems(src: Sources) -> list[str]:
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


def _build_path_problems(src: Sources) -> list[str]:
    problems = []
    where = f"in the project folder {src.root}"
    if not src.path("BUILD_CONTEXT").is_dir():
        problems.append(f"BUILD_CONTEXT {src.get('BUILD_CONTEXT')!r} is not a directory {where}")
    if not src.path("DOCKERFILE").is_file():
        problems.append(f"DOCKERFILE {src.get('DOCKERFILE')!r} does not exist {where}")
    return problems


def _tags_problems(src: Sources, key: str, name: str, *, required: bool = False) -> list[str]:
    tags = src.items(key)
    if required and not tags:
        return [f"{name} is required: one or more tags, comma-separated (e.g. latest,prod)"]
    bad = [tag for tag in tags if not tag.isascii() or not TAG_RE.fullmatch(tag)]
    if bad:
        return [
            f"{name} {bad[0]!r} is not a valid image tag: use 1 to 128 ASCII letters, digits, "
            "'_', '.' or '-', not starting with '.' or '-'"
        ]
    return []


def _number_problems(src: Sources, key: str, low: int, high: int, unit: str) -> list[str]:
    value = src.get(key)
    if value is None:
        return []
    number = _number(value)
    if number is None or not low <= number <= high:
        return [f"{key} {value!r} must be a whole number of {unit} from {low} to {high}"]
    return []


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
