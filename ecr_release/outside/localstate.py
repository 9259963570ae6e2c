"""What the suite keeps on this machine: login expiry per registry host, and its locks: one
per repository (a release), per image reference (a pull) and per registry host (a login).

Both live under the user's cache directory (``$XDG_CACHE_HOME/ecr-release`` or
``~/.cache/ecr-release``). The login record holds only the host, the Docker
configuration it was stored in and the token's expiry: never the token. The rule
for reusing docker's login lives here too. A dry run's :class:`LocalState` is
read-only: it takes no lock and records nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LockedError, ReleaseError, SettingsError

if TYPE_CHECKING:
    from .contextcache import DigestCache
    from .docker import Docker, DockerConfig
    from .ecr import Authorization

log = logging.getLogger(__name__)

# Lock file names keep this much of the name readable (then a hash): far below NAME_MAX.
LOCK_PREFIX_CHARS = 64
# A login is reused only while it stays valid for at least this long.
LOGIN_MARGIN = timedelta(minutes=30)
# How long a run waits for another process on this machine: its release of the same
# repository, its pull of the same image (bounded by docker's idle limit, not its length:
# a large image may take long), its login to the same registry (a token and a login).
RELEASE_WAIT_SECONDS = 900.0
# How long a login record waits for another process's update of the same file (a write
# of a few hundred bytes): past it, the record is skipped with a warning.
RECORDS_WAIT = 10.0
PULL_WAIT_SECONDS = 3600.0
LOGIN_WAIT_SECONDS = 300.0


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ecr-release"


class LoginRecords:
    """Expiry of the logins this suite made, keyed by Docker config directory and host; and
    for each AWS identity, the registry host its last token named, until that token expires.

    Never a password or token: a login's expiry, and an identity's registry host.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self._path = path
        self._read_only = read_only

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    @staticmethod
    def _key(docker_config: Path, host: str) -> str:
        return f"{docker_config.resolve()}|{host}"

    def expiry(self, docker_config: Path, host: str) -> datetime | None:
        value = self._load().get(self._key(docker_config, host))
        try:
            return datetime.fromisoformat(value) if value else None
        except ValueError:
            return None

    def record(self, docker_config: Path, host: str, expires_at: datetime | None) -> None:
        """Remember (or, with None, forget) the expiry of a login this suite made."""
        self._set(self._key(docker_config, host), _iso(expires_at))

    def remember_registry(self, identity: str, host: str, expires_at: datetime | None) -> None:
        """The registry host a token named for this AWS identity, until the token expires."""
        if expires_at is not None:
            self._set(f"registry|{identity}", f"{host} {_iso(expires_at)}")

    def forget_registry(self, identity: str) -> None:
        self._set(f"registry|{identity}", None)

    def known_registry(self, identity: str, now: datetime) -> str | None:
        """The registry host of this AWS identity's last token, while that token is valid."""
        host, _, expiry = (self._load().get(f"registry|{identity}") or "").partition(" ")
        try:
            return host if host and datetime.fromisoformat(expiry) > now else None
        except ValueError:
            return None

    def _set(self, key: str, value: str | None) -> None:
        if self._read_only:
            return
        # A record is an optimisation (it saves a login): failing to keep one is not an error.
        # Read, change and write under the file's own lock: two releases at once (several
        # services) each keep their record.
        try:
            with release_lock(
                self._path.parent / "locks",  # beside the state's other locks
                f"records:{self._path.name}",
                timeout=RECORDS_WAIT,
                what=f"update of {self._path.name}",
                sleep=lambda _: time.sleep(0.01),  # held for a write: look again soon
            ):
                data = self._load()
                if value is None:
                    data.pop(key, None)
                else:
                    data[key] = value
                # A private temp name per writer, renamed into place whole.
                fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".logins.", suffix=".tmp")
                with os.fdopen(fd, "w") as handle:
                    handle.write(json.dumps(data, indent=1, sort_keys=True))
                os.replace(tmp, self._path)
        except (OSError, ReleaseError) as exc:
            message = exc.message if isinstance(exc, ReleaseError) else exc
            log.warning("warning: could not record the login in %s: %s", self._path, message)

    def forget(self, docker_config: Path, host: str) -> None:
        self.record(docker_config, host, None)

    def still_valid(self, docker_config: Path, host: str, now: datetime | None = None) -> bool:
        expiry = self.expiry(docker_config, host)
        now = now or datetime.now(UTC)
        return expiry is not None and expiry - now >= LOGIN_MARGIN

    def reuse_reason(self, config: DockerConfig, host: str, now: datetime) -> str | None:
        """Why docker's login to ``host`` can be used as it is; None when a new one is needed."""
        if config.uses_ecr_helper(host):
            return f"docker uses the ecr-login credential helper for {host}"
        if self.still_valid(config.directory, host, now) and config.holds_login(host):
            return f"the login to {host} is valid for 30 minutes or more"
        return None


class LocalState:
    """One run's use of the cache directory: its login records, its release locks and the
    build contexts' file digests."""

    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        self.directory = directory
        self.read_only = read_only
        self.logins = LoginRecords(directory / "logins.json", read_only=read_only)

    def context_digests(self, context: Path) -> DigestCache:
        """The build context's file digests, kept between runs (see ``contextcache``)."""
        from .contextcache import DigestCache

        return DigestCache.for_context(self.directory, context, read_only=self.read_only)

    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Serialize releases of ``name`` on this machine (nothing to hold in a dry run)."""
        return self._hold(name, f"release of {name}", RELEASE_WAIT_SECONDS)

    def pull_lock(self, reference: str) -> contextlib.AbstractContextManager[None]:
        """One ``docker pull`` of ``reference`` at a time on this machine."""
        return self._hold(pull_lock_name(reference), f"pull of {reference}", PULL_WAIT_SECONDS)

    def login_lock(self, host: str) -> contextlib.AbstractContextManager[None]:
        """One login to the registry ``host`` at a time on this machine (and one writer of
        docker's config.json for it)."""
        return self._hold(login_lock_name(host), f"login to {host}", LOGIN_WAIT_SECONDS)

    def _hold(
        self, name: str, what: str, timeout: float
    ) -> contextlib.AbstractContextManager[None]:
        if self.read_only:
            return contextlib.nullcontext()
        return release_lock(
            self.directory / "locks",
            name,
            timeout=timeout,
            on_wait=lambda: log.info("waiting for another %s on this machine", what),
            what=what,
        )


# A repository's lock name is REGION-REPOSITORY, and neither holds a colon: these never
# equal one.
def pull_lock_name(reference: str) -> str:
    return f"pull:{reference}"


def login_lock_name(host: str) -> str:
    return f"login:{host}"


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def lock_file_name(name: str) -> str:
    """A short readable prefix and a hash of the whole name: bounded in length, and two
    names never share a lock (``team/app`` and ``team_app`` differ in their hash)."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:LOCK_PREFIX_CHARS].strip(".")
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{readable}-{digest}.lock"


@contextlib.contextmanager
def release_lock(
    directory: Path,
    name: str,
    *,
    timeout: float = 900.0,
    on_wait: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    what: str | None = None,
) -> Iterator[None]:
    """Hold an exclusive lock named ``name`` on this machine; wait up to ``timeout`` seconds.
    ``what`` is what the holder does, in words (``release of NAME`` unless told).

    The kernel releases a ``flock`` when its process dies, so a crashed release
    never leaves a stale lock behind. Each call opens the file anew: a second hold from
    the same process (another thread, or a nested call) waits like any other.
    """
    path = directory / lock_file_name(name)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise SettingsError(
            f"cannot create the release lock {path}: {exc.strerror or exc}; set XDG_CACHE_HOME "
            "to a writable directory"
        ) from exc
    with handle:
        deadline = clock() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                if clock() >= deadline:
                    raise LockedError(
                        f"another {what or 'release of ' + name} is still running on this "
                        f"machine after {timeout:.0f}s: wait for it to finish, then run the "
                        "release again"
                    ) from None
                sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class StoredLogins:
    """What this machine knows about the registry of one AWS identity, without asking AWS:
    the host its last token named (while valid), and the login docker holds for it."""

    records: LoginRecords
    identity: str
    docker: Docker
    now: Callable[[], datetime]

    def host(self) -> str | None:
        return self.records.known_registry(self.identity, self.now())

    def credential(self, host: str) -> tuple[str, str] | None:
        return self.docker.stored_credential(host)

    def remember(self, auth: Authorization) -> None:
        self.records.remember_registry(self.identity, auth.host, auth.expires_at)

    def refused(self, host: str) -> None:
        self.records.forget(self.docker.config().directory, host)

    def forget_registry(self) -> None:
        self.records.forget_registry(self.identity)
