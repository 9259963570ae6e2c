"""``inv config``: every setting the suite reads, its value and where it came from.

The settings are the declared ones (``model/settings.py``), in their order. Sources,
in precedence order: a task ``flag``, the ``environment``, ``.env``, the suite's
``default``, or, for the region only, the ``AWS config`` (``AWS_DEFAULT_REGION`` or the
profile's ``region``). The standard AWS variables that are set are listed too, since
boto3 reads them. Values are shown as ``model/masking.py`` allows (secrets as
``***``); keys in ``.env`` that the suite does not know are listed; then the same
validation as ``release`` says whether the settings are usable. It reads; it changes
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SettingsError
from ..model.masking import shown
from ..model.settings import KEYS, Sources, is_boto3_variable, load_settings


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
        value, source = src.found(key)
        lines.append(Line(key, shown(key, value), source))
    for key in sorted({*environ, *src.dotenv}):
        if is_boto3_variable(key) and key not in KEYS:
            value, source = src.lookup(key)
            if value is not None:
                lines.append(Line(key, shown(key, value), source))
    try:
        load_settings(
            flags,
            task="config",
            environ=environ,
            env_file=env_file,
            env_file_required=env_file_required,
            root=root,
        )
        problems = None
    except SettingsError as exc:
        problems = exc.message
    return ConfigView(lines, src.unknown_keys, str(src.env_path), problems)
