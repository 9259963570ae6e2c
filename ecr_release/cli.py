"""Glue between invoke and the library: settings, wiring, output and error mapping.

``tasks.py`` stays a list of commands; this module loads the settings once,
builds the run's ``Release`` (the only place that picks the docker binary and
hands ``ecr.connect`` in), shows the library's log to the person, and turns a
``ReleaseError`` into ``invoke.Exit``: one line, a non-zero code, no traceback.
Importing it imports neither boto3 nor botocore.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

from invoke.exceptions import Exit

from .errors import ReleaseError
from .release import Release, Summary
from .settings import Settings, load_settings

# Flags every task accepts, with the setting each one overrides.
FLAG_KEYS = {"repository": "ECR_REPOSITORY", "region": "AWS_REGION", "profile": "AWS_PROFILE"}
COMMON_HELP = {
    "repository": "ECR repository name (overrides ECR_REPOSITORY)",
    "region": "AWS region (overrides AWS_REGION)",
    "profile": "AWS profile (overrides AWS_PROFILE)",
    "env-file": "settings file to read (default: .env)",
}
VERSION_HELP = "image tag to release, e.g. v1 or 1.4.2 (required)"


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


def _setup_logging() -> None:
    logger = logging.getLogger("ecr_release")
    if not any(getattr(h, "_ecr_release", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Formatter())
        handler._ecr_release = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def make_release(settings: Settings, *, dry_run: bool = False) -> Release:
    """The one place the real docker runner and the boto3 factory are wired in."""
    from .docker import Docker, SubprocessRunner
    from .ecr import connect

    return Release(settings, Docker(SubprocessRunner()), connect, dry_run=dry_run)


@contextlib.contextmanager
def session(
    c: Any,
    *,
    version: str | None = None,
    versioned: bool = False,
    dry_run: bool = False,
    need_aws: bool = True,
    need_build: bool = False,
    env_file: str | None = None,
    **flags: str | None,
) -> Iterator[Release]:
    """Validate everything first, then yield the run; map library errors to ``Exit``."""
    _setup_logging()
    try:
        settings = load_settings(
            {"version": version, **{FLAG_KEYS[k]: v for k, v in flags.items()}},
            env_file=env_file or ".env",
            env_file_required=env_file is not None,
            need_aws=need_aws,
            need_build=need_build,
            need_version=versioned,
        )
        for warning in settings.warnings:
            logging.getLogger("ecr_release").warning("warning: %s", warning)
        dry = bool(dry_run or c.config.run.dry)
        yield make_release(settings, dry_run=dry)
    except ReleaseError as exc:
        raise Exit(f"error: {exc.message}", code=exc.exit_code) from exc
    except KeyboardInterrupt:
        raise Exit(
            "interrupted: nothing was half-published (a tag appears only once its "
            "manifest is written)",
            code=130,
        ) from None


def print_summary(summary: Summary) -> None:
    total = sum(seconds for _, seconds in summary.timings)
    steps = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in summary.timings)
    if summary.dry_run:
        title = "dry run: nothing was built, created, logged in to or pushed"
    elif summary.already_released:
        title = "already released: the same image is in the registry, nothing to do"
    else:
        title = "released and verified"
    print(title)
    print(f"  image:  {summary.image_uri}")
    print(f"  digest: {summary.digest}")
    print(f"  steps:  {steps} (total {total:.1f}s)")
