"""Several services in one repository, declared once in the project's ``pyproject.toml``::

    [tool.ecr-release.services.api]
    context = "services/api"        # the build context, from the project folder (default ".")
    dockerfile = "Dockerfile"       # from the context, as compose and bake take it
    repository = "shop/api"         # the ECR repository (default: the service's name)
    image-name = "shop-api"         # the local image name (default: the repository)
    build-args = { PYTHON = "3.12" }  # BASE_IMAGE here is the BASE_IMAGE setting
    smoke-test = true               # SMOKE_TEST and SMOKE_TIMEOUT, for this service
    smoke-timeout = 30

Why ``pyproject.toml``: it is the file a Python project already has, read with the
standard library's ``tomllib``, and tools keep their declarations under ``[tool.NAME]``
there (ruff, mypy, pytest do). The declaration says what differs per service; what is
shared (the region, the repository settings, the gates) stays in the settings
(``.env``, the environment, flags). A service's declared values stand above the
environment and ``.env`` for that service, so a CI job's ``ECR_REPOSITORY`` never
sends two services to one repository; a task flag still wins.

Without a declaration there is one service, from the settings alone, as before. A bad
declaration is one ``SettingsError`` line naming the service and the key, before
anything runs. Reading costs one read when the file declares nothing for the suite (its
name as the project or a dependency is not a declaration): ``inv --list`` and a rerun stay
fast; ``tomllib`` is imported only when a declaration may be there.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SettingsError
from .settings import IMAGE_NAME_RE, REPOSITORY_RE

PYPROJECT = "pyproject.toml"
TABLE = "tool.ecr-release"
# A service's name: in matrix jobs, output keys, log prefixes and --service.
NAME_RE = r"[a-z0-9](?:[a-z0-9_-]{0,62})"
# The build arguments the suite sets itself: a service cannot give them.
RESERVED_ARGS = ("APP_VERSION", "BUILD_DATE", "VCS_REF", "SOURCE_URL")
BUILD_ARG_RE = r"[A-Za-z_][A-Za-z0-9_]*"
# What a declaration cannot do without: a [tool.ecr-release...] header, or an
# `ecr-release =` key (dotted or inline). The project's name or a dependency on the suite
# ("ecr-release @ git+...") is not one: a rerun then reads no TOML (a few ms).
MENTION = rb'\[\s*tool\s*\.\s*"?ecr-release|ecr-release"?\s*='
KNOWN = ("context", "dockerfile", "repository", "image-name", "build-args", "smoke-test",
         "smoke-timeout")  # fmt: skip


@dataclass(frozen=True)
class Service:
    """One declared service: the settings it declares (keyed as in ``.env``) and its
    build arguments."""

    name: str
    values: Mapping[str, str]  # ECR_REPOSITORY, IMAGE_NAME, BUILD_CONTEXT, DOCKERFILE, ...
    build_args: Mapping[str, str] = field(default_factory=dict)

    @property
    def repository(self) -> str:
        return self.values["ECR_REPOSITORY"]

    @property
    def origin(self) -> str:
        """Where its values come from, as ``inv config`` shows it."""
        return f"{PYPROJECT} [{TABLE}.services.{self.name}]"


@dataclass(frozen=True)
class Services:
    """The services a project declares (none: the one service of the settings)."""

    declared: tuple[Service, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.declared)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(service.name for service in self.declared)

    def select(self, wanted: str | None) -> tuple[Service, ...]:
        """The services ``--service a,b`` names (all of them when it is left out), in the
        declaration's order; ``SettingsError`` for a name that is not declared, or for a
        ``--service`` that names none while services are declared (an empty variable in
        ``--service "$SVC"`` must not release them all). Without a declaration, an empty
        ``--service ""`` means the one service (the release workflow's matrix passes it)."""
        names = [part.strip() for part in (wanted or "").split(",") if part.strip()]
        if not names:
            if wanted is not None and self.declared:
                raise SettingsError(
                    f"--service {wanted!r} names no service: leave it out to act on every "
                    f"service, or name some ({', '.join(self.names)})"
                )
            return self.declared
        if not self.declared:
            raise SettingsError(
                f"--service {','.join(names)}: no services are declared (add "
                f"[{TABLE}.services.NAME] tables to {PYPROJECT}); without them the settings "
                "describe one service: leave --service out"
            )
        unknown = [name for name in names if name not in self.names]
        if unknown:
            raise SettingsError(
                f"--service {unknown[0]!r} is not declared in {PYPROJECT}: the services are "
                + ", ".join(self.names)
            )
        return tuple(service for service in self.declared if service.name in names)


def read_services(root: Path) -> Services:
    """The services ``root/pyproject.toml`` declares; ``SettingsError`` for a bad one."""
    path = root / PYPROJECT
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Services()
    except OSError as exc:
        raise SettingsError(f"cannot read {PYPROJECT}: {exc.strerror or exc}") from exc
    if not re.search(MENTION, data):  # cannot declare anything: no TOML parse
        return Services()
    import tomllib

    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{PYPROJECT} is not valid TOML: {exc}") from exc
    tool = document.get("tool", {})
    table = tool.get("ecr-release") if isinstance(tool, dict) else None
    if table is None:
        return Services()
    return parse(table, root)


def parse(table: Any, root: Path) -> Services:
    """The ``[tool.ecr-release]`` table, checked: every problem of the first bad service,
    in one line."""
    if not isinstance(table, dict):
        raise SettingsError(f"[{TABLE}] in {PYPROJECT} must be a table")
    extra = sorted(set(table) - {"services"})
    if extra:
        raise SettingsError(
            f"[{TABLE}] in {PYPROJECT}: unknown key {extra[0]!r} (it holds only services: "
            f"[{TABLE}.services.NAME] tables)"
        )
    services = table.get("services", {})
    odd = (
        []
        if not isinstance(services, dict)
        else [k for k, v in services.items() if not isinstance(v, dict)]
    )
    if not isinstance(services, dict) or odd:
        which = f": {odd[0]!r} is not a table" if odd else ""
        raise SettingsError(
            f"[{TABLE}.services] in {PYPROJECT} must hold one table per service "
            f"([{TABLE}.services.api], ...){which}"
        )
    declared = tuple(_service(name, body, root) for name, body in services.items())
    for key in ("ECR_REPOSITORY", "IMAGE_NAME"):
        seen: dict[str, str] = {}
        for service in declared:
            other = seen.setdefault(service.values[key], service.name)
            if other != service.name:
                what = "repository" if key == "ECR_REPOSITORY" else "image-name"
                raise SettingsError(
                    f"{PYPROJECT}: services {other!r} and {service.name!r} have the same "
                    f"{what} {service.values[key]!r}: give each service its own"
                )
    return Services(declared)


def _service(name: str, body: dict[str, Any], root: Path) -> Service:
    where = f"[{TABLE}.services.{name}] in {PYPROJECT}"
    if not re.fullmatch(NAME_RE, name):
        raise SettingsError(
            f"{where}: the service name {name!r} must be 1 to 63 lowercase letters, digits, "
            "'-' or '_', starting with a letter or digit"
        )
    problems = [_unknown(key) for key in body if key not in KNOWN]
    keys = ("context", "dockerfile", "repository", "image-name")
    text = {key: body[key] for key in keys if key in body}
    for key, value in text.items():
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{key} must be a non-empty string")
    if problems:
        raise SettingsError(f"{where}: {'; '.join(problems)}")
    context = posixpath.normpath(text.get("context", "."))
    dockerfile = posixpath.normpath(posixpath.join(context, text.get("dockerfile", "Dockerfile")))
    repository = text.get("repository", name)
    image_name = text.get("image-name", repository)
    values = {
        "ECR_REPOSITORY": repository,
        "IMAGE_NAME": image_name,
        "BUILD_CONTEXT": context,
        "DOCKERFILE": dockerfile,
    }
    if not (root / context).is_dir():
        problems.append(f"context {context!r} is not a directory in the project folder")
    elif not (root / dockerfile).is_file():
        problems.append(f"dockerfile: {dockerfile!r} does not exist in the project folder")
    if not re.fullmatch(REPOSITORY_RE, repository) or not 2 <= len(repository) <= 256:
        problems.append(
            f"repository {repository!r} is not an ECR repository name: 2 to 256 lowercase "
            "letters and digits, separated by '.', '_', '-' or '/'"
        )
    if not re.fullmatch(IMAGE_NAME_RE, image_name):
        problems.append(f"image-name {image_name!r} is not a valid local image name")
    smoke, problem = _smoke(body)
    values |= smoke
    problems += problem
    args, problem = _build_args(body.get("build-args", {}))
    problems += problem
    if "BASE_IMAGE" in args:
        values["BASE_IMAGE"] = args.pop("BASE_IMAGE")
    if problems:
        raise SettingsError(f"{where}: {'; '.join(problems)}")
    return Service(name, values, args)


def _unknown(key: str) -> str:
    close = difflib.get_close_matches(key, KNOWN, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(KNOWN)})"
    return f"unknown key {key!r}{hint}"


def _smoke(body: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    values: dict[str, str] = {}
    problems: list[str] = []
    if "smoke-test" in body:
        if isinstance(body["smoke-test"], bool):
            values["SMOKE_TEST"] = "true" if body["smoke-test"] else "false"
        else:
            problems.append("smoke-test must be true or false")
    if "smoke-timeout" in body:
        seconds = body["smoke-timeout"]
        if isinstance(seconds, int) and not isinstance(seconds, bool) and 1 <= seconds <= 3600:
            values["SMOKE_TIMEOUT"] = str(seconds)
        else:
            problems.append("smoke-timeout must be a whole number of seconds from 1 to 3600")
    return values, problems


def _build_args(table: Any) -> tuple[dict[str, str], list[str]]:
    if not isinstance(table, dict):
        return {}, ['build-args must be a table of NAME = value (e.g. { PYTHON = "3.12" })']
    args: dict[str, str] = {}
    problems: list[str] = []
    for key, value in table.items():
        if not re.fullmatch(BUILD_ARG_RE, key):
            problems.append(f"build-args key {key!r} is not a build argument name")
        elif key in RESERVED_ARGS:
            problems.append(f"build-args {key}: the suite sets it itself (with the release)")
        elif isinstance(value, bool):
            args[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            args[key] = str(value)
        else:
            problems.append(f"build-args {key} must be a string or a number")
    return args, problems
