"""model/scan.py: findings parsed from both of ECR's shapes, ordered, counted, judged."""

from __future__ import annotations

import pytest

from ecr_release.model.scan import (
    SEVERITIES,
    THRESHOLDS,
    Finding,
    basic_finding,
    blocking,
    count_words,
    counts,
    enhanced_finding,
    ignored,
    parse_findings,
    rank,
)


def test_severities_are_ordered_and_untriaged_is_unknown_below_low() -> None:
    ranks = [rank(s) for s in SEVERITIES]
    assert ranks == sorted(ranks, reverse=True)
    assert len(set(ranks)) == len(ranks)
    assert rank("UNTRIAGED") == rank("UNDEFINED") == rank("SOMETHING_NEW") < rank("LOW")
    assert rank("INFORMATIONAL") < rank("LOW") < rank("MEDIUM") < rank("HIGH") < rank("CRITICAL")
    assert rank("critical") == rank("CRITICAL")
    assert rank("UNTRIAGED") < min(rank(t) for t in THRESHOLDS)  # never reaches a threshold


def test_a_basic_finding_names_its_package_from_the_attributes() -> None:
    found = basic_finding(
        {
            "name": "CVE-2024-1234",
            "uri": "https://cve.example/CVE-2024-1234",
            "severity": "CRITICAL",
            "attributes": [
                {"key": "package_version", "value": "3.0.2"},
                {"key": "package_name", "value": "openssl"},
                {"key": "CVSS2_SCORE", "value": "9.8"},
            ],
        }
    )
    assert found == Finding("CVE-2024-1234", "CRITICAL", "openssl", "3.0.2", None)
    assert found.words() == "CVE-2024-1234 CRITICAL in openssl 3.0.2"


def test_an_enhanced_finding_names_its_package_and_fix() -> None:
    found = enhanced_finding(
        {
            "severity": "HIGH",
            "title": "CVE-2024-9999 - curl",
            "packageVulnerabilityDetails": {
                "vulnerabilityId": "CVE-2024-9999",
                "vulnerablePackages": [
                    {"name": "curl", "version": "7.88.1", "fixedInVersion": "8.0.0"},
                    {"name": "libcurl4", "version": "7.88.1", "fixedInVersion": "8.0.0"},
                ],
            },
        }
    )
    assert found == Finding("CVE-2024-9999", "HIGH", "curl (+1 more)", "7.88.1", "8.0.0")
    assert found.words() == "CVE-2024-9999 HIGH in curl (+1 more) 7.88.1, fixed in 8.0.0"


@pytest.mark.parametrize("fixed", ["NotAvailable", "", None])
def test_an_enhanced_finding_without_a_fix_says_none(fixed: str | None) -> None:
    found = enhanced_finding(
        {
            "severity": "UNTRIAGED",
            "packageVulnerabilityDetails": {
                "vulnerabilityId": "GHSA-xxxx",
                "vulnerablePackages": [{"name": "lib", "version": "1", "fixedInVersion": fixed}],
            },
        }
    )
    assert (found.id, found.severity, found.fixed_in) == ("GHSA-xxxx", "UNTRIAGED", None)


def test_findings_without_the_usual_fields_still_parse() -> None:
    assert basic_finding({}) == Finding("unnamed finding", "UNDEFINED")
    assert enhanced_finding({"findingArn": "arn:x", "severity": "low"}) == Finding("arn:x", "LOW")


FINDINGS = (
    Finding("CVE-1", "LOW", "a", "1"),
    Finding("CVE-2", "CRITICAL", "b", "2", "2.1"),
    Finding("CVE-3", "HIGH", "c", "3"),
    Finding("CVE-4", "UNTRIAGED", "d", "4"),
    Finding("CVE-5", "HIGH", "e", "5"),
    Finding("CVE-6", "INFORMATIONAL"),
)


def test_findings_come_worst_first_and_are_counted_per_severity() -> None:
    basic = [{"name": f.id, "severity": f.severity} for f in FINDINGS[:3]]
    enhanced = [
        {"severity": f.severity, "packageVulnerabilityDetails": {"vulnerabilityId": f.id}}
        for f in FINDINGS[3:]
    ]
    parsed = parse_findings(basic, enhanced)
    assert [f.id for f in parsed] == ["CVE-2", "CVE-3", "CVE-5", "CVE-1", "CVE-6", "CVE-4"]
    assert counts(parsed) == {
        "CRITICAL": 1,
        "HIGH": 2,
        "LOW": 1,
        "INFORMATIONAL": 1,
        "UNTRIAGED": 1,
    }
    assert list(counts(parsed)) == ["CRITICAL", "HIGH", "LOW", "INFORMATIONAL", "UNTRIAGED"]
    assert count_words(counts(parsed)) == "1 CRITICAL, 2 HIGH, 1 LOW, 1 INFORMATIONAL, 1 UNTRIAGED"
    assert count_words({}) == "none"


@pytest.mark.parametrize(
    ("fail_on", "ignore", "ids"),
    [
        (None, (), []),  # report only
        ("CRITICAL", (), ["CVE-2"]),
        ("HIGH", (), ["CVE-2", "CVE-3", "CVE-5"]),
        ("MEDIUM", (), ["CVE-2", "CVE-3", "CVE-5"]),
        ("LOW", (), ["CVE-2", "CVE-3", "CVE-5", "CVE-1"]),  # never UNTRIAGED nor INFORMATIONAL
        ("HIGH", ("CVE-2",), ["CVE-3", "CVE-5"]),
        ("HIGH", ("cve-2", "CVE-3", "CVE-5"), []),  # ids compare without regard to case
        ("CRITICAL", ("CVE-3",), ["CVE-2"]),  # ignoring a lesser one changes nothing
    ],
)
def test_the_threshold_blocks_what_is_at_or_above_it_and_not_accepted(
    fail_on: str | None, ignore: tuple[str, ...], ids: list[str]
) -> None:
    assert [f.id for f in blocking(FINDINGS, fail_on, ignore)] == ids


def test_ignored_findings_are_found_never_dropped() -> None:
    assert [f.id for f in ignored(FINDINGS, {"cve-2", "CVE-404"})] == ["CVE-2"]
    # blocking() leaves them out of the verdict only: the findings themselves stay.
    assert len(parse_findings([{"name": f.id, "severity": f.severity} for f in FINDINGS])) == 6


def test_a_finding_as_json() -> None:
    assert FINDINGS[1].as_json() == {
        "id": "CVE-2",
        "severity": "CRITICAL",
        "package": "b",
        "version": "2",
        "fixed_in": "2.1",
    }
