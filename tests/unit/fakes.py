"""Test doubles shared by several unit test modules."""

from __future__ import annotations

import pytest

from ecr_release.model import buildcontext


class FakeTime:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# One finding of each scan kind, as DescribeImageScanFindings lists them.
BASIC_FINDING = {
    "name": "CVE-2024-1234",
    "severity": "CRITICAL",
    "attributes": [
        {"key": "package_name", "value": "openssl"},
        {"key": "package_version", "value": "3.0.2"},
    ],
}
ENHANCED_FINDING = {
    "severity": "HIGH",
    "packageVulnerabilityDetails": {
        "vulnerabilityId": "CVE-2024-9999",
        "vulnerablePackages": [{"name": "curl", "version": "7.88.1", "fixedInVersion": "8.0.0"}],
    },
}


def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The build-context files that scans read from now on (not answered by the cache)."""
    seen: list[str] = []
    real = buildcontext._read

    def counting(fspath: str, relpath: str) -> tuple[bytes | None, str]:
        seen.append(relpath)
        return real(fspath, relpath)

    monkeypatch.setattr(buildcontext, "_read", counting)
    return seen
