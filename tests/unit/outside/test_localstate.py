"""Login records (expiry only, never a token) and the per-machine release lock."""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType

import pytest

from ecr_release.errors import LockedError
from ecr_release.outside.docker import DockerConfig
from ecr_release.outside.localstate import (
    LOGIN_MARGIN,
    LocalState,
    LoginRecords,
    cache_dir,
    lock_file_name,
    login_lock_name,
    pull_lock_name,
    release_lock,
)

from ..fakes import FakeTime

HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
OTHER_HOST = "210987654321.dkr.ecr.us-east-1.amazonaws.com"
EXPIRY = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def records(tmp_path: Path) -> LoginRecords:
    return LoginRecords(tmp_path / "state" / "logins.json")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "docker-config"
    path.mkdir()
    return path


# -- cache dir ---------------------------------------------------------------------------


def test_cache_dir_honours_xdg_cache_home(tmp_path: Path) -> None:
    assert cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "ecr-release"


@pytest.mark.parametrize("environ", [{}, {"XDG_CACHE_HOME": ""}])
def test_cache_dir_defaults_to_home_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, environ: dict[str, str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir(environ) == tmp_path / ".cache" / "ecr-release"


def test_cache_dir_reads_the_process_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "ecr-release"


# -- login records -----------------------------------------------------------------------


def test_nothing_recorded(records: LoginRecords, config: Path) -> None:
    assert records.expiry(config, HOST) is None
    assert records.still_valid(config, HOST, now=EXPIRY - timedelta(days=1)) is False


def test_record_round_trip_normalises_to_utc(records: LoginRecords, config: Path) -> None:
    local = EXPIRY.astimezone(timezone(timedelta(hours=2)))
    records.record(config, HOST, local)
    got = records.expiry(config, HOST)
    assert got == EXPIRY
    assert got is not None
    assert got.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("left", "valid"),
    [
        (timedelta(hours=11), True),
        (LOGIN_MARGIN + timedelta(seconds=1), True),
        (LOGIN_MARGIN, True),
        (LOGIN_MARGIN - timedelta(microseconds=1), False),
        (LOGIN_MARGIN - timedelta(seconds=1), False),
        (timedelta(0), False),
        (-timedelta(hours=1), False),
    ],
)
def test_still_valid_needs_thirty_minutes_left(
    records: LoginRecords, config: Path, left: timedelta, valid: bool
) -> None:
    assert timedelta(minutes=30) == LOGIN_MARGIN
    records.record(config, HOST, EXPIRY)
    assert records.still_valid(config, HOST, now=EXPIRY - left) is valid


def test_still_valid_defaults_to_the_current_time(records: LoginRecords, config: Path) -> None:
    records.record(config, HOST, datetime.now(UTC) + timedelta(hours=1))
    assert records.still_valid(config, HOST) is True
    records.record(config, HOST, datetime.now(UTC) + timedelta(minutes=29))
    assert records.still_valid(config, HOST) is False


def test_records_are_keyed_by_config_dir_and_host(
    records: LoginRecords, config: Path, tmp_path: Path
) -> None:
    other_config = tmp_path / "other-config"
    records.record(config, HOST, EXPIRY)
    assert records.expiry(config, HOST) == EXPIRY
    assert records.expiry(config, OTHER_HOST) is None
    assert records.expiry(other_config, HOST) is None
    later = EXPIRY + timedelta(hours=1)
    records.record(other_config, HOST, later)
    assert records.expiry(config, HOST) == EXPIRY
    assert records.expiry(other_config, HOST) == later


def test_the_config_dir_is_compared_resolved(
    records: LoginRecords, config: Path, tmp_path: Path
) -> None:
    records.record(config, HOST, EXPIRY)
    assert records.expiry(tmp_path / "x" / ".." / config.name, HOST) == EXPIRY


def test_forget_drops_only_that_record(records: LoginRecords, config: Path) -> None:
    records.record(config, HOST, EXPIRY)
    records.record(config, OTHER_HOST, EXPIRY)
    records.forget(config, HOST)
    assert records.expiry(config, HOST) is None
    assert records.still_valid(config, HOST, now=EXPIRY - timedelta(hours=2)) is False
    assert records.expiry(config, OTHER_HOST) == EXPIRY
    records.forget(config, HOST)  # forgetting twice is harmless
    assert records.expiry(config, OTHER_HOST) == EXPIRY


def test_recording_none_forgets(records: LoginRecords, config: Path) -> None:
    records.record(config, HOST, EXPIRY)
    records.record(config, HOST, None)
    assert records.expiry(config, HOST) is None


@pytest.mark.parametrize(
    "content",
    ["{not json", "", "[1, 2, 3]", '"a string"', "\x00\xff garbage"],
)
def test_a_corrupt_file_is_treated_as_empty(
    records: LoginRecords, config: Path, tmp_path: Path, content: str
) -> None:
    path = tmp_path / "state" / "logins.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    assert records.expiry(config, HOST) is None
    assert records.still_valid(config, HOST, now=EXPIRY) is False
    records.record(config, HOST, EXPIRY)
    assert records.expiry(config, HOST) == EXPIRY
    assert json.loads(path.read_text()) == {f"{config.resolve()}|{HOST}": EXPIRY.isoformat()}


def test_an_unreadable_expiry_is_none(records: LoginRecords, config: Path, tmp_path: Path) -> None:
    path = tmp_path / "state" / "logins.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({f"{config.resolve()}|{HOST}": "next tuesday"}))
    assert records.expiry(config, HOST) is None
    assert records.still_valid(config, HOST, now=EXPIRY) is False


def test_the_file_holds_only_config_host_and_expiry(
    records: LoginRecords, config: Path, tmp_path: Path
) -> None:
    # There is no way to hand it a token at all ...
    params = list(inspect.signature(LoginRecords.record).parameters)
    assert params == ["self", "docker_config", "host", "expires_at"]
    records.record(config, HOST, EXPIRY)
    records.record(config, OTHER_HOST, EXPIRY + timedelta(hours=1))
    path = tmp_path / "state" / "logins.json"
    # ... and the file holds exactly "<config>|<host>": "<expiry>", nothing else.
    assert json.loads(path.read_text()) == {
        f"{config.resolve()}|{HOST}": "2030-01-02T03:04:05+00:00",
        f"{config.resolve()}|{OTHER_HOST}": "2030-01-02T04:04:05+00:00",
    }
    text = path.read_text()
    assert "AWS:" not in text
    assert "password" not in text.lower()
    assert "token" not in text.lower()
    assert sorted(p.name for p in path.parent.iterdir()) == ["locks", "logins.json"]
    # The file's own lock, taken while a record is written: empty.
    assert [p.stat().st_size for p in (path.parent / "locks").iterdir()] == [0]


# -- release lock ----------------------------------------------------------------------


class Holder:
    """Holds a lock in another thread until released."""

    def __init__(self, directory: Path, name: str) -> None:
        self._directory = directory
        self._name = name
        self._acquired = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with release_lock(self._directory, self._name, timeout=0):
            self._acquired.set()
            self._release.wait(10)

    def release(self) -> None:
        self._release.set()
        self._thread.join(10)
        assert not self._thread.is_alive()

    def __enter__(self) -> Holder:
        self._thread.start()
        assert self._acquired.wait(10)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _free(directory: Path, name: str) -> bool:
    """Whether the lock can be taken right now."""
    try:
        with release_lock(directory, name, timeout=0):
            return True
    except LockedError:
        return False


def test_a_held_lock_times_out_with_locked_error(tmp_path: Path) -> None:
    fake = FakeTime()
    waits: list[int] = []
    with (
        Holder(tmp_path, "eu-west-1-widgets"),
        pytest.raises(LockedError) as info,
        release_lock(
            tmp_path,
            "eu-west-1-widgets",
            timeout=2.0,
            on_wait=lambda: waits.append(1),
            clock=fake.clock,
            sleep=fake.sleep,
        ),
    ):
        pytest.fail("acquired a lock that another thread holds")
    assert waits == [1]
    assert fake.sleeps and all(s == pytest.approx(0.2) for s in fake.sleeps)
    # It gave up only once the deadline passed, and did not sleep past it.
    assert fake.now >= 100.0 + 2.0
    assert fake.now - fake.sleeps[-1] < 100.0 + 2.0
    assert "another release of eu-west-1-widgets is still running" in info.value.message
    assert "after 2s" in info.value.message
    assert info.value.exit_code == 7


def test_zero_timeout_fails_at_once(tmp_path: Path) -> None:
    fake = FakeTime()
    with (
        Holder(tmp_path, "x"),
        pytest.raises(LockedError),
        release_lock(tmp_path, "x", timeout=0, clock=fake.clock, sleep=fake.sleep),
    ):
        pytest.fail("acquired a held lock")
    assert fake.sleeps == []


def test_a_waiter_gets_the_lock_once_it_is_released(tmp_path: Path) -> None:
    fake = FakeTime()
    waits: list[int] = []
    holder = Holder(tmp_path, "repo").__enter__()

    def sleep(seconds: float) -> None:
        fake.sleep(seconds)
        if len(fake.sleeps) == 3:
            holder.release()

    entered = False
    with release_lock(
        tmp_path,
        "repo",
        timeout=60,
        on_wait=lambda: waits.append(1),
        clock=fake.clock,
        sleep=sleep,
    ):
        entered = True
        assert not _free(tmp_path, "repo")
    assert entered
    assert waits == [1]
    assert len(fake.sleeps) == 3


def test_a_free_lock_does_not_wait(tmp_path: Path) -> None:
    fake = FakeTime()
    waits: list[int] = []
    with release_lock(
        tmp_path / "new" / "dir", "x", on_wait=lambda: waits.append(1), sleep=fake.sleep
    ):
        assert (tmp_path / "new" / "dir").is_dir()
    assert waits == []
    assert fake.sleeps == []


def test_different_names_do_not_block_each_other(tmp_path: Path) -> None:
    with release_lock(tmp_path, "eu-west-1-widgets"):
        assert _free(tmp_path, "eu-west-1-gadgets")
        assert _free(tmp_path, "us-east-1-widgets")
        assert not _free(tmp_path, "eu-west-1-widgets")


def test_the_lock_is_released_after_the_block(tmp_path: Path) -> None:
    with release_lock(tmp_path, "x"):
        assert not _free(tmp_path, "x")
    assert _free(tmp_path, "x")


def test_the_lock_is_released_after_an_exception(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), release_lock(tmp_path, "x"):
        raise RuntimeError("boom")
    assert _free(tmp_path, "x")


@pytest.mark.parametrize("name", ["eu-west-1-team/app", "../../escape", "a b:c*d"])
def test_the_lock_file_stays_in_its_directory(tmp_path: Path, name: str) -> None:
    directory = tmp_path / "locks"
    with release_lock(directory, name):
        files = list(directory.iterdir())
        assert len(files) == 1
        assert files[0].suffix == ".lock"
        assert files[0].parent == directory
        assert not _free(directory, name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locks"]


_HOLD = """
import sys, time
from pathlib import Path
from ecr_release.outside.localstate import release_lock
with release_lock(Path(sys.argv[1]), sys.argv[2], timeout=0):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_lock_of_a_killed_process_does_not_block(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path), "eu-west-1-widgets"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "held\n"
        assert not _free(tmp_path, "eu-west-1-widgets")
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode != 0
    fake = FakeTime()
    with release_lock(tmp_path, "eu-west-1-widgets", timeout=0, sleep=fake.sleep):
        assert fake.sleeps == []


def test_concurrent_writers_never_collide(tmp_path: Path) -> None:
    """Releases of different repositories hold different locks and may save at once."""
    import threading

    path = tmp_path / "logins.json"
    errors: list[BaseException] = []
    expires = datetime(2030, 1, 1, tzinfo=UTC)

    def writer(host: str) -> None:
        try:
            for _ in range(150):
                LoginRecords(path).record(tmp_path / "docker", host, expires)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"h{i}.example",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert json.loads(path.read_text())  # a whole JSON document, never a torn one
    assert list(tmp_path.glob("*.tmp")) == []


def test_records_written_at_once_are_all_kept(tmp_path: Path) -> None:
    """Several services log in and record at once: no record is lost to another's write."""
    import threading

    path = tmp_path / "logins.json"
    expires = datetime(2030, 1, 1, tzinfo=UTC)

    def writer(i: int) -> None:
        for n in range(40):
            LoginRecords(path).record(tmp_path / "docker", f"h{i}-{n}.example", expires)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(json.loads(path.read_text())) == 160


# -- reusing docker's login, and a dry run's read-only state ------------------------------


def _docker_config(tmp_path: Path, data: Mapping[str, object]) -> DockerConfig:
    return DockerConfig(tmp_path / "docker", data)


def test_reuse_reason_with_the_ecr_login_helper(records: LoginRecords, tmp_path: Path) -> None:
    for data in ({"credHelpers": {HOST: "ecr-login"}}, {"credsStore": "ecr-login"}):
        reason = records.reuse_reason(_docker_config(tmp_path, data), HOST, NOW)
        assert reason == f"docker uses the ecr-login credential helper for {HOST}"


def test_reuse_reason_needs_both_a_fresh_record_and_dockers_login(
    records: LoginRecords, tmp_path: Path
) -> None:
    holding = _docker_config(tmp_path, {"auths": {HOST: {"auth": "x"}}})
    assert records.reuse_reason(holding, HOST, NOW) is None  # nothing recorded
    records.record(holding.directory, HOST, NOW + timedelta(hours=2))
    assert records.reuse_reason(holding, HOST, NOW) == (
        f"the login to {HOST} is valid for 30 minutes or more"
    )
    assert records.reuse_reason(_docker_config(tmp_path, {}), HOST, NOW) is None
    assert records.reuse_reason(holding, HOST, NOW + timedelta(hours=1, minutes=31)) is None


def test_read_only_state_records_nothing_and_takes_no_lock(tmp_path: Path) -> None:
    state = LocalState(tmp_path / "cache", read_only=True)
    state.logins.record(tmp_path / "docker", HOST, NOW + timedelta(hours=2))
    state.logins.forget(tmp_path / "docker", HOST)
    with state.lock("eu-west-1-widgets"), state.lock("eu-west-1-widgets"):
        pass
    assert not (tmp_path / "cache").exists()


def test_a_read_only_state_takes_no_pull_or_login_lock(tmp_path: Path) -> None:
    state = LocalState(tmp_path / "cache", read_only=True)
    with (
        state.pull_lock("python:3.12-slim"),
        state.pull_lock("python:3.12-slim"),
        state.login_lock(HOST),
        state.login_lock(HOST),
    ):
        pass
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    ("take", "name"),
    [
        (lambda state: state.pull_lock("python:3.12-slim"), pull_lock_name("python:3.12-slim")),
        (lambda state: state.login_lock(HOST), login_lock_name(HOST)),
    ],
    ids=["pull", "login"],
)
def test_pull_and_login_locks_are_held_under_the_state_directory(
    tmp_path: Path,
    take: Callable[[LocalState], contextlib.AbstractContextManager[None]],
    name: str,
) -> None:
    locks = tmp_path / "cache" / "locks"
    with take(LocalState(tmp_path / "cache")):
        assert not _free(locks, name)
        assert _free(locks, "eu-west-1-widgets")  # a release of a repository: not held
    assert _free(locks, name)


def test_a_lock_that_times_out_names_what_its_holder_does(tmp_path: Path) -> None:
    with (
        Holder(tmp_path, pull_lock_name("python:3")),
        pytest.raises(LockedError, match=r"^another pull of python:3 is still running on this"),
        release_lock(tmp_path, pull_lock_name("python:3"), timeout=0, what="pull of python:3"),
    ):
        pass


def test_a_wait_for_a_pull_or_a_login_says_what_it_waits_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = LocalState(tmp_path / "cache")
    locks = tmp_path / "cache" / "locks"
    takes: list[tuple[str, contextlib.AbstractContextManager[None], str]] = [
        (pull_lock_name("python:3"), state.pull_lock("python:3"), "pull of python:3"),
        (login_lock_name(HOST), state.login_lock(HOST), f"login to {HOST}"),
    ]
    for name, taken, said in takes:
        holder = Holder(locks, name).__enter__()
        threading.Timer(0.5, holder.release).start()
        with caplog.at_level(logging.INFO), taken:
            pass
        assert f"waiting for another {said} on this machine" in caplog.text


def test_pull_and_login_lock_names_never_equal_a_repositorys(tmp_path: Path) -> None:
    """A release's lock is REGION-REPOSITORY; a pull's or a login's holds a colon, which
    neither a region nor a repository name can."""
    names = {
        pull_lock_name("eu-west-1-widgets"),
        login_lock_name("eu-west-1-widgets"),
        pull_lock_name(f"{HOST}/eu-west-1-widgets:v1"),
        login_lock_name(HOST),
    }
    assert all(":" in name for name in names)
    assert "eu-west-1-widgets" not in names
    files = {lock_file_name(name) for name in names}
    assert lock_file_name("eu-west-1-widgets") not in files
    assert len(files) == len(names)
    # And held at once, none blocks the release's lock.
    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(release_lock(tmp_path, name, timeout=0))
        assert _free(tmp_path, "eu-west-1-widgets")


def test_state_locks_under_its_directory(tmp_path: Path) -> None:
    state = LocalState(tmp_path / "cache")
    with (
        state.lock("eu-west-1-widgets"),
        pytest.raises(LockedError),
        release_lock(tmp_path / "cache" / "locks", "eu-west-1-widgets", timeout=0),
    ):
        pass


def test_lock_names_are_bounded_and_never_collide(tmp_path: Path) -> None:
    long_name = "eu-west-1-" + "a" * 256  # a valid 256-character repository name
    names = [long_name, "eu-west-1-team/app", "eu-west-1-team_app", "eu-west-1-" + "a" * 255]
    files = [lock_file_name(name) for name in names]
    assert len(set(files)) == len(files)
    assert all(len(f) <= 90 for f in files)
    assert files[1].startswith("eu-west-1-team_app-")
    # Held at once, they do not block one another; a 256-character name gets its lock.
    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(release_lock(tmp_path, name, timeout=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)
