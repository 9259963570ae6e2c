"""The scan gate: wait for ECR's scan of a pushed image, report its findings, judge them.

:func:`wait_for_scan` polls ``DescribeImageScanFindings`` for one image (by digest)
through the run's bounded ECR client, with a backoff (1 s doubling to 10 s) within
``SCAN_TIMEOUT``, and returns a :class:`ScanReport`. Every status ECR answers ends in
one of three ways:

* **wait**: ``IN_PROGRESS``, ``PENDING``; and ``ScanNotFoundException`` (the scan has
  not started) while scan on push, or a registry scanning rule, covers the repository.
* **scanned**: ``COMPLETE``, and ``ACTIVE`` (enhanced scanning keeps monitoring the
  image: its first scan is done; botocore's ``image_scan_complete`` waiter knows only
  COMPLETE and FAILED and times out on it, aws/aws-sdk#288).
* **unscanned**, with ECR's status and description: ``FAILED``, ``UNSUPPORTED_IMAGE``,
  ``SCAN_ELIGIBILITY_EXPIRED``, ``FINDINGS_UNAVAILABLE``, ``LIMIT_EXCEEDED`` (and
  ``IMAGE_ARCHIVED``, ``IMAGE_SIZE_EXCEEDED``, or a status this module does not know);
  the timeout; an AWS error while reading. Two of them without a wait:
  ``ImageNotFoundException`` (the ECR API does not know the image: nothing to read) and
  a repository that no scanning covers ("no image scanning is configured").

:func:`judge` turns a report into the gate's verdict for ``SCAN_FAIL_ON`` and
``SCAN_IGNORE`` (the rule is in ``model/scan.py``): a :class:`ScanGateError` (exit 10,
one line) when findings at or above the threshold are not accepted, or when the image
cannot be shown to be scanned while ``SCAN_FAIL_ON`` is set. Without it, findings are
reported only. :func:`scan_of_version` reads a released version's scan once, for ``inv
scan``.

Not here: pushing, tagging or deleting (the release's), printing (the task layer prints
:meth:`ScanReport.lines`), settings (handed in as values).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Any

from ..errors import AwsError, ImageNotFoundError, ScanGateError, ScanNotFoundError, SettingsError
from ..model.scan import (
    WORST_SHOWN,
    Finding,
    blocking,
    count_words,
    counts,
    ignored,
    parse_findings,
)
from ..outside.ecr import Ecr, RegistryScanning, ScanFindings

log = logging.getLogger("ecr_release")

WAITING = frozenset({"IN_PROGRESS", "PENDING"})
DONE = frozenset({"COMPLETE", "ACTIVE"})
FIRST_POLL = 1.0
MAX_POLL = 10.0
# An enhanced scan may answer COMPLETE (or ACTIVE) with nothing at all before its
# findings arrive (aws/aws-sdk#289); such an answer is read again for this long (within
# the timeout) before it is taken as a clean scan. A basic scan's answer always carries
# its completion time, so it is never held back.
FINDINGS_GRACE = 20.0


def _silent(what: str) -> None:
    """No progress lines."""


@dataclass(frozen=True)
class ScanReport:
    """What the gate found of one image: ECR's status (None: no scan answered), whether it
    was scanned, every finding (worst first), the ids ``SCAN_IGNORE`` accepted among them,
    and one line saying why it was not scanned or what to keep in mind."""

    repository: str
    reference: str  # the image's digest, or its tag
    status: str | None
    scanned: bool
    findings: tuple[Finding, ...] = ()
    ignored: tuple[str, ...] = ()
    note: str = ""
    configured: bool = True  # False: no scanning covers the repository
    unmatched_ignores: tuple[str, ...] = ()  # SCAN_IGNORE ids this scan did not find

    @property
    def subject(self) -> str:
        separator = "@" if self.reference.startswith("sha256:") else ":"
        return f"{self.repository}{separator}{self.reference}"

    @property
    def counts(self) -> dict[str, int]:
        """The number of findings per severity, worst first (ignored ones included)."""
        return counts(self.findings)

    def with_ignore(self, ignore: Collection[str]) -> ScanReport:
        """The same report with ``SCAN_IGNORE``'s ids marked."""
        accepted = tuple(dict.fromkeys(f.id for f in ignored(self.findings, ignore)))
        found = {f.id.upper() for f in self.findings}
        unmatched = tuple(i for i in ignore if i.upper() not in found) if self.scanned else ()
        return replace(self, ignored=accepted, unmatched_ignores=unmatched)

    def is_ignored(self, finding: Finding) -> bool:
        return finding.id in self.ignored

    def lines(self) -> list[str]:
        """For the person: the counts per severity and the worst few (id, severity, package,
        fixed-in version; ignored ones marked), or one line when there is nothing to show."""
        if not self.configured:
            return [f"scan: {self.note}"]
        if not self.scanned:
            return [f"warning: {self.subject} was not scanned: {self.note}"]
        total = len(self.findings)
        if total == 0:
            head = f"scan of {self.subject}: {self.status}, no findings"
        else:
            plural = "finding" if total == 1 else "findings"
            found = count_words(self.counts)
            head = f"scan of {self.subject}: {self.status}, {total} {plural}: {found}"
            if self.ignored:
                head += f" ({len(self.ignored)} ignored by SCAN_IGNORE)"
        lines = [head]
        shown = self.findings[:WORST_SHOWN]
        rows = [
            (
                f.id,
                f.severity,
                " ".join(p for p in (f.package, f.version) if p) or "-",
                f"fixed in {f.fixed_in}" if f.fixed_in else "no fix listed",
                "ignored (SCAN_IGNORE)" if self.is_ignored(f) else "",
            )
            for f in shown
        ]
        widths = [max((len(row[i]) for row in rows), default=0) for i in range(4)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            lines.append(("  " + "  ".join([*cells, row[4]])).rstrip())
        if total > len(shown):
            lines.append(f"  ... and {total - len(shown)} more (--json lists them all)")
        hidden = [i for i in self.ignored if i not in {f.id for f in shown}]
        if hidden:
            lines.append(f"  also ignored (SCAN_IGNORE): {', '.join(hidden)}")
        if self.unmatched_ignores:
            lines.append(
                f"  SCAN_IGNORE names {', '.join(self.unmatched_ignores)}: not in this scan"
            )
        if self.note:
            lines.append(f"  note: {self.note}")
        return lines

    def summary_line(self) -> str:
        """A few words for the summary: the status and the counts, or why there is no scan."""
        if not self.configured:
            return "not configured"
        if not self.scanned:
            return f"not scanned ({self.status or 'no scan'})"
        if not self.findings:
            return f"{self.status}, no findings"
        words = f"{self.status}, {count_words(self.counts)}"
        return words + (f" ({len(self.ignored)} ignored)" if self.ignored else "")

    def as_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "image": self.reference,
            "status": self.status,
            "scanned": self.scanned,
            "configured": self.configured,
            "note": self.note or None,
            "counts": self.counts,
            "worst": [
                {**f.as_json(), "ignored": self.is_ignored(f)} for f in self.findings[:WORST_SHOWN]
            ],
            "ignored": list(self.ignored),
            "findings": [{**f.as_json(), "ignored": self.is_ignored(f)} for f in self.findings],
        }


@dataclass
class _Poll:
    """The wait's state between two reads."""

    started: float
    delay: float
    status: str | None = "?"  # the last status logged (None: no scan yet; "?": none logged)
    scanning: RegistryScanning | None = None  # asked once, on the first ScanNotFound
    empty_since: float | None = None  # when a finished scan first answered with nothing


def wait_for_scan(
    ecr: Ecr,
    repository_name: str,
    digest: str,
    *,
    scan_on_push: bool,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] = _silent,
    ignore: Collection[str] = (),
    first_poll: float = FIRST_POLL,
    max_poll: float = MAX_POLL,
    findings_grace: float = FINDINGS_GRACE,
) -> ScanReport:
    """Wait (within ``timeout`` seconds) for ECR's scan of ``repository_name@digest``,
    basic or enhanced, and report it; see the module's rule. ``scan_on_push`` is the
    repository's own setting (``Repository.scan_on_push``); registry-level rules are asked
    only when ECR has no scan of the image. Never raises for what the scan says: that is
    :func:`judge`'s."""
    progress(f"scan {repository_name}@{digest} (waiting up to {timeout:.0f} s)")
    poll = _Poll(started=clock(), delay=first_poll)
    base = ScanReport(repository_name, digest, None, False)
    while True:
        # The wait is bounded by ``timeout``, each poll by the API's own limits: a long wait
        # must not use up the AWS time of the calls after it (the candidate's removal).
        ecr.new_step()
        try:
            answer: ScanFindings | None = ecr.image_scan_findings(repository_name, digest)
        except ImageNotFoundError as exc:
            return replace(base, note=f"{exc.message}; the gate has nothing to read")
        except ScanNotFoundError:
            answer = None
            if poll.scanning is None:
                poll.scanning = _registry_scanning(ecr, repository_name)
            if not covered(scan_on_push, poll.scanning):
                note = not_configured(repository_name, scan_on_push, poll.scanning)
                return replace(base, configured=False, note=note)
        except AwsError as exc:
            last = None if poll.status == "?" else poll.status
            return replace(base, status=last, note=f"the scan could not be read: {exc.message}")
        now = clock()
        status = answer.status if answer is not None else None
        if status != poll.status:
            log.info("  scan: %s", status or "not started yet")
            poll.status = status
        if answer is not None:
            if status in DONE:
                poll.empty_since = now if poll.empty_since is None else poll.empty_since
                held = answer.empty and now - poll.empty_since < findings_grace
                if not held or now - poll.started >= timeout:
                    return _scanned(base, answer, ignore)
            elif status not in WAITING:
                return _ended(base, answer)
        remaining = timeout - (now - poll.started)
        if remaining <= 0:
            return replace(base, status=status, note=_timeout_note(status, timeout))
        sleep(min(poll.delay, remaining))
        poll.delay = min(poll.delay * 2, max_poll)


def covered(scan_on_push: bool, scanning: RegistryScanning) -> bool:
    """Will ECR scan the repository's new images? A registry rule that covers it says so;
    under enhanced scanning a repository no rule covers is not scanned whatever its own
    scan on push says; otherwise the repository's scan on push decides."""
    if scanning.scans_images:
        return True
    if scanning.scan_type == "ENHANCED":
        return False
    return scan_on_push


def not_configured(name: str, scan_on_push: bool, scanning: RegistryScanning) -> str:
    """The one line for a repository no scanning covers."""
    if scanning.scan_type == "ENHANCED":
        why = "enhanced scanning is on, and none of the registry's rules covers it"
    else:
        why = "scan on push is off" if not scan_on_push else "no registry rule covers it"
    line = f"no image scanning is configured for repository {name} ({why})"
    if scanning.problem:
        line += f"; {scanning.problem}"
    return line


def _registry_scanning(ecr: Ecr, name: str) -> RegistryScanning:
    try:
        return ecr.registry_scanning(name)
    except AwsError as exc:
        return RegistryScanning(None, problem=f"{exc.message}; taken as not configured")


def _scanned(base: ScanReport, answer: ScanFindings, ignore: Collection[str]) -> ScanReport:
    note = ""
    if answer.empty:
        # aws/aws-sdk#289: the answer may still be early; nothing better can be told
        # from the API than reading it again later.
        note = (
            f"ECR says {answer.status} but lists nothing, not even a count: an enhanced scan "
            "may say so before its findings arrive (aws/aws-sdk#289); `inv scan` reads "
            "them again"
        )
    report = replace(
        base,
        status=answer.status,
        scanned=True,
        findings=parse_findings(answer.findings, answer.enhanced),
        note=note,
    )
    return report.with_ignore(ignore)


def _ended(base: ScanReport, answer: ScanFindings) -> ScanReport:
    description = f": {answer.description}" if answer.description else ""
    return replace(
        base,
        status=answer.status,
        note=f"the scan ended {answer.status or 'with no status'}{description}",
    )


def _timeout_note(status: str | None, timeout: float) -> str:
    if status is None:
        return f"the scan did not start within SCAN_TIMEOUT={timeout:.0f} s"
    return f"the scan was still {status} after SCAN_TIMEOUT={timeout:.0f} s"


def scan_of_version(
    ecr: Ecr, repository_name: str, version: str, *, ignore: Collection[str] = ()
) -> ScanReport:
    """A released version's scan, read once (by its tag; no wait), for ``inv scan``. A
    version the ECR API does not know is a ``SettingsError``: it is not released."""
    base = ScanReport(repository_name, version, None, False)
    try:
        answer = ecr.image_scan_findings(repository_name, version)
    except ImageNotFoundError as exc:
        raise SettingsError(
            f"{repository_name}:{version} is not released, so it has no scan ({exc.message})"
        ) from exc
    except ScanNotFoundError:
        return replace(
            base,
            note="ECR has no scan of it (scanning did not cover the repository when it was "
            "pushed, or the scan has not started)",
        )
    if answer.status in DONE:
        return _scanned(base, answer, ignore)
    if answer.status in WAITING:
        return replace(
            base, status=answer.status, note=f"its scan is {answer.status}: ask again in a minute"
        )
    return _ended(base, answer)


def judge(report: ScanReport, fail_on: str | None, ignore: Collection[str]) -> None:
    """The gate: raise :class:`ScanGateError` (exit 10, one line) when ``fail_on`` is set
    and the scan found unaccepted findings at or above it, or the image was not shown to be
    scanned. Without ``fail_on`` nothing is refused: ``report.lines()`` say what was found."""
    if fail_on is None:
        return
    if not report.configured:
        raise ScanGateError(
            f"SCAN_FAIL_ON={fail_on} needs the image's scan, but {report.note}: turn on scan on "
            f"push (aws ecr put-image-scanning-configuration --repository-name "
            f"{report.repository} --image-scanning-configuration scanOnPush=true) or enhanced "
            "scanning, or unset SCAN_FAIL_ON to release unscanned images"
        )
    if not report.scanned:
        raise ScanGateError(
            f"{report.subject} was not scanned ({report.note}): SCAN_FAIL_ON={fail_on} "
            "refuses an image whose scan cannot show it has no finding at "
            f"{fail_on} or above; scan it, or unset SCAN_FAIL_ON to only report"
        )
    found = blocking(report.findings, fail_on, ignore)
    if found:
        plural = "finding" if len(found) == 1 else "findings"
        raise ScanGateError(
            f"the image's scan found {len(found)} {plural} at {fail_on} or above (worst: "
            f"{found[0].words()}): SCAN_FAIL_ON={fail_on} refuses it; fix them, or accept "
            "them in SCAN_IGNORE"
        )


@dataclass(frozen=True)
class ScanGate:
    """The release's scan gate, as ``Shipping`` calls it: wait for the candidate's scan
    (the repository's own scan on push, as ECR describes it, decides whether a missing scan
    is worth waiting for), print what it found, judge it. Returns the report; raises
    :class:`ScanGateError` when ``SCAN_FAIL_ON`` refuses the image."""

    ecr: Callable[[], Ecr]  # the run's bounded ECR client, opened on first use
    scan_on_push: Callable[[], bool]
    timeout: float
    fail_on: str | None
    ignore: Collection[str] = ()
    progress: Callable[[str], None] = _silent
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def __call__(
        self,
        repository_name: str,
        digest: str,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> ScanReport:
        """``sleep``, when given, is the wait between polls for this call (one that raises
        when another gate failed ends the wait)."""
        report = wait_for_scan(
            self.ecr(),
            repository_name,
            digest,
            scan_on_push=self.scan_on_push(),
            timeout=self.timeout,
            clock=self.clock,
            sleep=sleep or self.sleep,
            progress=self.progress,
            ignore=self.ignore,
        )
        lines = report.lines()
        quiet = not report.configured and self.fail_on is None
        for line in lines:
            (log.info if quiet or report.scanned else log.warning)("%s", line)
        try:
            judge(report, self.fail_on, self.ignore)
        except ScanGateError as exc:
            exc.report = report  # the failure's report names the findings too
            raise
        return report


def plan_scan(subject: str, *, timeout: float, fail_on: str | None) -> None:
    """A dry run's scan gate: what it would do, as a plan line (nothing is read)."""
    verdict = (
        f"refuse findings at {fail_on} or above (SCAN_FAIL_ON)"
        if fail_on
        else "report the findings (SCAN_FAIL_ON is not set)"
    )
    log.info(
        "[dry-run] scan: wait up to %.0f s for ECR's scan of %s, then %s", timeout, subject, verdict
    )
