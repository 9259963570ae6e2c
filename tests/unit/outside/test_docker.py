"""The docker CLI wrapper, through a fake runner, and the real subprocess runner."""

from __future__ import annotations

import base64
import io
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ecr_release.errors import DockerError, SettingsError, VersionExistsError
from ecr_release.outside.docker import (
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
    """Records every argument list and answers scripted results (exit 0 by default)."""

    def __init__(self, *results: Result) -> None:
        self.calls: list[Call] = []
        self._results = list(results)

    def __call__(
        self, args: Sequence[str], *, input: str | None = None, stream: bool = False
    ) -> Result:
        self.calls.append(Call(list(args), input, stream))
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


# -- the real runner ------------------------------------------------------------------


def test_subprocess_runner_missing_binary() -> None:
    runner = SubprocessRunner(out=io.StringIO())
    with pytest.raises(DockerError) as info:
        runner(["/nonexistent/bin/docker-xyz", "version"])
    message = info.value.message
    assert "'/nonexistent/bin/docker-xyz' command was not found" in message
    assert "install Docker" in message


def test_missing_binary_through_docker() -> None:
    docker = Docker(SubprocessRunner(out=io.StringIO()), binary="docker-does-not-exist-here")
    with pytest.raises(DockerError, match="not found: install Docker"):
        docker.check_daemon()


_SCRIPT = (
    "import sys\n"
    "print('to stdout', flush=True)\n"
    "print('to stderr', file=sys.stderr, flush=True)\n"
    "print('again stdout', flush=True)\n"
    "sys.exit(3)\n"
)


def test_subprocess_runner_captures_both_streams_and_the_exit_code() -> None:
    out = io.StringIO()
    result = SubprocessRunner(out=out)([sys.executable, "-c", _SCRIPT])
    assert result.returncode == 3
    assert result.output == "to stdout\nto stderr\nagain stdout\n"
    assert out.getvalue() == ""


def test_subprocess_runner_streams_when_asked() -> None:
    out = io.StringIO()
    result = SubprocessRunner(out=out)([sys.executable, "-c", _SCRIPT], stream=True)
    assert out.getvalue() == "to stdout\nto stderr\nagain stdout\n"
    assert result.output == out.getvalue()


def test_subprocess_runner_streams_to_stdout_by_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    SubprocessRunner()([sys.executable, "-c", "print('hello')"], stream=True)
    assert capsys.readouterr().out == "hello\n"


def test_subprocess_runner_passes_input_on_stdin() -> None:
    script = "import sys; data = sys.stdin.read(); print(repr(data))"
    result = SubprocessRunner(out=io.StringIO())([sys.executable, "-c", script], input="s3cr3t\n")
    assert result.returncode == 0
    assert result.output == "'s3cr3t\\n'\n"


def test_subprocess_runner_without_input_gives_an_empty_stdin() -> None:
    script = "import sys; print(repr(sys.stdin.read()))"
    result = SubprocessRunner(out=io.StringIO())([sys.executable, "-c", script])
    assert result.output == "''\n"


def test_subprocess_runner_survives_a_child_that_ignores_stdin() -> None:
    result = SubprocessRunner(out=io.StringIO())(
        [sys.executable, "-c", "import sys; sys.exit(0)"], input="x" * 200_000
    )
    assert result.returncode == 0


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
