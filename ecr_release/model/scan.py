"""Image scan findings as values: parsed, ordered, counted, and judged against a threshold.

ECR answers a scan in two shapes. Basic scanning lists ``imageScanFindings.findings``
(``name``, ``severity``, ``attributes`` ``package_name`` / ``package_version``);
enhanced scanning (Amazon Inspector) lists ``enhancedFindings``
(``packageVulnerabilityDetails.vulnerabilityId``, ``severity``,
``vulnerablePackages[].name`` / ``version`` / ``fixedInVersion``). Both become a
:class:`Finding`.

Severities are ordered CRITICAL > HIGH > MEDIUM > LOW > INFORMATIONAL > UNDEFINED.
Enhanced scanning's UNTRIAGED (and any severity this module does not know) is taken as
unknown: ranked with UNDEFINED, below LOW, so it never reaches a threshold.

The rule of the gate: with ``SCAN_FAIL_ON`` (CRITICAL, HIGH, MEDIUM or LOW) the image
fails when any finding at or above it is not accepted in ``SCAN_IGNORE``; accepted
findings are shown as ignored, never hidden. Without ``SCAN_FAIL_ON`` findings are only
reported.

Pure: no AWS call, no output. Reading the scan is ``outside/ecr.py``'s, waiting for it
and the wording of the gate ``flows/scan.py``'s.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Worst first; the rank of a severity is its distance from the end.
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")
# What SCAN_FAIL_ON may name.
THRESHOLDS = ("CRITICAL", "HIGH", "MEDIUM", "LOW")
UNKNOWN_RANK = 0  # UNDEFINED, UNTRIAGED, anything new
# ECR's word for "no fixed version" in enhanced findings.
_NO_FIX = {"", "NotAvailable", "NOT_AVAILABLE", "None"}
WORST_SHOWN = 5


def rank(severity: str) -> int:
    """Higher is worse: CRITICAL 5 ... INFORMATIONAL 1; UNDEFINED, UNTRIAGED and unknown 0."""
    upper = severity.upper()
    if upper in SEVERITIES[:-1]:
        return len(SEVERITIES) - 1 - SEVERITIES.index(upper)
    return UNKNOWN_RANK


@dataclass(frozen=True)
class Finding:
    """One vulnerability the scan reported: its id (a CVE, usually), severity, the package
    it is in (and that package's version), and the first version that fixes it, when known."""

    id: str
    severity: str
    package: str | None = None
    version: str | None = None
    fixed_in: str | None = None

    @property
    def rank(self) -> int:
        return rank(self.severity)

    def words(self) -> str:
        """``CVE-2024-1234 CRITICAL in openssl 3.0.2, fixed in 3.0.7``."""
        text = f"{self.id} {self.severity}"
        if self.package:
            text += f" in {self.package}" + (f" {self.version}" if self.version else "")
        if self.fixed_in:
            text += f", fixed in {self.fixed_in}"
        return text

    def as_json(self) -> dict[str, str | None]:
        return {
            "id": self.id,
            "severity": self.severity,
            "package": self.package,
            "version": self.version,
            "fixed_in": self.fixed_in,
        }


def basic_finding(data: Mapping[str, Any]) -> Finding:
    """A finding of basic scanning (``imageScanFindings.findings[]``)."""
    attributes = {
        str(a.get("key")): str(a.get("value"))
        for a in data.get("attributes") or []
        if isinstance(a, Mapping) and a.get("value") is not None
    }
    return Finding(
        id=str(data.get("name") or "unnamed finding"),
        severity=str(data.get("severity") or "UNDEFINED").upper(),
        package=attributes.get("package_name"),
        version=attributes.get("package_version"),
    )


def enhanced_finding(data: Mapping[str, Any]) -> Finding:
    """A finding of enhanced scanning (``imageScanFindings.enhancedFindings[]``). Several
    vulnerable packages: the first is named, with how many more."""
    details = data.get("packageVulnerabilityDetails") or {}
    packages = [p for p in details.get("vulnerablePackages") or [] if isinstance(p, Mapping)]
    first = packages[0] if packages else {}
    name = first.get("name")
    if name and len(packages) > 1:
        name = f"{name} (+{len(packages) - 1} more)"
    fixed = str(first.get("fixedInVersion") or "")
    return Finding(
        id=str(
            details.get("vulnerabilityId")
            or data.get("title")
            or data.get("findingArn")
            or "unnamed finding"
        ),
        severity=str(data.get("severity") or "UNDEFINED").upper(),
        package=str(name) if name else None,
        version=str(first["version"]) if first.get("version") else None,
        fixed_in=None if fixed in _NO_FIX else fixed,
    )


def parse_findings(
    basic: Iterable[Mapping[str, Any]], enhanced: Iterable[Mapping[str, Any]] = ()
) -> tuple[Finding, ...]:
    """Every finding of a scan, worst first (then by id)."""
    found = [basic_finding(f) for f in basic] + [enhanced_finding(f) for f in enhanced]
    return worst_first(found)


def worst_first(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    return tuple(sorted(findings, key=lambda f: (-f.rank, f.id, f.package or "")))


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    """The number of findings per severity, worst first (only severities that occur)."""
    found: dict[str, int] = {}
    for finding in findings:
        found[finding.severity] = found.get(finding.severity, 0) + 1
    return {severity: found[severity] for severity in sorted(found, key=lambda s: (-rank(s), s))}


def ignored(findings: Iterable[Finding], ignore: Collection[str]) -> tuple[Finding, ...]:
    """The findings ``SCAN_IGNORE`` accepts (ids compare without regard to case)."""
    accepted = {i.upper() for i in ignore}
    return tuple(f for f in findings if f.id.upper() in accepted)


def blocking(
    findings: Sequence[Finding], fail_on: str | None, ignore: Collection[str]
) -> tuple[Finding, ...]:
    """The findings that fail the gate, worst first: at or above ``fail_on`` and not
    accepted; none without ``fail_on`` (report only)."""
    if fail_on is None:
        return ()
    threshold = rank(fail_on)
    accepted = {i.upper() for i in ignore}
    return worst_first(f for f in findings if f.rank >= threshold and f.id.upper() not in accepted)


def count_words(found: Mapping[str, int]) -> str:
    """``1 CRITICAL, 2 HIGH``; ``none`` when empty."""
    return ", ".join(f"{n} {severity}" for severity, n in found.items()) or "none"
