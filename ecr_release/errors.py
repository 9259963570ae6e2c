"""The suite's error tree: every failure a user can act on is one of these.

Each error carries a one-line message and an exit code; the task layer turns it
into ``invoke.Exit``, so the user sees the line and no traceback. Anything that
is not a ``ReleaseError`` is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
from typing import Any

# scheme://anything@ (to the last @ before a blank or a quote): a URL's user-info, which
# may hold a password (botocore's errors quote the endpoint URL whole). Text: re compiles
# it on first use, not when every command imports this module.
_URL_USERINFO = r"([A-Za-z][A-Za-z0-9+.-]*://)(?!\*\*\*@)[^\s\"'<>]*@"


def mask_urls(text: str) -> str:
    """Every URL in a message without its user-info: ``scheme://***@host...``."""
    return re.sub(_URL_USERINFO, r"\1***@", text)


class ReleaseError(Exception):
    """Base class: a one-line, actionable message and a process exit code."""

    exit_code = 1
    # A release that failed at its gates: what they found (a ``flows.candidate.Gates``), for
    # the report of the failure (``--json``, GitHub's files). None elsewhere.
    gates: Any = None

    def __init__(self, message: str) -> None:
        # One line, whatever the source of the text (docker output, AWS messages), and no
        # URL's password.
        super().__init__(mask_urls(" ".join(message.split())))

    @property
    def message(self) -> str:
        return str(self.args[0])


class SettingsError(ReleaseError):
    """Bad or missing configuration, found before anything runs."""

    exit_code = 2


class DockerError(ReleaseError):
    """The docker CLI or daemon failed or refused."""

    exit_code = 3


class AwsError(ReleaseError):
    """The AWS API failed or refused (credentials, permissions, network)."""

    exit_code = 4


class ScanNotFoundError(AwsError):
    """ECR has no scan of the image (``ScanNotFoundException``): none was started, yet or ever."""


class ImageNotFoundError(AwsError):
    """The ECR API does not know the image, or its repository (``ImageNotFoundException``,
    ``RepositoryNotFoundException``)."""


class RegistryError(ReleaseError):
    """The registry answered something unexpected (verification, manifests)."""

    exit_code = 5


class RegistryAuthError(RegistryError):
    """The registry refused the credential (HTTP 401/403): a fresh login may help."""


class VersionExistsError(ReleaseError):
    """The version is already released with another image: it is never overwritten."""

    exit_code = 6


class LockedError(ReleaseError):
    """Another release of the same repository holds the lock on this machine."""

    exit_code = 7


class OutputError(ReleaseError):
    """A result file (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY) could not be written after a release."""

    exit_code = 9


class ScanGateError(ReleaseError):
    """The image's scan found what ``SCAN_FAIL_ON`` refuses, or the image could not be shown
    to be scanned while ``SCAN_FAIL_ON`` is set: the version is not given to it. ``report``
    holds what the scan found (a ``flows.scan.ScanReport``), when it was read."""

    report: Any = None

    exit_code = 10


class SmokeTestError(ReleaseError):
    """The built image failed its smoke test (it exited, or never became healthy): nothing
    was pushed. ``log_tail`` holds the container's last log lines, for the task layer to
    print under the one-line message."""

    exit_code = 8

    def __init__(self, message: str, log_tail: list[str] | None = None) -> None:
        super().__init__(message)
        self.log_tail: list[str] = list(log_tail or [])
