"""flows/scan.py: the wait for ECR's scan, through botocore's Stubber (every status ECR's
model names), with a fake clock; the report's lines and JSON; the gate's verdict."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from ecr_release.errors import ScanGateError, SettingsError
from ecr_release.flows.scan import (
    ScanReport,
    judge,
    plan_scan,
    scan_of_version,
    wait_for_scan,
)
from ecr_release.model.scan import Finding
from ecr_release.outside.ecr import RELEASE_LIMITS, Budget, Ecr

from ..fakes import BASIC_FINDING as OPENSSL
from ..fakes import ENHANCED_FINDING as CURL
from ..fakes import FakeTime

REPO = "widget"
DIGEST = "sha256:" + "ab" * 32
ASKED = {"repositoryName": REPO, "imageId": {"imageDigest": DIGEST}}
DONE_AT = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def time_() -> FakeTime:
    return FakeTime(1000.0)


class EcrStub(Stubber):
    """A Stubber with the ``Ecr`` over its client."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.ecr = Ecr(client)


@pytest.fixture
def stub() -> Iterator[EcrStub]:
    stubber = EcrStub(boto3.client("ecr", region_name="eu-west-1"))
    with stubber:
        yield stubber


def answer(status: str, **findings: Any) -> dict[str, Any]:
    return {
        "repositoryName": REPO,
        "imageId": {"imageDigest": DIGEST},
        "imageScanStatus": {"status": status, "description": f"ECR says {status.lower()}"},
        "imageScanFindings": findings,
    }


def complete(status: str = "COMPLETE", *basic: Any, enhanced: Any = ()) -> dict[str, Any]:
    findings: dict[str, Any] = {"imageScanCompletedAt": DONE_AT, "findings": list(basic)}
    if enhanced:
        findings["enhancedFindings"] = list(enhanced)
    return answer(status, **findings)


def no_scan(stub: Any) -> None:
    stub.add_client_error("describe_image_scan_findings", "ScanNotFoundException", "no scan", 400)


def registry(stub: Any, scan_type: str = "BASIC", *filters: str) -> None:
    rules = [
        {
            "scanFrequency": "SCAN_ON_PUSH",
            "repositoryFilters": [{"filter": f, "filterType": "WILDCARD"} for f in filters],
        }
    ]
    config = {"scanType": scan_type, "rules": rules if filters else []}
    stub.add_response("get_registry_scanning_configuration", {"scanningConfiguration": config})


def wait(stub: Any, time_: FakeTime, *, scan_on_push: bool = True, **options: Any) -> ScanReport:
    options.setdefault("timeout", 300)
    report = wait_for_scan(
        stub.ecr,
        REPO,
        DIGEST,
        scan_on_push=scan_on_push,
        clock=time_.clock,
        sleep=time_.sleep,
        **options,
    )
    stub.assert_no_pending_responses()
    return report


# -- every status --------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["COMPLETE", "ACTIVE"])
def test_a_finished_scan_is_read_at_once(stub: Any, time_: FakeTime, status: str) -> None:
    stub.add_response(
        "describe_image_scan_findings", complete(status, OPENSSL, enhanced=[CURL]), ASKED
    )
    report = wait(stub, time_)
    assert (report.status, report.scanned, report.configured) == (status, True, True)
    assert [f.id for f in report.findings] == ["CVE-2024-1234", "CVE-2024-9999"]
    assert report.counts == {"CRITICAL": 1, "HIGH": 1}
    assert time_.sleeps == []


@pytest.mark.parametrize("waiting", ["IN_PROGRESS", "PENDING"])
def test_a_scan_under_way_is_waited_for_with_a_backoff(
    stub: Any, time_: FakeTime, waiting: str
) -> None:
    for _ in range(6):
        stub.add_response("describe_image_scan_findings", answer(waiting), ASKED)
    stub.add_response("describe_image_scan_findings", complete(), ASKED)
    report = wait(stub, time_)
    assert report.scanned and report.status == "COMPLETE" and report.findings == ()
    assert time_.sleeps == [1, 2, 4, 8, 10, 10]


def test_a_long_wait_of_slow_calls_never_uses_up_the_aws_time_of_the_calls_after_it() -> None:
    # Each call takes 0.3 s of the step's 25 s of AWS time (a new call is refused once
    # 10 s are spent): a scan that never starts is waited for until SCAN_TIMEOUT (600 s,
    # about 70 polls), not cut short as "too slow"; the candidate's removal after it is
    # still allowed. (moto, not a Stubber: a Stubber answers before the budget hears of
    # the call.)
    tag = "ecr-release-candidate-x"
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"digest": "sha256:" + "1" * 64},
        "layers": [],
    }
    with mock_aws():
        client = boto3.client("ecr", region_name="eu-west-1")
        client.create_repository(
            repositoryName=REPO, imageScanningConfiguration={"scanOnPush": True}
        )
        client.put_image(repositoryName=REPO, imageManifest=json.dumps(manifest), imageTag=tag)
        digest = client.describe_images(repositoryName=REPO)["imageDetails"][0]["imageDigest"]
        reads = iter(float(n) * 0.15 for n in range(100_000))  # 0.3 s per call
        budget = Budget(RELEASE_LIMITS, clock=lambda: next(reads))
        budget.attach(client)
        ecr = Ecr(client, budget)
        time_ = FakeTime(1000.0)
        report = wait_for_scan(
            ecr, REPO, digest, scan_on_push=True, timeout=600, clock=time_.clock, sleep=time_.sleep
        )
        assert report.note == "the scan did not start within SCAN_TIMEOUT=600 s"
        assert len(time_.sleeps) > 40  # enough calls to spend 10 s of one step's time
        assert ecr.delete_tag(REPO, tag)


@pytest.mark.parametrize(
    "status",
    [
        "FAILED",
        "UNSUPPORTED_IMAGE",
        "SCAN_ELIGIBILITY_EXPIRED",
        "FINDINGS_UNAVAILABLE",
        "LIMIT_EXCEEDED",
        "IMAGE_ARCHIVED",
        "IMAGE_SIZE_EXCEEDED",
    ],
)
def test_a_scan_that_ended_without_findings_is_unscanned_with_its_status(
    stub: Any, time_: FakeTime, status: str
) -> None:
    stub.add_response("describe_image_scan_findings", answer("IN_PROGRESS"), ASKED)
    stub.add_response("describe_image_scan_findings", answer(status), ASKED)
    report = wait(stub, time_)
    assert (report.status, report.scanned, report.configured) == (status, False, True)
    assert report.note == f"the scan ended {status}: ECR says {status.lower()}"
    assert report.lines() == [f"warning: {REPO}@{DIGEST} was not scanned: {report.note}"]
    assert time_.sleeps == [1]


def test_a_scan_not_started_yet_is_waited_for(stub: Any, time_: FakeTime) -> None:
    no_scan(stub)
    registry(stub)  # asked once, on the first ScanNotFound
    no_scan(stub)
    stub.add_response("describe_image_scan_findings", answer("IN_PROGRESS"), ASKED)
    stub.add_response("describe_image_scan_findings", complete("COMPLETE", OPENSSL), ASKED)
    report = wait(stub, time_)
    assert report.scanned and [f.id for f in report.findings] == ["CVE-2024-1234"]
    assert time_.sleeps == [1, 2, 4]


def test_enhanced_scanning_is_waited_for_without_scan_on_push(stub: Any, time_: FakeTime) -> None:
    no_scan(stub)
    registry(stub, "ENHANCED", "wid*")
    stub.add_response("describe_image_scan_findings", complete("ACTIVE", enhanced=[CURL]), ASKED)
    report = wait(stub, time_, scan_on_push=False)
    assert report.scanned and report.status == "ACTIVE"
    assert report.findings == (Finding("CVE-2024-9999", "HIGH", "curl", "7.88.1", "8.0.0"),)


@pytest.mark.parametrize(
    ("scan_type", "filters", "scan_on_push", "why"),
    [
        ("BASIC", (), False, "(scan on push is off)"),
        ("ENHANCED", ("other-*",), False, "(enhanced scanning is on, and none of the registry's"),
        # Under enhanced scanning the repository's own scan on push does not scan.
        ("ENHANCED", ("other-*",), True, "(enhanced scanning is on, and none of the registry's"),
    ],
)
def test_no_scanning_configured_is_one_line_at_once(
    stub: Any,
    time_: FakeTime,
    scan_type: str,
    filters: tuple[str, ...],
    scan_on_push: bool,
    why: str,
) -> None:
    no_scan(stub)
    registry(stub, scan_type, *filters)
    report = wait(stub, time_, scan_on_push=scan_on_push)
    assert not report.scanned and not report.configured
    assert time_.sleeps == []
    (line,) = report.lines()
    assert line.startswith(f"scan: no image scanning is configured for repository {REPO} {why}")
    judge(report, None, ())  # not a failure without SCAN_FAIL_ON


def test_a_refused_registry_read_is_taken_as_not_configured_and_said(
    stub: Any, time_: FakeTime
) -> None:
    no_scan(stub)
    stub.add_client_error("get_registry_scanning_configuration", "AccessDeniedException", "no", 400)
    report = wait(stub, time_, scan_on_push=False)
    assert not report.configured and time_.sleeps == []
    (line,) = report.lines()
    assert "no image scanning is configured" in line
    assert "AWS denied ecr:GetRegistryScanningConfiguration" in line


def test_an_image_the_api_does_not_know_is_one_warning_and_no_wait(
    stub: Any, time_: FakeTime
) -> None:
    stub.add_client_error("describe_image_scan_findings", "ImageNotFoundException", "gone", 400)
    report = wait(stub, time_)
    assert not report.scanned and report.configured and time_.sleeps == []
    (line,) = report.lines()
    assert line.startswith("warning: ") and "does not know" in line
    assert "the gate has nothing to read" in line


def test_an_aws_error_while_reading_ends_the_wait_unscanned(stub: Any, time_: FakeTime) -> None:
    stub.add_response("describe_image_scan_findings", answer("IN_PROGRESS"), ASKED)
    stub.add_client_error("describe_image_scan_findings", "AccessDeniedException", "no", 400)
    report = wait(stub, time_)
    assert (report.scanned, report.status) == (False, "IN_PROGRESS")
    assert "the scan could not be read: AWS denied ecr:DescribeImageScanFindings" in report.note


# -- the timeout ---------------------------------------------------------------------------


def test_a_scan_still_under_way_at_the_timeout_is_unscanned(stub: Any, time_: FakeTime) -> None:
    for _ in range(7):  # at 0, 1, 3, 7, 15, 25, 30 s
        stub.add_response("describe_image_scan_findings", answer("IN_PROGRESS"), ASKED)
    report = wait(stub, time_, timeout=30)
    assert time_.sleeps == [1, 2, 4, 8, 10, 5]  # the last sleep ends at the timeout
    assert sum(time_.sleeps) == 30
    assert (report.scanned, report.status) == (False, "IN_PROGRESS")
    assert report.note == "the scan was still IN_PROGRESS after SCAN_TIMEOUT=30 s"


def test_a_scan_that_never_starts_times_out(stub: Any, time_: FakeTime) -> None:
    no_scan(stub)  # at 0 s
    registry(stub)
    for _ in range(2):  # at 1 and 3 s; the timeout is 3 s
        no_scan(stub)
    report = wait(stub, time_, timeout=3)
    assert sum(time_.sleeps) == 3
    assert report.note == "the scan did not start within SCAN_TIMEOUT=3 s"
    assert report.status is None and report.configured


def test_an_early_empty_finished_answer_is_read_again_until_its_findings_arrive(
    stub: Any, time_: FakeTime
) -> None:
    # aws/aws-sdk#289: COMPLETE with nothing at all, then the findings.
    stub.add_response("describe_image_scan_findings", answer("COMPLETE", findings=[]), ASKED)
    stub.add_response("describe_image_scan_findings", answer("COMPLETE", findings=[]), ASKED)
    stub.add_response("describe_image_scan_findings", complete("COMPLETE", OPENSSL), ASKED)
    report = wait(stub, time_)
    assert [f.id for f in report.findings] == ["CVE-2024-1234"] and report.note == ""
    assert time_.sleeps == [1, 2]


def test_an_empty_finished_answer_is_clean_after_the_grace_and_says_so(
    stub: Any, time_: FakeTime
) -> None:
    for _ in range(4):  # at 0, 1, 3, 7 s; the grace is 5 s
        stub.add_response("describe_image_scan_findings", answer("ACTIVE", findings=[]), ASKED)
    report = wait(stub, time_, findings_grace=5)
    assert report.scanned and report.findings == ()
    assert "aws/aws-sdk#289" in report.note


def test_progress_names_the_image_and_status_changes_are_logged(
    stub: Any, time_: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ecr_release")
    shown: list[str] = []
    no_scan(stub)
    registry(stub)
    for status in ("PENDING", "IN_PROGRESS", "IN_PROGRESS"):
        stub.add_response("describe_image_scan_findings", answer(status), ASKED)
    stub.add_response("describe_image_scan_findings", complete(), ASKED)
    wait(stub, time_, progress=shown.append)
    assert shown == [f"scan {REPO}@{DIGEST} (waiting up to 300 s)"]
    logged = [r.getMessage() for r in caplog.records]
    assert logged == [
        "  scan: not started yet",
        "  scan: PENDING",
        "  scan: IN_PROGRESS",
        "  scan: COMPLETE",
    ]


# -- what the person sees --------------------------------------------------------------------


def findings(n: int, severity: str = "LOW") -> list[dict[str, Any]]:
    return [{"name": f"CVE-2000-{i:04d}", "severity": severity} for i in range(n)]


def test_the_lines_count_per_severity_and_show_the_worst_few(stub: Any, time_: FakeTime) -> None:
    stub.add_response(
        "describe_image_scan_findings",
        complete("COMPLETE", OPENSSL, *findings(6), enhanced=[CURL]),
        ASKED,
    )
    report = wait(stub, time_, ignore=("CVE-2024-9999", "CVE-2000-0005", "CVE-2099-0001"))
    lines = report.lines()
    assert lines[0] == (
        f"scan of {REPO}@{DIGEST}: COMPLETE, 8 findings: 1 CRITICAL, 1 HIGH, 6 LOW "
        "(2 ignored by SCAN_IGNORE)"
    )
    assert " ".join(lines[1].split()) == "CVE-2024-1234 CRITICAL openssl 3.0.2 no fix listed"
    assert " ".join(lines[2].split()) == (
        "CVE-2024-9999 HIGH curl 7.88.1 fixed in 8.0.0 ignored (SCAN_IGNORE)"
    )
    assert [line.split()[0] for line in lines[3:6]] == [
        "CVE-2000-0000",
        "CVE-2000-0001",
        "CVE-2000-0002",
    ]
    assert lines[6] == "  ... and 3 more (--json lists them all)"
    assert lines[7] == "  also ignored (SCAN_IGNORE): CVE-2000-0005"  # never hidden
    assert lines[8] == "  SCAN_IGNORE names CVE-2099-0001: not in this scan"
    assert len(lines) == 9
    # Columns line up.
    assert lines[1].index("CRITICAL") == lines[2].index("HIGH")


def test_a_clean_scan_is_one_line(stub: Any, time_: FakeTime) -> None:
    stub.add_response("describe_image_scan_findings", complete(), ASKED)
    assert wait(stub, time_).lines() == [f"scan of {REPO}@{DIGEST}: COMPLETE, no findings"]


def test_the_json_holds_every_finding_marked(stub: Any, time_: FakeTime) -> None:
    stub.add_response(
        "describe_image_scan_findings",
        complete("COMPLETE", OPENSSL, *findings(6), enhanced=[CURL]),
        ASKED,
    )
    document = wait(stub, time_, ignore=("CVE-2024-9999",)).as_json()
    assert document["status"] == "COMPLETE" and document["scanned"] is True
    assert document["counts"] == {"CRITICAL": 1, "HIGH": 1, "LOW": 6}
    assert len(document["findings"]) == 8 and len(document["worst"]) == 5
    assert document["worst"][1] == {
        "id": "CVE-2024-9999",
        "severity": "HIGH",
        "package": "curl",
        "version": "7.88.1",
        "fixed_in": "8.0.0",
        "ignored": True,
    }
    assert document["ignored"] == ["CVE-2024-9999"]
    assert document["image"] == DIGEST and document["repository"] == REPO


# -- the gate's verdict ----------------------------------------------------------------------


def scanned(*found: Finding, ignore: tuple[str, ...] = ()) -> ScanReport:
    return ScanReport(REPO, DIGEST, "COMPLETE", True, found).with_ignore(ignore)


WORST = Finding("CVE-2024-1234", "CRITICAL", "openssl", "3.0.2", "3.0.7")
HIGH = Finding("CVE-2024-5555", "HIGH", "zlib", "1.2")


def test_findings_at_or_above_the_threshold_fail_with_exit_10_and_one_line() -> None:
    with pytest.raises(ScanGateError) as caught:
        judge(scanned(HIGH, WORST), "HIGH", ())
    assert caught.value.exit_code == 10
    assert caught.value.message == (
        "the image's scan found 2 findings at HIGH or above (worst: CVE-2024-1234 CRITICAL in "
        "openssl 3.0.2, fixed in 3.0.7): SCAN_FAIL_ON=HIGH refuses it; fix them, or accept "
        "them in SCAN_IGNORE"
    )
    assert "\n" not in caught.value.message


def test_accepted_findings_do_not_count_against_the_threshold() -> None:
    judge(
        scanned(HIGH, WORST, ignore=("CVE-2024-1234", "CVE-2024-5555")),
        "HIGH",
        ("cve-2024-1234", "CVE-2024-5555"),
    )
    with pytest.raises(
        ScanGateError, match=r"found 1 finding at HIGH or above \(worst: CVE-2024-5555"
    ):
        judge(scanned(HIGH, WORST), "HIGH", ("CVE-2024-1234",))
    judge(scanned(HIGH), "CRITICAL", ())  # below the threshold
    judge(scanned(HIGH, WORST), None, ())  # report only


@pytest.mark.parametrize(
    "report",
    [
        ScanReport(REPO, DIGEST, "FAILED", False, note="the scan ended FAILED: oops"),
        ScanReport(REPO, DIGEST, "IN_PROGRESS", False, note="the scan was still IN_PROGRESS"),
        ScanReport(REPO, DIGEST, None, False, note="the ECR API does not know it"),
    ],
)
def test_an_unscanned_image_fails_only_with_a_threshold(report: ScanReport) -> None:
    judge(report, None, ())
    assert len(report.lines()) == 1 and report.lines()[0].startswith("warning: ")
    with pytest.raises(ScanGateError) as caught:
        judge(report, "CRITICAL", ())
    assert caught.value.message.startswith(f"{REPO}@{DIGEST} was not scanned ({report.note})")
    assert "SCAN_FAIL_ON=CRITICAL refuses" in caught.value.message


def test_no_scanning_configured_fails_only_with_a_threshold_naming_the_fix() -> None:
    report = ScanReport(
        REPO,
        DIGEST,
        None,
        False,
        note="no image scanning is configured for repository widget (scan on push is off)",
        configured=False,
    )
    judge(report, None, ())
    with pytest.raises(ScanGateError) as caught:
        judge(report, "LOW", ())
    assert "SCAN_FAIL_ON=LOW needs the image's scan" in caught.value.message
    assert "--repository-name widget --image-scanning-configuration scanOnPush=true" in (
        caught.value.message
    )


def test_a_dry_run_plans_the_gate(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ecr_release")
    plan_scan("widget:candidate", timeout=300, fail_on="HIGH")
    assert caplog.records[0].getMessage() == (
        "[dry-run] scan: wait up to 300 s for ECR's scan of widget:candidate, then refuse "
        "findings at HIGH or above (SCAN_FAIL_ON)"
    )


# -- a released version's scan (inv scan) ------------------------------------------------------


BY_TAG = {"repositoryName": REPO, "imageId": {"imageTag": "v1"}}


def test_a_versions_scan_is_read_once_by_its_tag(stub: Any) -> None:
    stub.add_response("describe_image_scan_findings", complete("COMPLETE", OPENSSL), BY_TAG)
    report = scan_of_version(stub.ecr, REPO, "v1", ignore=("CVE-2024-1234",))
    assert report.subject == f"{REPO}:v1"
    assert report.ignored == ("CVE-2024-1234",)
    assert report.lines()[0] == (
        f"scan of {REPO}:v1: COMPLETE, 1 finding: 1 CRITICAL (1 ignored by SCAN_IGNORE)"
    )


@pytest.mark.parametrize(
    ("status", "text"),
    [("IN_PROGRESS", "its scan is IN_PROGRESS: ask again"), ("FAILED", "the scan ended FAILED")],
)
def test_a_versions_unfinished_scan_is_one_line(stub: Any, status: str, text: str) -> None:
    stub.add_response("describe_image_scan_findings", answer(status), BY_TAG)
    (line,) = scan_of_version(stub.ecr, REPO, "v1").lines()
    assert line.startswith(f"warning: {REPO}:v1 was not scanned: {text}")


def test_a_version_without_a_scan_is_one_line(stub: Any) -> None:
    no_scan(stub)
    report = scan_of_version(stub.ecr, REPO, "v1")
    (line,) = report.lines()
    assert line.startswith(f"warning: {REPO}:v1 was not scanned: ECR has no scan of it")


@pytest.mark.parametrize("code", ["ImageNotFoundException", "RepositoryNotFoundException"])
def test_a_version_that_is_not_released_is_a_settings_error(stub: Any, code: str) -> None:
    stub.add_client_error("describe_image_scan_findings", code, "Requested image not found", 400)
    with pytest.raises(SettingsError) as caught:
        scan_of_version(stub.ecr, REPO, "v1")
    assert caught.value.exit_code == 2
    assert caught.value.message.startswith(f"{REPO}:v1 is not released, so it has no scan")
