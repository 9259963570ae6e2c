"""The release's report: text for people, one JSON document, GitHub Actions' files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecr_release.cli.report import (
    as_json,
    as_text,
    error_json,
    write_failure_files,
    write_github_files,
)
from ecr_release.errors import OutputError
from ecr_release.flows.release import Summary
from ecr_release.model.fingerprint import Fingerprint

HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
DIGEST = "sha256:" + "4f1c" * 16
PRINT = Fingerprint(*(f"sha256:{c * 64}" for c in "abcd"))


def summary(**overrides: object) -> Summary:
    values: dict[str, object] = {
        "image_uri": f"{HOST}/widget-server:v1",
        "digest": DIGEST,
        "repository": "widget-server",
        "version": "v1",
        "registry": HOST,
        "timings": [("check", 0.41), ("build", 21.3), ("push", 6.24)],
        "fingerprint": PRINT,
    }
    values.update(overrides)
    return Summary(**values)  # type: ignore[arg-type]


def test_the_json_document_holds_what_a_pipeline_needs() -> None:
    document = as_json(summary())
    assert json.loads(json.dumps(document)) == {
        "ok": True,
        "image": f"{HOST}/widget-server:v1",
        "repository": "widget-server",
        "version": "v1",
        "digest": DIGEST,
        "tags": ["v1"],
        "registry": HOST,
        "already_released": False,
        "dry_run": False,
        "fingerprint": {
            "digest": PRINT.digest,
            "context": "sha256:" + "a" * 64,
            "dockerfile": "sha256:" + "b" * 64,
            "base": "sha256:" + "c" * 64,
            "build_args": "sha256:" + "d" * 64,
        },
        "steps": {"check": 0.41, "build": 21.3, "push": 6.24},
        "total_seconds": 27.95,
    }


def test_a_dry_run_document_carries_the_plan() -> None:
    plan = ["check: x is not released yet", "build: docker build -t x ."]
    document = as_json(summary(dry_run=True, digest="(dry-run)"), plan)
    assert document["dry_run"] is True and document["plan"] == plan
    assert "plan" not in as_json(summary(), plan)


def test_an_error_document() -> None:
    assert error_json("no AWS credentials found", 4) == {
        "ok": False,
        "error": "no AWS credentials found",
        "exit_code": 4,
    }


@pytest.mark.parametrize(
    ("overrides", "title"),
    [
        ({}, "released and verified"),
        ({"already_released": True}, "already released: the same image is in the registry"),
        ({"dry_run": True}, "dry run: nothing was built"),
    ],
)
def test_the_text_summary(overrides: dict[str, object], title: str) -> None:
    lines = as_text(summary(**overrides)).splitlines()
    assert lines[0].startswith(title)
    assert lines[1:] == [
        f"  image:  {HOST}/widget-server:v1",
        f"  digest: {DIGEST}",
        "  steps:  check 0.4s, build 21.3s, push 6.2s (total 28.0s)",
    ]


def test_github_files_are_appended_to(tmp_path: Path) -> None:
    output, step_summary = tmp_path / "output", tmp_path / "summary.md"
    output.write_text("earlier=1\n")
    environ = {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(step_summary)}
    write_github_files(summary(), environ)
    assert output.read_text() == (
        f"earlier=1\nimage={HOST}/widget-server:v1\ndigest={DIGEST}\nregistry={HOST}\ntags=v1\n"
    )
    table = step_summary.read_text()
    assert table.startswith("### Released widget-server:v1\n")
    assert f"| `{HOST}/widget-server:v1` | `{DIGEST}` | check 0.4s" in table


def test_nothing_is_written_without_the_variables_or_for_a_dry_run(tmp_path: Path) -> None:
    write_github_files(summary(), {})
    output = tmp_path / "output"
    write_github_files(summary(dry_run=True), {"GITHUB_OUTPUT": str(output)})
    assert not output.exists()


def test_an_unwritable_output_file_says_the_image_was_released(tmp_path: Path) -> None:
    with pytest.raises(OutputError) as info:
        write_github_files(summary(), {"GITHUB_OUTPUT": str(tmp_path / "no" / "such" / "file")})
    message = info.value.message
    assert message.startswith(f"the image was released as {HOST}/widget-server:v1@{DIGEST}")
    assert "nothing was undone" in message and "GITHUB_OUTPUT" in message
    assert info.value.exit_code == 9


def gated() -> Summary:
    from ecr_release.flows.candidate import Gates
    from ecr_release.flows.scan import ScanReport
    from ecr_release.model.scan import Finding

    scan = ScanReport(
        "widget-server",
        DIGEST,
        "COMPLETE",
        True,
        (
            Finding("CVE-2026-0001", "HIGH", "openssl", "3.0.1", "3.0.2"),
            Finding("CVE-2026-0002", "LOW", "zlib", "1.2", None),
        ),
        ignored=("CVE-2026-0002",),
    )
    gates = Gates("ecr-release-candidate-" + "a" * 24, smoke="passed", scan=scan, removed=True)
    return summary(gates=gates)


def test_the_gates_are_named_in_the_text_json_and_github_files(tmp_path: Path) -> None:
    text = as_text(gated()).splitlines()
    assert text[3] == f"  candidate: ecr-release-candidate-{'a' * 24}, removed"
    assert text[4] == "  gates:  smoke test passed; scan COMPLETE, 1 HIGH, 1 LOW (1 ignored)"
    document = json.loads(json.dumps(as_json(gated())))
    assert document["candidate"] == "ecr-release-candidate-" + "a" * 24
    assert document["smoke_test"] == "passed" and document["candidate_removed"] is True
    assert document["scan"]["counts"] == {"HIGH": 1, "LOW": 1}
    assert [f["id"] for f in document["scan"]["worst"]] == ["CVE-2026-0001", "CVE-2026-0002"]
    assert document["scan"]["worst"][1]["ignored"] is True
    output, step_summary = tmp_path / "output", tmp_path / "summary.md"
    environ = {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(step_summary)}
    write_github_files(gated(), environ)
    assert "scan=COMPLETE, 1 HIGH, 1 LOW (1 ignored)\n" in output.read_text()
    table = step_summary.read_text()
    assert "| CVE-2026-0001 | HIGH | openssl 3.0.1 | 3.0.2 |\n" in table
    assert "| CVE-2026-0002 | LOW (ignored) | zlib 1.2 | - |\n" in table


def test_a_failure_at_the_gates_names_what_they_found(tmp_path: Path) -> None:
    gates = gated().gates
    assert gates is not None
    message = "1 finding at HIGH or above (worst: CVE-2026-0001 HIGH openssl 3.0.1)"
    document = json.loads(json.dumps(error_json(message, 10, gates)))
    assert document["ok"] is False and document["exit_code"] == 10
    assert document["candidate"] == gates.candidate and document["candidate_removed"] is True
    assert document["scan"]["counts"] == {"HIGH": 1, "LOW": 1}
    output, step_summary = tmp_path / "output", tmp_path / "summary.md"
    environ = {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(step_summary)}
    assert write_failure_files(message, "widget-server:v1", gates, environ) is None
    assert output.read_text() == (
        f"candidate={gates.candidate}\nsmoke_test=passed\n"
        "scan=COMPLETE, 1 HIGH, 1 LOW (1 ignored)\n"
    )
    table = step_summary.read_text()
    assert table.startswith(f"### Not released: widget-server:v1\n\n{message}\n")
    assert "| CVE-2026-0001 | HIGH | openssl 3.0.1 | 3.0.2 |\n" in table


def test_another_failure_writes_no_github_file_and_a_file_that_fails_is_a_warning(
    tmp_path: Path,
) -> None:
    output = tmp_path / "output"
    environ = {"GITHUB_OUTPUT": str(output)}
    assert write_failure_files("docker build failed", "w:v1", None, environ) is None
    assert not output.exists()
    gates = gated().gates
    unwritable = {"GITHUB_OUTPUT": str(tmp_path / "no" / "such" / "file")}
    warning = write_failure_files("refused", "w:v1", gates, unwritable)
    assert warning is not None and warning.startswith("warning: GITHUB_OUTPUT ")
    assert error_json("docker build failed", 3) == {
        "ok": False,
        "error": "docker build failed",
        "exit_code": 3,
    }
