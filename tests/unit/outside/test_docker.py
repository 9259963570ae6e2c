"""The docker CLI wrapper, through a fake runner (the real runner: test_process.py)."""

from __future__ import annotations

import ast
import base64
import contextlib
import io
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import ecr_release.outside.docker as docker_module
from ecr_release.errors import DockerError, SettingsError, VersionExistsError
from ecr_release.outside.docker import (
    TIMED_OUT,
    Docker,
    DockerConfig,
    ImageInfo,
    PlanningRunner,
    PushFailure,
    Result,
    SubprocessRunner,
    classify_push_failure,
    last_error_line,
    parse_push_digest,
    push_with_retries,
)
from ecr_release.outside.localstate import release_lock

AUTH, FATAL, IMMUTABLE_TAG, TRANSIENT = (
    PushFailure.AUTH,
    PushFailure.FATAL,
    PushFailure.IMMUTABLE_TAG,
    PushFailure.TRANSIENT,
)

PASSWORD = "eyJwYXlsb2FkIjoiczNjcjN0LXBhc3N3b3JkIn0="
HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
DAEMON_DOWN = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
    "Is the docker daemon running?\n"
)
DIGEST = "sha256:" + "ab12" * 16


@dataclass(frozen=True)
class Call:
    args: list[str]
    input: str | None
    stream: bool


class FakeRunner:
    """Records every argument list, and the limits it came with, and answers scripted
    results (exit 0 by default)."""

    def __init__(self, *results: Result) -> None:
        self.calls: list[Call] = []
        # (verb, timeout, idle) per call
        self.limits: list[tuple[str, float | None, float | None]] = []
        self._results = list(results)

    def __call__(
        self,
        args: Sequence[str],
        *,
        input: str | None = None,
        stream: bool = False,
        timeout: float | None = None,
        idle: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Result:
        self.calls.append(Call(list(args), input, stream))
        self.limits.append((args[1], timeout, idle))
        return self.answer(args)

    def answer(self, args: Sequence[str]) -> Result:
        return self._results.pop(0) if self._results else Result(0, "")


@pytest.fixture(autouse=True)
def _no_docker_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)


# -- argument lists ---------------------------------------------------------------


def _build(docker: Docker, **spec: Any) -> None:
    docker.build(
        docker.build_command(
            spec["image"], spec["dockerfile"], spec["context"], spec["build_args"], spec["labels"]
        )
    )


def test_build_argument_list_is_exact_and_streamed() -> None:
    runner = FakeRunner()
    _build(
        Docker(runner),
        image="widgets:v1",
        dockerfile=Path("docker/Dockerfile"),
        context=Path("/src/app"),
        build_args={"APP_VERSION": "v1", "BUILD_DATE": "2024-05-01T10:00:00Z"},
        labels={
            "org.opencontainers.image.version": "v1",
            "org.opencontainers.image.revision": "abc123",
        },
    )
    assert runner.calls == [
        Call(
            [
                "docker",
                "build",
                "-t",
                "widgets:v1",
                "-f",
                "docker/Dockerfile",
                "--build-arg",
                "APP_VERSION=v1",
                "--build-arg",
                "BUILD_DATE=2024-05-01T10:00:00Z",
                "--label",
                "org.opencontainers.image.version=v1",
                "--label",
                "org.opencontainers.image.revision=abc123",
                "/src/app",
            ],
            None,
            True,
        )
    ]


def test_build_without_args_or_labels_ends_with_the_context() -> None:
    runner = FakeRunner()
    _build(
        Docker(runner, binary="/usr/local/bin/docker"),
        image="app:v2",
        dockerfile=Path("Dockerfile"),
        context=Path("."),
        build_args={},
        labels={},
    )
    assert runner.calls[0].args == [
        "/usr/local/bin/docker",
        "build",
        "-t",
        "app:v2",
        "-f",
        "Dockerfile",
        ".",
    ]


def test_a_value_with_spaces_stays_one_argument() -> None:
    args = Docker(FakeRunner()).build_command(
        "app:v1", Path("Dockerfile"), Path("."), {"NOTE": "a b; rm -rf /"}, {}
    )
    assert args[args.index("--build-arg") + 1] == "NOTE=a b; rm -rf /"


def test_build_failure_reports_the_exit_code_and_dockers_error_line() -> None:
    output = (
        "Step 1/4 : FROM python:3.11-slim\n"
        "Step 2/4 : RUN false\n"
        "The command '/bin/sh -c false' returned a non-zero code: 1\n"
        "error: build step 2 failed\n"
        "done\n"
    )
    runner = FakeRunner(Result(1, output))
    with pytest.raises(DockerError) as info:
        _build(
            Docker(runner),
            image="a:v1",
            dockerfile=Path("Dockerfile"),
            context=Path("."),
            build_args={},
            labels={},
        )
    assert info.value.message == "docker build failed (exit 1): error: build step 2 failed"


def test_tag_argument_list() -> None:
    runner = FakeRunner()
    Docker(runner).tag("widgets:v1", f"{HOST}/widgets:v1")
    assert runner.calls == [
        Call(["docker", "tag", "widgets:v1", f"{HOST}/widgets:v1"], None, False)
    ]


def test_tag_of_a_missing_image_says_to_run_inv_build() -> None:
    runner = FakeRunner(Result(1, "Error response from daemon: No such image: widgets:v1\n"))
    with pytest.raises(DockerError) as info:
        Docker(runner).tag("widgets:v1", f"{HOST}/widgets:v1")
    assert "widgets:v1" in info.value.message
    assert "`inv build`" in info.value.message


def test_tag_other_failure_reports_dockers_line() -> None:
    runner = FakeRunner(Result(1, 'Error parsing reference: "Bad:Ref" is not a valid reference\n'))
    with pytest.raises(DockerError) as info:
        Docker(runner).tag("widgets:v1", "Bad:Ref")
    assert info.value.message.startswith("docker tag failed (exit 1): Error parsing reference")
    assert "inv build" not in info.value.message


def test_push_is_streamed_and_returns_the_result_unchanged() -> None:
    answer = Result(1, "denied: nope\n")
    runner = FakeRunner(answer)
    assert Docker(runner).push(f"{HOST}/widgets:v1") is answer
    assert runner.calls == [Call(["docker", "push", f"{HOST}/widgets:v1"], None, True)]


def test_login_passes_the_password_on_stdin_only() -> None:
    runner = FakeRunner(Result(0, "WARNING! Your password will be stored unencrypted\n"))
    Docker(runner).login(HOST, "AWS", PASSWORD)
    assert len(runner.calls) == 1
    call = runner.calls[0]
    assert call.args == ["docker", "login", "--username", "AWS", "--password-stdin", HOST]
    assert call.input == PASSWORD + "\n"
    assert call.stream is False
    assert not any(PASSWORD in arg for arg in call.args)


def test_login_failure_masks_the_password_even_when_docker_echoes_it() -> None:
    output = (
        "WARNING! Using --password via the CLI is insecure.\n"
        f"Error response from daemon: login attempt to https://{HOST}/v2/ failed with "
        f"status: 400 Bad Request (password {PASSWORD} rejected)\n"
    )
    runner = FakeRunner(Result(1, output))
    with pytest.raises(DockerError) as info:
        Docker(runner).login(HOST, "AWS", PASSWORD)
    message = info.value.message
    assert PASSWORD not in message
    assert PASSWORD not in str(info.value)
    assert f"docker login to {HOST} was refused" in message
    assert "400 Bad Request (password *** rejected)" in message


# -- image id and daemon ------------------------------------------------------------


def inspected(image_id: str = DIGEST, digests: list[str] | None = None, **labels: str) -> str:
    """What ``docker image inspect --format`` prints for an image, as the suite asks it."""
    return json.dumps({"id": image_id, "digests": digests, "labels": labels or None}) + "\n"


def test_inspect_argument_list_and_value() -> None:
    runner = FakeRunner(Result(0, inspected(digests=["widgets@sha256:" + "9" * 64], a="b")))
    found = Docker(runner).inspect("widgets:v1")
    assert found == ImageInfo(DIGEST, ("widgets@sha256:" + "9" * 64,), {"a": "b"})
    assert runner.calls[0].args[:4] == ["docker", "image", "inspect", "--format"]
    assert runner.calls[0].args[-1] == "widgets:v1"
    assert "{{json .Config.Labels}}" in runner.calls[0].args[4]


def test_image_id_takes_the_last_line_after_warnings() -> None:
    runner = FakeRunner(Result(0, "WARNING: something odd\n" + inspected()))
    assert Docker(runner).image_id("widgets:v1") == DIGEST


@pytest.mark.parametrize(
    "result",
    [
        Result(1, "Error: No such image: widgets:v1\n"),
        Result(0, ""),
        Result(0, "  \n"),
        Result(0, "not json\n"),
        Result(0, '{"id": ""}\n'),
    ],
)
def test_image_id_is_none_without_an_image(result: Result) -> None:
    assert Docker(FakeRunner(result)).image_id("widgets:v1") is None


@pytest.mark.parametrize(
    ("reference", "digests", "identity"),
    [
        ("python:3.12-slim", ["python@sha256:" + "1" * 64], "python@sha256:" + "1" * 64),
        ("python", ["other@sha256:" + "2" * 64], DIGEST),  # no digest of its own: the ID
        ("local/base:bookworm", [], DIGEST),  # `docker import`: never a repo digest
        ("reg.example:5000/team/base:1", ["reg.example:5000/team/base@sha256:" + "3" * 64],
         "reg.example:5000/team/base@sha256:" + "3" * 64),
        ("python@sha256:" + "4" * 64, [], "python@sha256:" + "4" * 64),
    ],
)  # fmt: skip
def test_image_identity_prefers_the_repo_digest(
    reference: str, digests: list[str], identity: str
) -> None:
    runner = FakeRunner(Result(0, inspected(digests=digests)))
    assert Docker(runner).image_identity(reference) == identity


def test_a_base_image_that_is_not_local_is_pulled_once() -> None:
    runner = FakeRunner(Result(1, "No such image"), Result(0, "pulled\n"), Result(0, inspected()))
    assert Docker(runner).image_identity("python:3.12-slim") == DIGEST
    assert [c.args[1] for c in runner.calls] == ["image", "pull", "image"]
    failing = FakeRunner(Result(1, "No such image"), Result(1, "Error: pull access denied\n"))
    with pytest.raises(DockerError, match=r"docker pull python:3\.12-slim failed"):
        Docker(failing).image_identity("python:3.12-slim")


class OneDaemon(FakeRunner):
    """The docker daemon of one machine, which several runs (processes) ask at once: the
    base image is missing until a pull brings it. Each run's first look waits until every
    run has looked, so all of them find it missing before any pulls."""

    def __init__(self, runs: int) -> None:
        super().__init__()
        self.verbs: list[str] = []
        self._pulled = threading.Event()
        self._guard = threading.Lock()
        self._looked: set[int] = set()
        self._all_looked = threading.Barrier(runs)

    def answer(self, args: Sequence[str]) -> Result:
        with self._guard:
            self.verbs.append(args[1])
            first = threading.get_ident() not in self._looked
            self._looked.add(threading.get_ident())
        if args[1] == "pull":
            time.sleep(0.1)  # a pull takes a while
            self._pulled.set()
            return Result(0, "pulled\n")
        if first:
            self._all_looked.wait(10)
        if self._pulled.is_set():
            return Result(0, inspected(digests=["python@sha256:" + "1" * 64]))
        return Result(1, "Error response from daemon: No such image: python:3.12-slim\n")


@pytest.mark.parametrize(("locked", "pulls"), [(True, 1), (False, 2)])
def test_two_runs_missing_the_same_base_image_pull_it_once(
    tmp_path: Path, locked: bool, pulls: int
) -> None:
    """Two services on one base image, released at once: the second run waits for the
    first's pull, looks again and finds the image (without the lock both pull)."""
    daemon = OneDaemon(2)

    def pull_lock(reference: str) -> contextlib.AbstractContextManager[None]:
        return release_lock(tmp_path, f"pull:{reference}", timeout=30)

    dockers = [Docker(daemon, pull_lock=pull_lock if locked else None) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        found = list(pool.map(lambda docker: docker.image_identity("python:3.12-slim"), dockers))
    assert daemon.verbs.count("pull") == pulls
    assert found == ["python@sha256:" + "1" * 64] * 2


def test_a_pull_lock_that_finds_the_image_pulled_meanwhile_does_not_pull() -> None:
    """Missing at first, present once the lock is held (another run pulled it while this
    one waited): looked at afresh, not taken from the first look, and not pulled."""
    runner = FakeRunner(Result(1, "Error: No such image"), Result(0, inspected()))
    held: list[str] = []

    @contextlib.contextmanager
    def pull_lock(reference: str) -> Iterator[None]:
        held.append(reference)
        yield

    assert Docker(runner, pull_lock=pull_lock).image_identity("python:3.12-slim") == DIGEST
    assert [c.args[1] for c in runner.calls] == ["image", "image"]
    assert held == ["python:3.12-slim"]


def test_a_base_image_still_missing_under_the_lock_is_pulled_while_it_is_held() -> None:
    runner = FakeRunner(
        Result(1, "Error: No such image"),
        Result(1, "Error: No such image"),
        Result(0, "pulled\n"),
        Result(0, inspected()),
    )
    seen: list[list[str]] = []

    @contextlib.contextmanager
    def pull_lock(reference: str) -> Iterator[None]:
        seen.append([c.args[1] for c in runner.calls])
        yield
        seen.append([c.args[1] for c in runner.calls])

    assert Docker(runner, pull_lock=pull_lock).image_identity("python:3.12-slim") == DIGEST
    assert seen == [["image"], ["image", "image", "pull", "image"]]


def test_a_local_base_image_takes_no_pull_lock() -> None:
    runner = FakeRunner(Result(0, inspected()))

    def pull_lock(reference: str) -> contextlib.AbstractContextManager[None]:
        raise AssertionError("no lock for an image that is here")

    assert Docker(runner, pull_lock=pull_lock).image_identity("python:3.12-slim") == DIGEST
    assert [c.args[1] for c in runner.calls] == ["image"]


def test_check_daemon_argument_list() -> None:
    runner = FakeRunner(Result(0, "20.10.24\n"))
    Docker(runner).check_daemon()
    assert runner.calls == [
        Call(["docker", "version", "--format", "{{.Server.Version}}"], None, False)
    ]


def test_check_daemon_other_failure() -> None:
    runner = FakeRunner(Result(1, "permission denied while trying to connect\n"))
    with pytest.raises(DockerError) as info:
        Docker(runner).check_daemon()
    assert info.value.message == (
        "docker is not usable (exit 1): permission denied while trying to connect"
    )


_DAEMON_CALLS: dict[str, Callable[[Docker], object]] = {
    "build": lambda d: _build(
        d, image="a:v1", dockerfile=Path("Dockerfile"), context=Path("."), build_args={}, labels={}
    ),
    "tag": lambda d: d.tag("a:v1", "b:v1"),
    "image_id": lambda d: d.image_id("a:v1"),
    "check_daemon": lambda d: d.check_daemon(),
    "login": lambda d: d.login(HOST, "AWS", PASSWORD),
}


@pytest.mark.parametrize("command", sorted(_DAEMON_CALLS))
def test_daemon_down_is_reported_as_such(command: str) -> None:
    runner = FakeRunner(Result(1, "Client: Docker Engine - Community\n" + DAEMON_DOWN))
    with pytest.raises(DockerError) as info:
        _DAEMON_CALLS[command](Docker(runner))
    message = info.value.message
    assert "the Docker daemon is not answering at the default socket" in message
    assert "start Docker" in message
    assert PASSWORD not in message


def test_daemon_down_names_docker_host_from_the_environment_given() -> None:
    runner = FakeRunner(Result(1, DAEMON_DOWN))
    docker = Docker(runner, environ={"DOCKER_HOST": "tcp://10.0.0.5:2376"})
    with pytest.raises(DockerError, match=r"not answering at tcp://10\.0\.0\.5:2376"):
        docker.check_daemon()


def test_docker_error_exit_code() -> None:
    assert DockerError("x").exit_code == 3


# -- the real runner, through Docker ---------------------------------------------------


def test_missing_binary_through_docker() -> None:
    docker = Docker(SubprocessRunner(out=io.StringIO()), binary="docker-does-not-exist-here")
    with pytest.raises(DockerError, match="not found: install Docker"):
        docker.check_daemon()


# -- output parsing ---------------------------------------------------------------------

PUSH_OK = f"""The push refers to repository [{HOST}/widgets]
5f70bf18a086: Preparing
c0d2e2b3a1f4: Preparing
c0d2e2b3a1f4: Layer already exists
5f70bf18a086: Pushed
v1: digest: {DIGEST} size: 1570
"""


def test_parse_push_digest() -> None:
    assert parse_push_digest(PUSH_OK) == DIGEST


def test_parse_push_digest_takes_the_last_one() -> None:
    other = "sha256:" + "0" * 64
    assert parse_push_digest(f"v0: digest: {other} size: 1\n{PUSH_OK}") == DIGEST


@pytest.mark.parametrize(
    "output",
    [
        "",
        "The push refers to repository [x/widgets]\n5f70bf18a086: Pushed\n",
        "v1: digest: sha256:abc size: 12\n",
        "v1: digest: md5:" + "a" * 64 + " size: 12\n",
    ],
)
def test_parse_push_digest_none(output: str) -> None:
    assert parse_push_digest(output) is None


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("step 1\nError: boom\nlast line\n", "Error: boom"),
        ("a\ndenied: no\nb\n", "denied: no"),
        ("a\nname unknown: repo\nb\n", "name unknown: repo"),
        ("a\nunauthorized: authentication required\nb\n", "unauthorized: authentication required"),
        ("first error\nsecond error\n", "second error"),
        ("one\ntwo\n  three  \n\n\n", "three"),
        ("", "(no output)"),
        ("\n   \n", "(no output)"),
    ],
)
def test_last_error_line(output: str, expected: str) -> None:
    assert last_error_line(output) == expected


# -- push failures ------------------------------------------------------------------------

_PREAMBLE = f"""The push refers to repository [{HOST}/widgets]
5f70bf18a086: Preparing
c0d2e2b3a1f4: Preparing
c0d2e2b3a1f4: Waiting
"""


@pytest.mark.parametrize(
    ("last", "kind"),
    [
        (
            "tag invalid: The image tag 'v1' already exists in the 'x' repository and cannot "
            "be overwritten because the repository is immutable",
            IMMUTABLE_TAG,
        ),
        ("denied: Your authorization token has expired. Reauthenticate and try again.", AUTH),
        ("unauthorized: authentication required", AUTH),
        ("no basic auth credentials", AUTH),
        (
            "name unknown: The repository with name 'x' does not exist in the registry with id "
            "'123456789012'",
            FATAL,
        ),
        (
            "denied: User: arn:aws:iam::1:user/x is not authorized to perform: "
            "ecr:InitiateLayerUpload",
            FATAL,
        ),
        ("read: connection reset by peer", TRANSIENT),
        ("EOF", TRANSIENT),
        ("unexpected EOF", TRANSIENT),
        ("received unexpected HTTP status: 502 Bad Gateway", TRANSIENT),
        ("received unexpected HTTP status: 503 Service Unavailable", TRANSIENT),
        ("toomanyrequests: Rate exceeded", TRANSIENT),
        ("dial tcp 127.0.0.1:443: connect: connection refused", TRANSIENT),
        (f"Get https://{HOST}/v2/: dial tcp 52.1.2.3:443: i/o timeout", TRANSIENT),
        (
            f"Put https://{HOST}/v2/x/blobs/uploads/: net/http: request canceled "
            "(Client.Timeout exceeded while awaiting headers)",
            TRANSIENT,
        ),
        ("write tcp 10.0.0.2:5123->52.1.2.3:443: write: broken pipe", TRANSIENT),
        ("the manifest, or a layer thereof, was rejected by policy", FATAL),
        ("image config references the geoffrey base, which is not allowed", FATAL),
        ("the timeouts configured are not valid", FATAL),
        ("something nobody has seen before", FATAL),
        ("tag invalid: the tag contains characters that are not allowed", FATAL),
    ],
)
def test_classify_push_failure_kind(last: str, kind: PushFailure) -> None:
    got, message = classify_push_failure(_PREAMBLE + last + "\n")
    assert got == kind
    assert last in message


def test_classify_repository_missing_hints_ensure_repo() -> None:
    kind, message = classify_push_failure(
        _PREAMBLE + "name unknown: The repository with name 'x' does not exist in the registry "
        "with id '123456789012'\n"
    )
    assert kind == FATAL
    assert "`inv ensure-repo`" in message


def test_classify_missing_permission_hints_the_iam_actions() -> None:
    kind, message = classify_push_failure(
        _PREAMBLE + "denied: User: arn:aws:iam::1:user/x is not authorized to perform: "
        "ecr:InitiateLayerUpload on resource: arn:aws:ecr:eu-west-1:1:repository/x\n"
    )
    assert kind == FATAL
    assert "may not push" in message
    for action in ("ecr:InitiateLayerUpload", "ecr:CompleteLayerUpload", "ecr:PutImage"):
        assert action in message
    assert "inv login" not in message


@pytest.mark.parametrize(
    ("last", "hint"),
    [
        ("denied: Your authorization token has expired. Reauthenticate and try again.", "--force"),
        ("unauthorized: authentication required", "`inv login --force`"),
        ("no basic auth credentials", "`inv login`"),
    ],
)
def test_classify_auth_hints_a_login(last: str, hint: str) -> None:
    kind, message = classify_push_failure(_PREAMBLE + last + "\n")
    assert kind == AUTH
    assert hint in message


def test_classify_immutable_message_is_dockers_line() -> None:
    line = (
        "tag invalid: The image tag 'v1' already exists in the 'x' repository and cannot be "
        "overwritten because the repository is immutable"
    )
    assert classify_push_failure(_PREAMBLE + line + "\n") == (IMMUTABLE_TAG, line)


@pytest.mark.parametrize(
    "repository", ["timeout-svc", "unauthorized-access-log", "eof-reader", "too-many-requests"]
)
def test_the_push_header_and_layer_progress_do_not_classify(repository: str) -> None:
    output = (
        "The push refers to repository "
        f"[123456789012.dkr.ecr.eu-west-1.amazonaws.com/{repository}]\n"
        "5f70bf18a086: Preparing\n"
        "a3ed95caeb02: Layer already exists\n"
        "5f70bf18a086: Pushing [==>      ]  1.2MB/20MB\n"
        "5f70bf18a086: Retrying in 5 seconds\n"
        "unknown: Requested image not found\n"
    )
    kind, message = classify_push_failure(output)
    assert kind == FATAL
    assert message == "unknown: Requested image not found"
    assert last_error_line(output) == "unknown: Requested image not found"


def test_pushing_an_untagged_image_hints_the_tag_step() -> None:
    kind, message = classify_push_failure(
        "An image does not exist locally with the tag: 1.dkr.ecr.r.amazonaws.com/app\n"
    )
    assert kind == FATAL
    assert "run `inv build` and `inv tag`" in message


# -- push retries -------------------------------------------------------------------

PUSHED = Result(0, f"v1: digest: {DIGEST} size: 528\n")


def _retrying(*results: Result) -> tuple[FakeRunner, list[str], list[float], str | None]:
    runner = FakeRunner(*results)
    relogins: list[str] = []
    sleeps: list[float] = []
    digest = push_with_retries(
        Docker(runner),
        f"{HOST}/widgets:v1",
        relogin=lambda: relogins.append("login"),
        sleep=sleeps.append,
    )
    return runner, relogins, sleeps, digest


def test_push_with_retries_returns_the_reported_digest_at_once() -> None:
    runner, relogins, sleeps, digest = _retrying(PUSHED)
    assert digest == DIGEST
    assert (len(runner.calls), relogins, sleeps) == (1, [], [])


def test_push_with_retries_backs_off_on_transient_failures() -> None:
    eof = Result(1, _PREAMBLE + "EOF\n")
    _, relogins, sleeps, digest = _retrying(eof, eof, PUSHED)
    assert digest == DIGEST
    assert sleeps == [2.0, 4.0]
    assert relogins == []


def test_push_with_retries_logs_in_again_once_on_an_auth_failure() -> None:
    auth = Result(1, _PREAMBLE + "unauthorized: authentication required\n")
    _, relogins, sleeps, digest = _retrying(auth, PUSHED)
    assert (digest, relogins, sleeps) == (DIGEST, ["login"], [])
    with pytest.raises(DockerError, match="unauthorized"):
        _retrying(auth, auth)


def test_push_with_retries_never_overwrites_an_immutable_tag() -> None:
    immutable = Result(
        1,
        _PREAMBLE + "tag invalid: The image tag 'v1' already exists in the 'widgets' "
        "repository and cannot be overwritten because the repository is immutable.\n",
    )
    with pytest.raises(VersionExistsError, match="already released in the immutable repository"):
        _retrying(immutable, PUSHED)


def test_push_with_retries_gives_up_after_the_last_attempt() -> None:
    eof = Result(1, _PREAMBLE + "EOF\n")
    with pytest.raises(DockerError, match="failed: EOF"):
        _retrying(*[eof] * 5)


# -- the dry run's runner -----------------------------------------------------------


def test_planning_runner_runs_read_only_commands_and_shows_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = FakeRunner(Result(0, "20.10.24\n"), Result(0, inspected()))
    docker = Docker(PlanningRunner(real))
    with caplog.at_level("INFO", logger="ecr_release"):
        docker.check_daemon()
        assert docker.image_id("widgets:v1") == DIGEST
        docker.login(HOST, "AWS", PASSWORD)
        docker.tag("widgets:v1", f"{HOST}/widgets:v1")
        assert docker.push(f"{HOST}/widgets:v1") == Result(0, "")
    assert [call.args[1] for call in real.calls] == ["version", "image"]
    assert [r.getMessage() for r in caplog.records] == [
        f"[dry-run] login: docker login --username AWS --password-stdin {HOST}"
        "  (password on stdin: ***)",
        f"[dry-run] tag: docker tag widgets:v1 {HOST}/widgets:v1",
        f"[dry-run] push: docker push {HOST}/widgets:v1",
    ]
    assert PASSWORD not in caplog.text


# -- docker's configuration -----------------------------------------------------------


def test_docker_config_from_docker_config_dir(tmp_path: Path) -> None:
    data = {"auths": {HOST: {"auth": "x"}}, "credHelpers": {"other.example": "ecr-login"}}
    (tmp_path / "config.json").write_text(json.dumps(data))
    config = DockerConfig.load({"DOCKER_CONFIG": str(tmp_path)})
    assert config.directory == tmp_path
    assert config.holds_login(HOST) and not config.holds_login("other.example")
    assert config.uses_ecr_helper("other.example") and not config.uses_ecr_helper(HOST)


@pytest.mark.parametrize("text", [None, "", "{}"])
def test_docker_config_absent_or_empty_holds_nothing(tmp_path: Path, text: str | None) -> None:
    if text is not None:
        (tmp_path / "config.json").write_text(text)
    config = DockerConfig.load({"DOCKER_CONFIG": str(tmp_path)})
    assert config.data == {}
    assert not config.holds_login(HOST) and not config.uses_ecr_helper(HOST)


@pytest.mark.parametrize(
    ("text", "why"), [('{"auths": {', "not valid JSON"), ("[]", "not a JSON object")]
)
def test_a_corrupt_docker_config_stops_the_run(tmp_path: Path, text: str, why: str) -> None:
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(SettingsError) as info:
        DockerConfig.load({"DOCKER_CONFIG": str(tmp_path)})
    message = info.value.message
    assert message.startswith(f"Docker's config {tmp_path / 'config.json'} is {why}")
    assert "fix or move it" in message and info.value.exit_code == 2


def test_a_tag_docker_does_not_know_hints_build_and_tag() -> None:
    kind, message = classify_push_failure(_PREAMBLE + f"tag does not exist: {HOST}/widgets:v9\n")
    assert kind == FATAL
    assert "run `inv build` and `inv tag`" in message


# -- docker's stored credential, read the way docker reads it ------------------------------


def _configured(tmp_path: Path, data: dict[str, object], runner: FakeRunner) -> Docker:
    (tmp_path / "config.json").write_text(json.dumps(data))
    return Docker(runner, environ={"DOCKER_CONFIG": str(tmp_path)})


def test_the_stored_credential_from_config_auths(tmp_path: Path) -> None:
    token = base64.b64encode(f"AWS:{PASSWORD}".encode()).decode()
    runner = FakeRunner()
    docker = _configured(tmp_path, {"auths": {HOST: {"auth": token}}}, runner)
    assert docker.stored_credential(HOST) == ("AWS", PASSWORD)
    assert docker.stored_credential("other.example") is None
    assert runner.calls == []  # read from the file: no command


def test_the_stored_credential_from_a_helper(tmp_path: Path) -> None:
    answer = json.dumps({"ServerURL": HOST, "Username": "AWS", "Secret": PASSWORD})
    runner = FakeRunner(Result(0, answer + "\n"))
    docker = _configured(tmp_path, {"credHelpers": {HOST: "pass"}, "auths": {HOST: {}}}, runner)
    assert docker.stored_credential(HOST) == ("AWS", PASSWORD)
    assert runner.calls == [Call(["docker-credential-pass", "get"], HOST, False)]


@pytest.mark.parametrize(
    "helper_answer",
    [
        Result(1, "credentials not found in native keychain\n"),
        Result(0, "not json\n"),
        Result(0, '{"Username": "AWS"}\n'),
    ],
)
def test_no_usable_stored_credential_is_none(tmp_path: Path, helper_answer: Result) -> None:
    docker = _configured(tmp_path, {"credsStore": "desktop"}, FakeRunner(helper_answer))
    assert docker.stored_credential(HOST) is None


def test_a_missing_credential_helper_is_no_credential(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "nonexistent-helper-x"}))
    docker = Docker(SubprocessRunner(io.StringIO()), environ={"DOCKER_CONFIG": str(tmp_path)})
    assert docker.stored_credential(HOST) is None


def test_an_unreadable_inline_credential_is_none(tmp_path: Path) -> None:
    runner = FakeRunner()
    docker = _configured(tmp_path, {"auths": {HOST: {"auth": "%%% not base64"}}}, runner)
    assert docker.stored_credential(HOST) is None


# -- every command is bounded ------------------------------------------------------------

STOPPED = "gave no answer within 10 s"


def _stopped(limit: str = "timeout", words: str = STOPPED) -> Result:
    return Result(TIMED_OUT, f"docker x {words}\n", words, limit)


_BOUNDED_CALLS: dict[str, tuple[Callable[[Docker], object], str, float | None, float | None]] = {
    # name: (call, the verb docker runs, its timeout, its idle limit)
    "check_daemon": (lambda d: d.check_daemon(), "version", 10, None),
    "client_version": (lambda d: d.client_version(), "--version", 10, None),
    "daemon_info": (lambda d: d.daemon_info(), "info", 10, None),
    "inspect": (lambda d: d.inspect("a:v1"), "image", 10, None),
    "tag": (lambda d: d.tag("a:v1", "b:v1"), "tag", 10, None),
    "login": (lambda d: d.login(HOST, "AWS", PASSWORD), "login", 30, None),
    "build": (_DAEMON_CALLS["build"], "build", None, 600),
    "push": (lambda d: d.push("b:v1"), "push", None, 600),
    "pull": (lambda d: d.pull("b:v1"), "pull", None, 600),
    "run_detached": (
        lambda d: d.containers.run_detached("c", "a:v1", labels={"k": "1"}),
        "run",
        30,
        None,
    ),
    "exec": (lambda d: d.containers.exec("c", ["true"], timeout=12.5), "exec", 12.5, None),
    "container_state": (lambda d: d.containers.container_state("c"), "inspect", 10, None),
    "logs": (lambda d: d.containers.logs("c", 20), "logs", 10, None),
    "remove_container": (lambda d: d.containers.remove_container("c"), "rm", 10, None),
    "start": (lambda d: d.containers.start("c", "registry:2", ["-p", "1:2"]), "run", 30, None),
    "remove_volume": (lambda d: d.containers.remove_volume("v"), "volume", 10, None),
    "has_volume": (lambda d: d.containers.has_volume("v"), "volume", 10, None),
    "has_network": (lambda d: d.containers.has_network("bridge"), "network", 10, None),
    "logout": (lambda d: d.logout(HOST), "logout", 10, None),
}


@pytest.mark.parametrize("name", sorted(_BOUNDED_CALLS))
def test_every_command_is_bounded(name: str) -> None:
    call, verb, timeout, idle = _BOUNDED_CALLS[name]
    answers = {"--version": "Docker version 28.2.2, build e6534b4\n", "info": json.dumps(
        {"server": "28.2.2", "driver": "overlay2", "status": []})}  # fmt: skip
    runner = FakeRunner(Result(0, answers.get(verb, "")))
    call(Docker(runner))
    assert runner.limits == [(verb, timeout, idle)]


def test_the_idle_limit_is_the_callers() -> None:
    runner = FakeRunner()
    docker = Docker(runner, idle_limit=45)
    docker.push("b:v1")
    _DAEMON_CALLS["build"](docker)
    assert runner.limits == [("push", None, 45), ("build", None, 45)]


@pytest.mark.parametrize(
    "name", sorted(set(_BOUNDED_CALLS) - {"build", "push", "pull", "login", "client_version"})
)
def test_a_command_with_no_answer_is_one_line_naming_it_and_the_daemon(name: str) -> None:
    call, verb, _, _ = _BOUNDED_CALLS[name]
    docker = Docker(FakeRunner(_stopped()), environ={"DOCKER_HOST": "unix:///run/hung.sock"})
    with pytest.raises(DockerError) as info:
        call(docker)
    message = info.value.message
    shown = {"image": "image inspect"}.get(verb, verb)  # a management verb, and what it did
    assert message.startswith(f"`docker {shown}` gave no answer within 10 s: the Docker daemon at ")
    assert "unix:///run/hung.sock (DOCKER_HOST) is hung or unreachable" in message
    assert "restart Docker (or fix DOCKER_HOST)" in message
    assert "\n" not in message
    assert info.value.exit_code == 3


def test_a_docker_cli_with_no_answer_blames_the_cli_not_the_daemon() -> None:
    with pytest.raises(DockerError) as info:
        Docker(FakeRunner(_stopped()), environ={}).client_version()
    assert info.value.message == (
        f"`docker --version` {STOPPED}: the docker CLI itself hangs (it asks no daemon); "
        "reinstall Docker (the docker CLI), or check which `docker` is first on PATH"
    )


def test_no_docker_host_names_the_default_socket_or_the_context() -> None:
    with pytest.raises(DockerError) as info:
        Docker(FakeRunner(_stopped()), environ={}).check_daemon()
    assert info.value.message == (
        "`docker version` gave no answer within 10 s: the Docker daemon at "
        "unix:///var/run/docker.sock (the default socket) is hung or unreachable; restart "
        "Docker (or fix DOCKER_HOST) and try again"
    )
    with pytest.raises(DockerError, match=r"docker context remote \(DOCKER_CONTEXT\) is hung"):
        Docker(FakeRunner(_stopped()), environ={"DOCKER_CONTEXT": "remote"}).check_daemon()


def test_the_limit_in_the_message_is_the_one_that_stopped_it() -> None:
    # The doctor's runner caps every command at 5 s: its result says 5, and so does the line.
    with pytest.raises(DockerError, match=r"`docker info` gave no answer within 5 s: "):
        Docker(FakeRunner(_stopped(words="gave no answer within 5 s")), environ={}).daemon_info()


def test_a_login_with_no_answer_names_the_registry_too_and_not_the_password() -> None:
    with pytest.raises(DockerError) as info:
        Docker(FakeRunner(_stopped(words="gave no answer within 30 s")), environ={}).login(
            HOST, "AWS", PASSWORD
        )
    message = info.value.message
    assert message.startswith("`docker login` gave no answer within 30 s: the Docker daemon at")
    assert "or the registry it asks, is hung or unreachable" in message
    assert PASSWORD not in message


def test_a_silent_build_is_stopped_with_one_line() -> None:
    runner = FakeRunner(_stopped("idle", "printed nothing for 600 s"))
    with pytest.raises(DockerError) as info:
        _DAEMON_CALLS["build"](Docker(runner, environ={}))
    assert info.value.message == (
        "`docker build` printed nothing for 600 s and was stopped: a build step hangs, or the "
        "Docker daemon at unix:///var/run/docker.sock (the default socket) does; fix the step "
        "(or restart Docker) and build again"
    )


def test_a_silent_push_is_final_not_retried() -> None:
    runner = FakeRunner(_stopped("idle", "printed nothing for 600 s"), PUSHED)
    sleeps: list[float] = []
    with pytest.raises(DockerError) as info:
        push_with_retries(
            Docker(runner, environ={}), f"{HOST}/widgets:v1", relogin=lambda: None,
            sleep=sleeps.append,
        )  # fmt: skip
    assert info.value.message.startswith(
        f"`docker push {HOST}/widgets:v1` printed nothing for 600 s and was stopped: the "
        "transfer or the Docker daemon at unix:///var/run/docker.sock (the default socket) is "
        "stuck; check the network and Docker"
    )
    assert (len(runner.calls), sleeps) == (1, [])


def test_a_silent_pull_of_the_base_image_is_stopped_with_one_line() -> None:
    runner = FakeRunner(Result(1, "No such image"), _stopped("idle", "printed nothing for 600 s"))
    with pytest.raises(DockerError, match=r"^`docker pull python:3` printed nothing for 600 s"):
        Docker(runner, environ={}).image_identity("python:3")


def test_a_credential_helper_with_no_answer_is_a_docker_error(tmp_path: Path) -> None:
    runner = FakeRunner(_stopped())
    docker = _configured(tmp_path, {"credsStore": "desktop"}, runner)
    with pytest.raises(DockerError) as info:
        docker.stored_credential(HOST)
    assert info.value.message == (
        f"`docker-credential-desktop get` {STOPPED}: the credential helper hangs (a locked "
        f"keychain?); unlock it, or remove it from {tmp_path / 'config.json'} (credsStore, "
        "credHelpers)"
    )
    assert runner.limits == [("get", 10, None)]


def test_the_planning_runner_passes_the_limits_to_read_only_commands() -> None:
    real = FakeRunner(Result(0, "28.2.2\n"))
    Docker(PlanningRunner(real)).check_daemon()
    assert real.limits == [("version", 10, None)]


# -- the smoke test's container commands ------------------------------------------------------


def test_the_container_commands_are_exact_and_use_the_binary() -> None:
    runner = FakeRunner()
    docker = Docker(runner, binary="/opt/docker")
    docker.containers.run_detached("box", "a:v1", labels={"io.ecr-release.smoke": "1"})
    docker.containers.exec("box", ["python3", "-c", "x"], timeout=5)
    docker.containers.container_state("box")
    docker.containers.logs("box", 20)
    docker.containers.remove_container("box")
    assert [call.args for call in runner.calls] == [
        ["/opt/docker", "run", "-d", "--network", "none", "--name", "box",
         "--label", "io.ecr-release.smoke=1", "a:v1"],
        ["/opt/docker", "exec", "box", "python3", "-c", "x"],
        ["/opt/docker", "inspect", "--format", "{{json .State}}", "box"],
        ["/opt/docker", "logs", "--tail", "20", "box"],
        ["/opt/docker", "rm", "-f", "box"],
    ]  # fmt: skip


def test_inspect_reads_the_healthcheck_and_shell_in_the_same_command() -> None:
    line = json.dumps({
        "id": DIGEST, "digests": [], "labels": None,
        "healthcheck": {"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 10},
        "shell": ["/bin/bash", "-c"],
    })  # fmt: skip
    runner = FakeRunner(Result(0, line + "\n"))
    docker = Docker(runner)
    found = docker.inspect("a:v1")
    assert found is not None
    assert (found.health_test, found.shell) == (
        ("CMD-SHELL", "curl -f localhost"),
        ("/bin/bash", "-c"),
    )
    assert docker.image_id("a:v1") == DIGEST
    assert len(runner.calls) == 1  # one `docker image inspect` for both readers
    assert "{{json .Config.Healthcheck}}" in runner.calls[0].args[4]
    assert "{{json .Config.Shell}}" in runner.calls[0].args[4]
    # the CLI's typed field: `.Id` would send docker to the raw JSON, where an image with no
    # HEALTHCHECK (or no SHELL) has no such key, and the template fails
    assert "{{json .ID}}" in runner.calls[0].args[4] and ".Id}}" not in runner.calls[0].args[4]


@pytest.mark.parametrize(
    ("healthcheck", "shell", "test", "shell_seen"),
    [
        (None, None, (), ()),
        ({}, [], (), ()),
        ({"Test": "CMD true"}, "sh", (), ()),
        ({"Test": ["CMD", 1]}, ["sh", 2], (), ()),
        ({"Test": ["NONE"]}, None, ("NONE",), ()),
    ],
)
def test_an_odd_healthcheck_or_shell_reads_as_none(
    healthcheck: object, shell: object, test: tuple[str, ...], shell_seen: tuple[str, ...]
) -> None:
    line = json.dumps({"id": DIGEST, "healthcheck": healthcheck, "shell": shell})
    found = Docker(FakeRunner(Result(0, line + "\n"))).inspect("a:v1")
    assert found is not None
    assert (found.health_test, found.shell) == (test, shell_seen)


def test_docker_imports_nothing_from_the_flows() -> None:
    # smoke builds on Docker; Docker must not reach back (no import cycle, not even a lazy one)
    source = Path(docker_module.__file__).read_text()
    imported = [
        node.module or ""
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom)
    ]
    assert imported and not [name for name in imported if "flows" in name or "smoke" in name]
