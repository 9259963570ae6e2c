"""From a built image to its version tag, through a candidate: the version appears only when
every gate has passed.

``release`` no longer pushes to the version tag. It pushes the image under a *candidate*
tag named from the inputs' fingerprint (``ecr-release-candidate-<24 hex>``: no tag a
person would choose), and:

1. **gates, at the same time**: the candidate is pushed while the smoke test runs the
   image here. A smoke failure stops the push (and removes what was pushed); a push
   failure stops the smoke test. Both must pass.
2. the candidate is read back from the registry and **verified** (its digest is what
   docker pushed, its config is the local image).
3. **the scan gate**: the candidate's image scan is awaited and judged (``flows.scan``).
4. **the version**: the candidate's exact manifest bytes are put under the version tag,
   on the registry side (nothing is pulled or pushed), and the version tag is verified.
5. the candidate tag is **removed**, by tag only: the image stays under its version. The
   local image is tagged ``HOST/REPOSITORY:version`` (as the manual flow leaves it) and
   loses its local candidate tag.

A gate that fails leaves no version tag: the candidate tag is removed, and where that
fails, a lifecycle rule (with ``ECR_EXPIRE_UNTAGGED_DAYS``) expires it. An interrupted run
(Ctrl-C, SIGTERM, a killed job) leaves its candidate: the rerun of the same inputs finds
it by its fingerprint and reuses it (no second push); the gates still run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import RegistryError, ReleaseError
from ..model.fingerprint import Fingerprint
from ..outside.docker import Docker, push_with_retries
from ..outside.ecr import CANDIDATE_PREFIX
from .published import Published

log = logging.getLogger("ecr_release")


def candidate_tag(fingerprint: Fingerprint) -> str:
    """The candidate tag of a build: its fingerprint's first 24 hex digits."""
    return CANDIDATE_PREFIX + fingerprint.digest.partition(":")[2][:24]


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
    """The collaborators the candidate flow needs, handed in by ``Release``."""

    docker: Docker
    published: Published
    progress: Callable[[str], None]
    smoke: Callable[..., object] | None  # (image, sleep=...) -> outcome; None: no smoke test
    scan: Callable[[str, str], Any]  # (repository, digest) -> report (raises at the gate)
    relogin: Callable[[], None]
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic

    def ship(
        self, version: str, local: str, remote: Callable[[str], str], mine: Fingerprint
    ) -> tuple[str, Gates]:
        """Push ``local`` as the candidate, pass the gates, put the version; return the
        version's verified digest and what the gates found."""
        name = self.published.name
        gates = Gates(candidate_tag(mine))
        candidate = remote(gates.candidate)
        reused = self.published.identical_candidate(gates.candidate, mine)
        gates.reused = reused is not None
        if reused is not None:
            log.info(
                "reusing candidate %s, pushed from the same inputs by an earlier run", candidate
            )
        else:
            self.progress(f"tag {candidate}")
            self.docker.tag(local, candidate)
        try:
            digest = self._gates(gates, local, candidate, reused.digest if reused else None)
            gates.scan = self.scan(name, digest)
            verified = self.published.tags.put_version(version, gates.candidate, digest)
        except KeyboardInterrupt:
            # Stopped, not refused: a candidate that made it to the registry stays for a
            # rerun of the same inputs to reuse (the lifecycle rule expires it otherwise).
            log.warning(
                "interrupted: the candidate tag %s stays if its push got through; a rerun "
                "of the same inputs reuses it",
                gates.candidate,
            )
            raise
        except BaseException:
            self._remove(gates, failed=True)
            self.docker.untag(candidate)
            raise
        self._remove(gates, failed=False)
        # Here as in the registry: the image carries its version's name, not the candidate's.
        self.docker.tag(local, remote(version))
        self.docker.untag(candidate)
        return verified, gates

    def tidy(self, mine: Fingerprint) -> None:
        """A rerun of a released version: remove the candidate tag an earlier run of the same
        inputs left (it could not remove it, or was stopped there). Asks the registry only,
        unless there is one."""
        tag = candidate_tag(mine)
        if self.published.digest_of(tag) is not None and self.published.remove_tag(tag):
            log.info("removed the candidate tag %s an earlier run left behind", tag)

    def _gates(self, gates: Gates, local: str, candidate: str, reused: str | None) -> str:
        """The push (unless reused) and the smoke test at the same time; the candidate's
        verified digest."""
        stop_push, stop_smoke = threading.Event(), threading.Event()
        outcome: dict[str, Any] = {}

        def push() -> None:
            started = self.monotonic()
            try:
                if reused is None:
                    self.progress(f"push {candidate}")
                    outcome["digest"] = push_with_retries(
                        self.docker,
                        candidate,
                        relogin=self.relogin,
                        sleep=self.sleep,
                        cancel=stop_push,
                    )
                else:
                    outcome["digest"] = reused
            except BaseException as exc:
                outcome["error"] = exc
                stop_smoke.set()
            finally:
                gates.push_seconds = self.monotonic() - started

        worker = threading.Thread(target=push, name="push-candidate", daemon=True)
        worker.start()
        try:
            if self.smoke is not None:
                started = self.monotonic()
                result = self.smoke(local, sleep=_stoppable(self.sleep, stop_smoke))
                gates.smoke_seconds = self.monotonic() - started
                gates.smoke = str(result) if result is not None else "passed"
        except GateStopped:
            pass  # the push failed: its error is the one to report
        except BaseException:  # the smoke test failed (or Ctrl-C): stop the push too
            stop_push.set()
            worker.join()
            raise
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
        pushed: str | None = outcome.get("digest")
        if reused is not None:
            return reused
        return self.published.verify(gates.candidate, pushed, candidate)

    def _remove(self, gates: Gates, *, failed: bool) -> None:
        """Take the candidate tag away, by tag only. After a failed gate a removal that
        fails is a warning (a lifecycle rule expires the tag); after the version is out it
        is an error: the image would carry both tags."""
        try:
            gates.removed = self.published.remove_tag(gates.candidate)
        except ReleaseError as exc:
            if failed:
                log.warning(
                    "warning: the candidate tag %s could not be removed (%s): the "
                    "repository's lifecycle rule expires it (ECR_EXPIRE_UNTAGGED_DAYS)",
                    *(gates.candidate, exc.message),
                )
                return
            raise RegistryError(
                f"the version is released and verified, but its candidate tag {gates.candidate} "
                f"could not be removed ({exc.message}): run the release again (it removes "
                "it), or remove the tag by hand"
            ) from exc


def _stoppable(sleep: Callable[[float], None], stop: threading.Event) -> Callable[[float], None]:
    """``sleep`` that ends the waiting gate when ``stop`` is set (the other gate failed)."""

    def wait(seconds: float) -> None:
        if stop.is_set():
            raise GateStopped
        sleep(seconds)
        if stop.is_set():
            raise GateStopped

    return wait
