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
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from .errors import SettingsError

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
)
DEFAULTS: Mapping[str, str] = {
    "ECR_REPOSITORY": "widget-server",
    "DOCKERFILE": "Dockerfile",
    "BUILD_CONTEXT": ".",
    "ECR_SCAN_ON_PUSH": "true",
    "ECR_TAG_MUTABILITY": "IMMUTABLE",
    "ECR_ENCRYPTION": "AES256",
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
    version: str | None = None
    # Standard AWS_* variables from .env that the environment does not override:
    # boto3 reads them as if they were set in the environment. May hold keys: no repr.
    aws_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    env_file: Path | None = None
    warnings: tuple[str, ...] = ()

    def image(self, version: str) -> str:
        """The local image reference for a version."""
        return f"{self.image_name}:{version}"


def _version_problem(version: str | None) -> str | None:
    if version is None or version == "":
        return "--version is required: a Docker tag such as v1 or 1.4.2"
    if not version.isascii() or not TAG_RE.fullmatch(version):
        shown = version if len(version) <= 40 else version[:37] + "..."
        return (
            f"--version {shown!r} is not a valid image tag: use 1 to 128 ASCII letters, digits, "
            "'_', '.' or '-', not starting with '.' or '-' (e.g. v1, 1.4.2)"
        )
    return None


def load_settings(
    flags: Mapping[str, str | bool | None] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    env_file: str | Path = ".env",
    need_aws: bool = True,
    need_build: bool = False,
    need_version: bool = False,
    env_file_required: bool = False,
) -> Settings:
    """Merge flags, environment, ``.env`` and defaults; validate; return frozen settings.

    ``need_aws`` asks for a region; ``need_build`` checks the Dockerfile and build
    context exist; ``need_version`` checks ``flags["version"]``; ``env_file_required``
    makes a missing ``env_file`` an error (it was named explicitly).
    """
    environ = os.environ if environ is None else environ
    flags = flags or {}
    env_path = Path(env_file)
    dotenv: dict[str, str] = {}
    if env_file_required and not env_path.is_file():
        raise SettingsError(f"--env-file {str(env_path)!r} does not exist")
    if env_path.is_file():
        try:
            values = dotenv_values(env_path, encoding="utf-8")
        except (UnicodeDecodeError, OSError) as exc:
            raise SettingsError(f"cannot read {env_path}: {exc}; save it as UTF-8 text") from exc
        dotenv = {k: v for k, v in values.items() if v is not None}

    def get(key: str) -> str | None:
        flag = flags.get(key)
        if flag is not None and flag != "":
            return str(flag)
        for source in (environ, dotenv):
            value = source.get(key)
            if value is not None and value.strip() != "":
                return value.strip()
        return DEFAULTS.get(key)

    problems: list[str] = []
    warnings: list[str] = []
    aws_env = {
        key: value
        for key, value in dotenv.items()
        if key.startswith("AWS_")
        and key not in _OWN_AWS_KEYS
        and key not in environ
        and value.strip() != ""  # `AWS_PROFILE=` means unset, not a profile named ""
    }
    merged_env = {**aws_env, **environ}
    for key in sorted(dotenv):
        if key not in KEYS and not key.startswith("AWS_"):
            warnings.append(f"{env_path}: unknown key {key} is ignored")

    version = flags.get("version")
    version = None if version is None else str(version)
    if need_version:
        problem = _version_problem(version)
        if problem:
            problems.append(problem)

    region = get("AWS_REGION")
    profile = get("AWS_PROFILE")
    if need_aws and not region:
        region = _region_from_aws_config(merged_env, profile)
        if not region:
            missing = "AWS_REGION is not set"
            hint = (
                f"add it to {env_path}"
                if env_path.is_file()
                else f"no {env_path} found: copy .env.example to {env_path} and fill it in"
            )
            problems.append(f"{missing} (e.g. AWS_REGION=eu-west-1): {hint}")

    account_id = get("AWS_ACCOUNT_ID")
    if account_id and not ACCOUNT_RE.fullmatch(account_id):
        problems.append(f"AWS_ACCOUNT_ID {account_id!r} must be exactly 12 digits")

    repository = get("ECR_REPOSITORY") or ""
    problems.extend(_repository_problems(repository))

    image_name = get("IMAGE_NAME") or repository
    if not IMAGE_NAME_RE.fullmatch(image_name):
        problems.append(
            f"IMAGE_NAME {image_name!r} is not a valid local image name: lowercase letters, "
            "digits and '.', '_', '-' separators (e.g. widget-server)"
        )

    scan_on_push = _bool("ECR_SCAN_ON_PUSH", get("ECR_SCAN_ON_PUSH"), problems)
    tag_mutability = (get("ECR_TAG_MUTABILITY") or "").upper()
    if tag_mutability not in TAG_MUTABILITY:
        problems.append(
            f"ECR_TAG_MUTABILITY {get('ECR_TAG_MUTABILITY')!r} is not one of "
            + ", ".join(TAG_MUTABILITY)
        )
    exclusions = tuple(
        part.strip()
        for part in (get("ECR_TAG_MUTABILITY_EXCLUSIONS") or "").split(",")
        if part.strip()
    )
    if tag_mutability.endswith("_WITH_EXCLUSION"):
        bad = [part for part in exclusions if not EXCLUSION_RE.fullmatch(part)]
        if not exclusions or len(exclusions) > 5 or bad:
            problems.append(
                f"ECR_TAG_MUTABILITY={tag_mutability} needs ECR_TAG_MUTABILITY_EXCLUSIONS: 1 to 5 "
                "comma-separated tag filters of letters, digits, '.', '_', '-' and '*' "
                "(e.g. latest,dev-*)"
            )
    elif exclusions and tag_mutability in TAG_MUTABILITY:
        problems.append(
            "ECR_TAG_MUTABILITY_EXCLUSIONS is set but ECR_TAG_MUTABILITY is "
            f"{tag_mutability}: use {tag_mutability}_WITH_EXCLUSION"
        )
    encryption = (get("ECR_ENCRYPTION") or "").upper()
    kms_key = get("ECR_KMS_KEY")
    if encryption not in ENCRYPTION:
        problems.append(
            f"ECR_ENCRYPTION {get('ECR_ENCRYPTION')!r} is not one of " + ", ".join(ENCRYPTION)
        )
    elif encryption.startswith("KMS") and not kms_key:
        problems.append(
            f"ECR_ENCRYPTION={encryption} needs ECR_KMS_KEY (a KMS key ARN, id or alias)"
        )
    elif encryption == "AES256" and kms_key:
        problems.append("ECR_KMS_KEY is set but ECR_ENCRYPTION is AES256: set ECR_ENCRYPTION=KMS")

    dockerfile = Path(get("DOCKERFILE") or "Dockerfile")
    build_context = Path(get("BUILD_CONTEXT") or ".")
    if need_build:
        if not build_context.is_dir():
            problems.append(f"BUILD_CONTEXT {str(build_context)!r} is not a directory")
        if not dockerfile.is_file():
            problems.append(f"DOCKERFILE {str(dockerfile)!r} does not exist")

    if problems:
        raise SettingsError("; ".join(problems))
    return Settings(
        region=region,
        profile=profile,
        account_id=account_id,
        repository=repository,
        image_name=image_name,
        dockerfile=dockerfile,
        build_context=build_context,
        base_image=get("BASE_IMAGE"),
        scan_on_push=bool(scan_on_push),
        tag_mutability=tag_mutability,
        encryption=encryption,
        kms_key=kms_key,
        tag_mutability_exclusions=exclusions,
        version=version,
        aws_env=aws_env,
        env_file=env_path if dotenv or env_path.is_file() else None,
        warnings=tuple(warnings),
    )


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


def _bool(key: str, value: str | None, problems: list[str]) -> bool | None:
    text = (value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    problems.append(f"{key} {value!r} is not a boolean: use true or false")
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
        parser.read(config_file)
    except configparser.Error:
        return None
    name = profile or env.get("AWS_PROFILE") or "default"
    section = "default" if name == "default" else f"profile {name}"
    return parser.get(section, "region", fallback=None) or None
