"""From a built image to its version tag, through a candidate: the version appears only when
every gate has passed.

``release`` no longer pushes to the version tag. It pushes the image under a *candidate*
tag named from the inputs' fingerprint (``ecr-release-candidate-<24 hex>``: no tag a
person would choose), and:

1. **gates, at the same time**: the smoke test runs the image here from the moment it is
   built; beside it, the candidate is pushed, read back from the registry and **verified**
   (its digest is what docker pushed, its config is the local image), and its image scan
   is awaited and judged (**the scan gate**, ``flows.scan``). The first gate that fails
   stops the other: a smoke failure stops the push or the scan's wait (and removes what
   was pushed); a push, verification or scan failure stops the smoke test. All must pass.
2. **the version**: the candidate's exact manifest bytes are put under the version tag,
   on the registry side (nothing is pulled or pushed), and the version tag is verified.
3. the candidate tag is **removed**, by tag only: the image stays under its version.
   Meanwhile the local image is tagged ``HOST/REPOSITORY:version`` (as the manual flow
   leaves it) and loses its local candidate tag, and the smoke test's container is
   removed; the release ends when all of that is done.

A gate that fails leaves no version tag: the candidate tag is removed, and where that
fails, a lifecycle rule (with ``ECR_EXPIRE_UNTAGGED_DAYS``) expires it. An interrupted run
(Ctrl-C, SIGTERM, a killed job) leaves its candidate: the rerun of the same inputs finds
it by its fingerprint and reuses it (no second push); the gates still run.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..errors import RegistryError, ReleaseError, ScanGateError
from ..model.fingerprint import Fingerprint
from ..outside.docker import Docker, push_with_retries
from ..outside.ecr import CANDIDATE_PREFIX
from ..outside.registry import Manifest
from .beside import until_set
from .held import signals_held
from .published import Published

log = logging.getLogger("ecr_release")


def candidate_tag(fingerprint: Fingerprint) -> str:
    """The candidate tag of a build: its fingerprint's first 24 hex digits."""
    return CANDIDATE_PREFIX + fingerprint.digest.partition(":")[2][:24]


# Hands work to a thread that the run joins before it ends (ThreadPoolExecutor.submit).
Defer = Callable[[Callable[[], None]], Future[None]]


class GateStopped(Exception):
    """The other gate failed: this one stops where it is."""


@dataclass
class Gates:
    """What the gates found: the candidate, whether it was reused, the smoke test's outcome
    and time, the scan's report."""

    candidate: str
    reused: bool = False
    smoke: str | None = None  # None: not run
    smoke_seconds: float = 0.0
    push_seconds: float = 0.0
    scan: Any = None  # a flows.scan report, or None when no scan was read
    removed: bool = False  # the candidate tag is gone
    pushing: bool = False  # this run started to push the candidate (it may be in the registry)
    released: bool = False  # the version tag is put and verified

    def as_json(self) -> dict[str, Any]:
        scan = self.scan.as_json() if self.scan is not None else None
        return {
            "candidate": self.candidate,
            "candidate_reused": self.reused,
            "candidate_removed": self.removed,
            "smoke_test": self.smoke,
            "scan": scan,
        }


@dataclass
class Shipping:
    """The collaborators the candidate flow needs, handed in by ``Release``.

    ``parallel`` (a real run) runs the gates beside each other and the end's tidying
    beside the candidate tag's removal; a dry run (False) shows them as plan lines, one
    after the other, in the order the real run begins them."""

    docker: Docker
    published: Published
    progress: Callable[[str], None]
    smoke: Callable[..., object] | None  # (image, sleep=..., defer=...) -> outcome; None: none
    scan: Callable[..., Any]  # (repository, digest, sleep=...) -> report (raises at the gate)
    relogin: Callable[[], None]
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    parallel: bool = True
    # The version and the candidate's removal get AWS time of their own, whatever the gates
    # spent (a long scan wait must never leave the candidate tag on a released image).
    new_step: Callable[[], None] = lambda: None

    def ship(
        self, version: str, local: str, remote: Callable[[str], str], mine: Fingerprint
    ) -> tuple[str, Gates]:
        """Push ``local`` as the candidate, pass the gates, put the version; return the
        version's verified digest and what the gates found."""
        gates = Gates(candidate_tag(mine))
        candidate = remote(gates.candidate)
        reused = self.published.identical_candidate(gates.candidate, mine)
        gates.reused = reused is not None
        if reused is not None:
            log.info("reusing candidate %s, pushed from the same inputs before", candidate)
        try:
            verified = self._through_gates(gates, version, local, remote, candidate, reused)
        except ReleaseError as exc:
            if not gates.released:  # after the version is out, the failure is no gate's
                exc.gates = gates  # what the gates found, for the failure's report
            raise
        except KeyboardInterrupt:
            if gates.released and gates.removed:  # held until both were done
                log.warning(
                    "interrupted once %s was released and verified, its candidate tag removed",
                    remote(version),
                )
            raise
        return verified, gates

    def _through_gates(
        self,
        gates: Gates,
        version: str,
        local: str,
        remote: Callable[[str], str],
        candidate: str,
        reused: Manifest | None,
    ) -> str:
        # What may finish while the run goes on (the smoke test's container removal, the
        # local tags): joined before this returns, or before the process ends if it raises.
        # From the version's put to the candidate's removal, Ctrl-C and SIGTERM wait:
        # stopped between them, the released image would keep the candidate tag, and the
        # lifecycle rule that expires candidates would expire the image with it.
        with (
            ThreadPoolExecutor(2, thread_name_prefix="tidy") as after,
            contextlib.ExitStack() as finish,
        ):
            try:
                digest = self._gates(
                    gates, local, candidate, reused.digest if reused else None, after.submit
                )
                self.new_step()
                finish.enter_context(signals_held())
                verified = self.published.tags.put_version(version, gates.candidate, digest)
                gates.released = True
            except KeyboardInterrupt:
                # Stopped, not refused: a candidate that made it to the registry stays for a
                # rerun of the same inputs to reuse (the lifecycle rule expires it otherwise).
                log.warning(
                    "interrupted: the candidate tag %s stays if its push got through; a "
                    "rerun of the same inputs reuses it",
                    gates.candidate,
                )
                raise
            except BaseException:
                if gates.pushing or gates.reused:  # else the registry's tag is not this run's
                    self.new_step()
                    remove_candidate(self.published, gates, failed=True)
                self.docker.untag(candidate)
                raise
            # Here as in the registry: the image carries its version's name, not the
            # candidate's; docker does that while the registry removes the candidate tag.
            retag = functools.partial(self._retag, local, remote(version), candidate)
            retagged = after.submit(retag) if self.parallel else None
            remove_candidate(self.published, gates, failed=False)
            finish.close()  # both done: a held signal ends the run now, not after docker
            if retagged is None:  # a dry run: its plan lines in order
                retag()
            else:
                retagged.result()
        return verified

    def tidy(self, mine: Fingerprint) -> None:
        """A rerun of a released version: remove the candidate tag an earlier run of the same
        inputs left (it could not remove it, or was stopped there). Asks the registry only,
        unless there is one."""
        tag = candidate_tag(mine)
        if self.published.digest_of(tag) is not None and self.published.remove_tag(tag):
            log.info("removed the candidate tag %s an earlier run left behind", tag)

    def _gates(
        self, gates: Gates, local: str, candidate: str, reused: str | None, defer: Defer
    ) -> str:
        """The gates, at the same time: here the smoke test; beside it the candidate's push
        (unless reused), its verification, then its scan. The candidate's verified digest
        once both passed; the first gate that fails stops the other."""
        stop_candidate, stop_smoke = threading.Event(), threading.Event()
        found: dict[str, Any] = {}
        waiting = _stoppable(self.sleep, stop_candidate)

        def pushed() -> str:
            if reused is not None:
                return reused
            self.progress(f"tag {candidate}")
            self.docker.tag(local, candidate)
            self.progress(f"push {candidate}")
            started = self.monotonic()
            gates.pushing = True  # from here on the registry may hold the candidate tag
            try:
                digest = push_with_retries(
                    self.docker,
                    candidate,
                    relogin=self.relogin,
                    sleep=waiting if self.parallel else self.sleep,
                    cancel=stop_candidate,
                )
            finally:
                gates.push_seconds = self.monotonic() - started
            return self.published.verify(gates.candidate, digest, candidate)

        def scanned(digest: str, sleep: Callable[[float], None]) -> None:
            try:
                gates.scan = self.scan(self.published.name, digest, sleep=sleep)
            except ScanGateError as exc:
                gates.scan = exc.report  # refused: what it found is still reported
                raise

        if not self.parallel:
            digest = pushed()
            self._smoke_gate(gates, local, self.sleep, None)
            scanned(digest, self.sleep)
            return digest

        done = threading.Event()

        def candidate_gates() -> None:
            try:
                found["digest"] = pushed()
                scanned(found["digest"], waiting)
            except GateStopped:
                pass  # the smoke test failed: its error is the one to report
            except BaseException as exc:
                found["error"] = exc
                stop_smoke.set()
            finally:
                done.set()

        worker = threading.Thread(target=candidate_gates, name="candidate", daemon=True)
        worker.start()
        try:
            # GateStopped: the candidate's gates failed; their error is the one to report.
            with contextlib.suppress(GateStopped):
                self._smoke_gate(gates, local, _stoppable(self.sleep, stop_smoke), defer)
            until_set(done)
        except BaseException as exc:  # the smoke test failed (or Ctrl-C): stop the others too
            stop_candidate.set()
            until_set(done)
            if (other := found.get("error")) is not None and not isinstance(exc, KeyboardInterrupt):
                said = str(other) or type(other).__name__  # a ReleaseError's str is its line
                log.warning("warning: the candidate's gates failed as well: %s", said)
            raise
        if "error" in found:
            raise found["error"]
        verified: str = found["digest"]
        return verified

    def _smoke_gate(
        self, gates: Gates, local: str, sleep: Callable[[float], None], defer: Defer | None
    ) -> None:
        if self.smoke is None:
            return
        started = self.monotonic()
        options: dict[str, Any] = {"sleep": sleep}
        if defer is not None:  # its container is removed while the release goes on
            options["defer"] = defer
        result = self.smoke(local, **options)
        gates.smoke_seconds = self.monotonic() - started
        gates.smoke = str(result) if result is not None else "passed"

    def _retag(self, local: str, version: str, candidate: str) -> None:
        self.docker.tag(local, version)
        self.docker.untag(candidate)


def remove_candidate(published: Published, gates: Gates, *, failed: bool) -> None:
    """Take the candidate tag away, by tag only. After a failed gate a removal that fails is
    a warning (the image is not released: a rerun of the same inputs reuses it); after the
    version is out it is an error: the released image would carry both tags, and the
    lifecycle rule for candidates would expire it."""
    try:
        gates.removed = published.remove_tag(gates.candidate)
    except ReleaseError as exc:
        by_hand = (
            f"aws ecr batch-delete-image --repository-name {published.name} "
            f"--image-ids imageTag={gates.candidate}"
        )
        if failed:
            log.warning(
                "warning: the candidate tag %s could not be removed (%s): a rerun of the same "
                "inputs reuses it; else remove it (%s), or let the lifecycle rule of "
                "ECR_EXPIRE_UNTAGGED_DAYS expire it",
                *(gates.candidate, exc.message, by_hand),
            )
            return
        raise RegistryError(
            f"the version is released and verified, but its candidate tag {gates.candidate} "
            f"could not be removed ({exc.message}): run the release again (it removes it), "
            f"or remove it by hand ({by_hand})"
        ) from exc


def _stoppable(sleep: Callable[[float], None], stop: threading.Event) -> Callable[[float], None]:
    """``sleep`` that ends the waiting gate when ``stop`` is set (the other gate failed, or
    Ctrl-C): the real ``time.sleep`` is a wait on ``stop``, so a scan's 10 s poll ends at
    once; a clock of a test's own is called as it is, and checked before and after."""

    def wait(seconds: float) -> None:
        if stop.is_set():
            raise GateStopped
        if sleep is time.sleep:
            stopped = stop.wait(seconds)
        else:
            sleep(seconds)
            stopped = stop.is_set()
        if stopped:
            raise GateStopped

    return wait
