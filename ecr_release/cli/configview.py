"""``inv config``: every setting the suite reads, its value and where it came from.

Sources, in precedence order: a task ``flag``, the ``environment``, ``.env``, the
suite's ``default``, or, for the region only, the ``AWS config`` (``AWS_DEFAULT_REGION``
or the profile's ``region``). The standard AWS variables that are set are listed too,
since boto3 reads them. Values of secret-looking keys are shown as ``***``; keys in
``.env`` that the suite does not know are listed; then the same validation as
``release`` says whether the settings are usable. It reads; it changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SettingsError
from ..model.settings import _OWN_AWS_KEYS, KEYS, Sources, _region_from_aws_config, load_settings

MASK = "***"
_SECRET_KEY = re.compile(r"SECRET|TOKEN|PASSWORD", re.IGNORECASE)


@dataclass(frozen=True)
class Line:
    """One setting: its shown value (masked when secret-looking) and where it came from."""

    key: str
    value: str | None
    source: str | None  # None: unset


@dataclass(frozen=True)
class ConfigView:
    lines: list[Line]
    unknown: list[str]  # .env keys the suite does not read
    env_file: str
    problems: str | None  # the validation's one line, None when the settings are usable

    def as_json(self) -> dict[str, Any]:
        return {
            "settings": {
                line.key: {"value": line.value, "source": line.source} for line in self.lines
            },
            "unknown_env_keys": self.unknown,
            "env_file": self.env_file,
            "valid": self.problems is None,
            "problems": self.problems,
        }

    def as_text(self) -> str:
        width = max(len(line.key) for line in self.lines)
        rows = [
            f"{line.key:<{width}}  {line.value if line.value is not None else '-'}"
            + (f"  ({line.source})" if line.source else "  (unset)")
            for line in self.lines
        ]
        if self.unknown:
            rows.append(f"unknown keys in {self.env_file}: {', '.join(self.unknown)}")
        rows.append(
            "settings: valid" if self.problems is None else f"settings problems: {self.problems}"
        )
        return "\n".join(rows)


# Keys whose name says SECRET but whose value is not one.
_NOT_SECRET = {"SECRET_SCAN_ALLOW"}
_USERINFO = re.compile(r"(://)[^/@\s]+@")


def is_secret(key: str) -> bool:
    return key not in _NOT_SECRET and bool(_SECRET_KEY.search(key))


def view(
    flags: Mapping[str, str | None],
    *,
    environ: Mapping[str, str],
    env_file: str,
    env_file_required: bool,
    root: Path,
) -> ConfigView:
    """What ``release`` would read, from where; ``SettingsError`` only for an unreadable or
    missing named ``--env-file`` (nothing else to show then)."""
    src = Sources.read(flags, environ, Path(env_file), root, env_file_required=env_file_required)
    lines: list[Line] = []
    for key in KEYS:
        value, source = src.lookup(key)
        if key == "AWS_REGION" and value is None:
            value = _region_from_aws_config({**src.aws_env, **environ}, src.get("AWS_PROFILE"))
            source = "AWS config" if value else None
        elif key == "IMAGE_NAME" and value is None:
            value, source = src.get("ECR_REPOSITORY"), "default: ECR_REPOSITORY"
        lines.append(Line(key, _shown(key, value), source))
    for key in sorted({*environ, *src.dotenv}):
        if key.startswith("AWS_") and key not in KEYS and key not in _OWN_AWS_KEYS:
            value, source = src.lookup(key)
            if value is not None:
                lines.append(Line(key, _shown(key, value), source))
    unknown = sorted(key for key in src.dotenv if key not in KEYS and not key.startswith("AWS_"))
    try:
        load_settings(
            flags,
            environ=environ,
            env_file=env_file,
            env_file_required=env_file_required,
            need_build=True,
            root=root,
        )
        problems = None
    except SettingsError as exc:
        problems = exc.message
    return ConfigView(lines, unknown, str(src.env_path), problems)


def _shown(key: str, value: str | None) -> str | None:
    if value is None:
        return None
    if is_secret(key):
        return MASK
    if key == "AWS_ACCESS_KEY_ID":  # an identifier, but not one to show in full
        return MASK + value[-4:]
    return _USERINFO.sub(r"\1***@", value)  # a URL's user:password
