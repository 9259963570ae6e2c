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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SettingsError
from ..model.masking import shown
from ..model.services import Service
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
    target: str = "AWS"  # where a release goes: AWS, or the local sandbox

    def as_json(self) -> dict[str, Any]:
        return {
            "settings": {
                line.key: {"value": line.value, "source": line.source} for line in self.lines
            },
            "unknown_env_keys": self.unknown,
            "env_file": self.env_file,
            "target": self.target,
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
        rows.append(f"target: {self.target}")
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
    sandbox: Callable[[], str] = lambda: "the local sandbox",
    service: Service | None = None,
) -> ConfigView:
    """What ``release`` would read, from where; ``SettingsError`` only for an unreadable or
    missing named ``--env-file`` (nothing else to show then). ``sandbox`` describes the
    local sandbox, when it is the target (the AWS settings are then ignored). ``service``: a
    declared service, whose own values come from its declaration."""
    src = Sources.read(
        flags,
        environ,
        Path(env_file),
        root,
        env_file_required=env_file_required,
        service=service,
    )
    lines: list[Line] = []
    ignored = ("AWS_PROFILE", "AWS_ACCOUNT_ID")  # the sandbox reads no AWS set-up
    for key in KEYS:
        value, source = src.found(key)
        if src.sandbox and key in ignored and source:
            source += ", ignored with the sandbox"
        if src.sandbox and key == "AWS_REGION" and source != "flag":
            given, origin = src.lookup(key)
            if given is not None:  # said, so that nobody wonders where it went
                source = f"{source}; {given!r} from {origin} is ignored with the sandbox"
        lines.append(Line(key, shown(key, value), source))
    for key in sorted({*environ, *src.dotenv}):
        if is_boto3_variable(key) and key not in KEYS:
            value, source = src.lookup(key)
            if value is not None:
                note = ", ignored with the sandbox" if src.sandbox else ""
                lines.append(Line(key, shown(key, value), f"{source}{note}"))
    try:
        load_settings(
            flags,
            task="config",
            environ=environ,
            env_file=env_file,
            env_file_required=env_file_required,
            root=root,
            service=service,
        )
        problems = None
    except SettingsError as exc:
        problems = exc.message
    target = sandbox() if src.sandbox else "AWS"
    return ConfigView(lines, src.unknown_keys, str(src.env_path), problems, target)
