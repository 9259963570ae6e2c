"""outside/ecr.py's scan calls, registry scanning and tag deletion, through botocore's
Stubber (which checks every request against ECR's model) and moto."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from ecr_release.errors import AwsError, ImageNotFoundError, ScanNotFoundError
from ecr_release.outside.ecr import Ecr, PlanningEcr, filter_matches

from ..fakes import BASIC_FINDING as BASIC
from ..fakes import ENHANCED_FINDING as ENHANCED

DIGEST = "sha256:" + "ab" * 32


def stubbed() -> tuple[Any, Stubber]:
    client = boto3.client("ecr", region_name="eu-west-1")
    return client, Stubber(client)


def page(status: str = "COMPLETE", **findings: Any) -> dict[str, Any]:
    return {
        "repositoryName": "widget",
        "imageId": {"imageDigest": DIGEST},
        "imageScanStatus": {"status": status, "description": f"said {status}"},
        "imageScanFindings": findings,
    }


def test_every_page_of_findings_is_read_and_joined() -> None:
    client, stub = stubbed()
    first = page(
        findings=[BASIC],
        findingSeverityCounts={"CRITICAL": 1, "HIGH": 1},
        imageScanCompletedAt=datetime(2030, 1, 1, tzinfo=UTC),
    )
    stub.add_response(
        "describe_image_scan_findings",
        {**first, "nextToken": "page-2"},
        {"repositoryName": "widget", "imageId": {"imageDigest": DIGEST}},
    )
    stub.add_response(
        "describe_image_scan_findings",
        page(enhancedFindings=[ENHANCED]),
        {"repositoryName": "widget", "imageId": {"imageDigest": DIGEST}, "nextToken": "page-2"},
    )
    with stub:
        found = Ecr(client).image_scan_findings("widget", DIGEST)
    stub.assert_no_pending_responses()

    assert (found.status, found.description, found.digest) == ("COMPLETE", "said COMPLETE", DIGEST)
    assert [f["name"] for f in found.findings] == ["CVE-2024-1234"]
    assert [f["severity"] for f in found.enhanced] == ["HIGH"]
    assert found.severity_counts == {"CRITICAL": 1, "HIGH": 1}
    assert found.completed_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert not found.empty


def test_a_tag_is_asked_by_tag_and_an_answer_with_nothing_is_empty() -> None:
    client, stub = stubbed()
    stub.add_response(
        "describe_image_scan_findings",
        page(findings=[]),
        {"repositoryName": "widget", "imageId": {"imageTag": "v1"}},
    )
    with stub:
        found = Ecr(client).image_scan_findings("widget", "v1")
    assert found.empty  # aws/aws-sdk#289's shape: COMPLETE, and nothing else


@pytest.mark.parametrize(
    ("code", "error", "text"),
    [
        ("ScanNotFoundException", ScanNotFoundError, "ECR has no scan of widget:v1"),
        ("ImageNotFoundException", ImageNotFoundError, "does not know widget:v1"),
        ("RepositoryNotFoundException", ImageNotFoundError, "repository widget does not exist"),
    ],
)
def test_no_scan_and_no_image_are_distinct_errors(
    code: str, error: type[AwsError], text: str
) -> None:
    client, stub = stubbed()
    stub.add_client_error("describe_image_scan_findings", code, "said so", 400)
    with stub, pytest.raises(error) as caught:
        Ecr(client).image_scan_findings("widget", "v1")
    assert text in caught.value.message
    assert caught.value.exit_code == 4


def test_a_refusal_to_read_findings_is_an_aws_error_naming_the_action() -> None:
    client, stub = stubbed()
    stub.add_client_error("describe_image_scan_findings", "AccessDeniedException", "no", 400)
    with stub, pytest.raises(AwsError) as caught:
        Ecr(client).image_scan_findings("widget", DIGEST)
    assert type(caught.value) is AwsError
    assert "AWS denied ecr:DescribeImageScanFindings" in caught.value.message


def test_moto_answers_a_started_scan_in_the_shape_that_is_read() -> None:
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"digest": "sha256:" + "c0" * 32, "size": 1, "mediaType": "x"},
            "layers": [],
        }
    )
    with mock_aws():
        client = boto3.client("ecr", region_name="eu-west-1")
        client.create_repository(repositoryName="widget")
        client.put_image(repositoryName="widget", imageManifest=manifest, imageTag="v1")
        with pytest.raises(ScanNotFoundError):
            Ecr(client).image_scan_findings("widget", "v1")
        client.start_image_scan(repositoryName="widget", imageId={"imageTag": "v1"})
        found = Ecr(client).image_scan_findings("widget", "v1")
        with pytest.raises(ImageNotFoundError):
            Ecr(client).image_scan_findings("widget", "v2")
    assert found.status == "COMPLETE"
    assert [f["name"] for f in found.findings] == ["CVE-9999-9999"]  # moto's fixed finding


# -- the registry's scanning configuration ------------------------------------------------


def scanning(scan_type: str, *rules: tuple[str, list[str]]) -> dict[str, Any]:
    return {
        "registryId": "123456789012",
        "scanningConfiguration": {
            "scanType": scan_type,
            "rules": [
                {
                    "scanFrequency": frequency,
                    "repositoryFilters": [{"filter": f, "filterType": "WILDCARD"} for f in filters],
                }
                for frequency, filters in rules
            ],
        },
    }


@pytest.mark.parametrize(
    ("answer", "enhanced", "scans", "scan_type"),
    [
        (scanning("ENHANCED", ("CONTINUOUS_SCAN", ["team/*"])), True, True, "ENHANCED"),
        (scanning("ENHANCED", ("SCAN_ON_PUSH", ["*"])), True, True, "ENHANCED"),
        (scanning("ENHANCED", ("SCAN_ON_PUSH", ["prod-*", "other"])), False, False, "ENHANCED"),
        (scanning("BASIC", ("SCAN_ON_PUSH", ["team/widget"])), False, True, "BASIC"),
        (scanning("BASIC"), False, False, "BASIC"),
    ],
)
def test_registry_scanning_applies_when_a_rules_filter_matches_the_repository(
    answer: dict[str, Any], enhanced: bool, scans: bool, scan_type: str
) -> None:
    client, stub = stubbed()
    stub.add_response("get_registry_scanning_configuration", answer, {})
    with stub:
        found = Ecr(client).registry_scanning("team/widget")
    assert (found.enhanced, found.scans_images, found.scan_type) == (enhanced, scans, scan_type)
    assert found.problem is None


def test_a_refused_registry_scanning_read_is_unknown_and_says_so() -> None:
    client, stub = stubbed()
    stub.add_client_error(
        "get_registry_scanning_configuration", "AccessDeniedException", "not allowed", 400
    )
    with stub:
        found = Ecr(client).registry_scanning("widget")
    assert (found.scan_type, found.scans_images, found.enhanced) == (None, False, False)
    assert found.problem is not None
    assert "AWS denied ecr:GetRegistryScanningConfiguration" in found.problem


def test_another_registry_scanning_error_is_an_aws_error() -> None:
    client, stub = stubbed()
    stub.add_client_error("get_registry_scanning_configuration", "ServerException", "boom", 500)
    with stub, pytest.raises(AwsError, match="GetRegistryScanningConfiguration"):
        Ecr(client).registry_scanning("widget")


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("*", "anything/at-all", True),
        ("team/*", "team/widget", True),
        ("team/*", "other/widget", False),
        ("widget", "widget", True),
        ("widget", "widget-server", False),
        ("w.dget", "widget", False),  # a dot is a dot
    ],
)
def test_wildcard_filters(pattern: str, name: str, matches: bool) -> None:
    assert filter_matches(pattern, name) is matches


# -- deleting one tag -----------------------------------------------------------------------


def test_deleting_a_tag_asks_by_tag_only() -> None:
    client, stub = stubbed()
    stub.add_response(
        "batch_delete_image",
        {"imageIds": [{"imageTag": "candidate-1", "imageDigest": DIGEST}], "failures": []},
        {"repositoryName": "widget", "imageIds": [{"imageTag": "candidate-1"}]},
    )
    with stub:
        assert Ecr(client).delete_tag("widget", "candidate-1") is True
    stub.assert_no_pending_responses()


@pytest.mark.parametrize("code", ["ImageNotFound", "ImageTagDoesNotMatchDigest"])
def test_a_tag_that_is_not_there_was_not_deleted(code: str) -> None:
    client, stub = stubbed()
    failure = {"imageId": {"imageTag": "c1"}, "failureCode": code, "failureReason": "because"}
    stub.add_response("batch_delete_image", {"failures": [failure]})
    with stub:
        assert Ecr(client).delete_tag("widget", "c1") is False


def test_another_failure_in_the_answer_is_an_aws_error_line() -> None:
    client, stub = stubbed()
    failure = {
        "imageId": {"imageTag": "c1"},
        "failureCode": "ImageReferencedByManifestList",
        "failureReason": "held by an index",
    }
    stub.add_response("batch_delete_image", {"failures": [failure]})
    with stub, pytest.raises(AwsError, match=r"refused to remove tag c1 of widget \(ImageRef"):
        Ecr(client).delete_tag("widget", "c1")


def test_a_refused_deletion_is_an_aws_error() -> None:
    client, stub = stubbed()
    stub.add_client_error("batch_delete_image", "AccessDeniedException", "no", 400)
    with stub, pytest.raises(AwsError, match="AWS denied ecr:BatchDeleteImage"):
        Ecr(client).delete_tag("widget", "c1")


def test_a_dry_run_deletes_no_tag(caplog: pytest.LogCaptureFixture) -> None:
    client, stub = stubbed()  # no response queued: any call would fail the test
    caplog.set_level("INFO", logger="ecr_release")
    with stub:
        assert PlanningEcr(client).delete_tag("widget", "c1") is True
    assert "[dry-run] candidate: ecr:BatchDeleteImage(widget, imageTag=c1)" in caplog.text
