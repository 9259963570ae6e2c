"""The command line as users run it: `inv ...` in a subprocess, with a fake docker on PATH.

Bad input must end in one line and a non-zero exit before any docker command
or AWS call: the fake docker logs every call, and AWS_ENDPOINT_URL points at a
listener that counts connections.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..plans import RELEASE_PLAN, plan_lines, planned_steps, step_line

ROOT = Path(__file__).resolve().parents[3]
TASKS = [
    "build",
    "ensure-repo",
    "login",
    "tag",
    "push",
    "release",
    "plan",
    "promote",
    "config",
    "doctor",
    "scan",
]


class Listener:
    """A TCP port that counts connections: any AWS call would land here."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.sock.close()


class Cli:
    """``inv`` in a subprocess, in a work dir with a Dockerfile, a fake docker that logs
    its arguments to ``docker_log``, and AWS pointed at the listener."""

    def __init__(self, tmp_path: Path, listener: Listener) -> None:
        bindir = tmp_path / "bin"
        bindir.mkdir()
        self.docker_log = tmp_path / "docker.log"
        fake = bindir / "docker"
        fake.write_text(f'#!/bin/sh\necho "$@" >> {self.docker_log}\nexit 0\n')
        fake.chmod(0o755)
        self.work = tmp_path / "work"
        self.work.mkdir()
        (self.work / "Dockerfile").write_text("FROM scratch\n")
        # The project's own tasks.py, as a user's project holds it; inv finds it upward.
        shutil.copy(ROOT / "tasks.py", self.work / "tasks.py")
        self.cwd = self.work
        self.env = {
            "PATH": f"{bindir}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{listener.port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_CONFIG_FILE": str(tmp_path / "absent"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "absent"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def __call__(
        self, *args: str, env_file: str | None = None, **extra_env: str
    ) -> subprocess.CompletedProcess[str]:
        if env_file is not None:
            (self.work / ".env").write_text(env_file)
        return subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=self.cwd,
            env={**self.env, **extra_env},
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def cli(tmp_path: Path, listener: Listener) -> Cli:
    return Cli(tmp_path, listener)


def assert_one_line_error(
    done: subprocess.CompletedProcess[str], code: int, text: str, *, progress: bool = False
) -> None:
    """The error is one line, the last one; only progress lines may come before it."""
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    if not progress:
        assert len(lines) == 1, done.stderr
    assert all(line.startswith("==> ") for line in lines[:-1]), done.stderr
    assert lines[-1].startswith("error: ")
    assert text in lines[-1]
    assert "Traceback" not in done.stderr + done.stdout


def test_list_shows_the_six_tasks_with_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    listed = {line.split()[0]: line for line in done.stdout.splitlines()[2:] if line.strip()}
    for task in TASKS:
        assert task in listed and len(listed[task].split()) > 1
    for task in TASKS:
        helped = subprocess.run(
            [sys.executable, "-m", "invoke", "--help", task],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert helped.returncode == 0
        assert "--region" in helped.stdout and "--env-file" in helped.stdout
        # Short flags people have in their scripts keep their meaning as flags are added.
        assert "-s, --sandbox" in helped.stdout, task


@pytest.mark.parametrize("argv", [["--list"], ["--help", "release"]])
def test_start_up_imports_no_boto_nor_dotenv(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from invoke.main import program\n"
        f"sys.argv = ['inv', *{argv!r}]\n"
        "try:\n"
        "    program.run()\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('boto3', 'botocore', 'dotenv')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print('LOADED', loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert "LOADED []" in done.stdout, done.stdout + done.stderr


BAD_VERSIONS = ["v1;rm -rf ~", "$(id)", "`id`", "v1 v2", "-v1", ".v1", "", "a" * 129, "v\u00e91"]


@pytest.mark.parametrize(
    ("task", "version"),
    [("release", version) for version in BAD_VERSIONS]
    + [(task, "v1;rm -rf ~") for task in ("build", "tag", "push")]
    + [(task, None) for task in ("build", "tag", "push", "release")],
)
def test_bad_version_is_refused_before_anything_runs(
    cli: Cli, listener: Listener, task: str, version: str | None
) -> None:
    args = [task] if version is None else [task, f"--version={version}"]
    done = cli(*args, env_file="AWS_REGION=eu-west-1\n")
    assert_one_line_error(done, 2, "--version")
    assert not cli.docker_log.exists()
    assert listener.connections == 0


BAD_ENV = [
    ("ECR_REPOSITORY=Widget\n", "must be lowercase"),
    (
        "ECR_REPOSITORY=123456789012.dkr.ecr.eu-west-1.amazonaws.com/widget\n",
        "looks like an image URI",
    ),
    ("ECR_TAG_MUTABILITY=SOMETIMES\n", "ECR_TAG_MUTABILITY"),
    ("ECR_ENCRYPTION=KMS\n", "needs ECR_KMS_KEY"),
    ("ECR_SCAN_ON_PUSH=perhaps\n", "not a boolean"),
    ("AWS_ACCOUNT_ID=42\n", "12 digits"),
    ("DOCKERFILE=missing.Dockerfile\n", "does not exist"),
    ("BUILD_CONTEXT=nowhere\n", "is not a directory"),
    ("ECR_EXTRA_TAGS=latest,no way\n", "is not a valid image tag"),
    ("SMOKE_TIMEOUT=3601\n", "SMOKE_TIMEOUT"),
    ("ECR_EXPIRE_UNTAGGED_DAYS=0\n", "ECR_EXPIRE_UNTAGGED_DAYS"),
    ("SCAN_FAIL_ON=SEVERE\n", "SCAN_FAIL_ON 'SEVERE' is not one of CRITICAL, HIGH, MEDIUM, LOW"),
    ("SCAN_TIMEOUT=5\n", "SCAN_TIMEOUT '5' must be a whole number of seconds from 10 to 3600"),
]


@pytest.mark.parametrize(("line", "text"), BAD_ENV)
def test_bad_settings_are_refused_before_anything_runs(
    cli: Cli, listener: Listener, line: str, text: str
) -> None:
    done = cli("release", "--version", "v1", env_file="AWS_REGION=eu-west-1\n" + line)
    assert_one_line_error(done, 2, text)
    assert not cli.docker_log.exists()
    assert listener.connections == 0


def test_no_dotenv_names_the_missing_key(cli: Cli, listener: Listener) -> None:
    done = cli("release", "--version", "v1")
    assert_one_line_error(done, 2, "AWS_REGION is not set")
    assert "copy .env.example" in done.stderr
    assert not cli.docker_log.exists()
    assert listener.connections == 0


def test_flag_overrides_dotenv(cli: Cli) -> None:
    done = cli(
        "release", "--version", "v1", "--repository", "BAD", env_file="AWS_REGION=eu-west-1\n"
    )
    assert_one_line_error(done, 2, "ECR_REPOSITORY 'BAD' must be lowercase")


def test_missing_docker_cli_is_one_line(cli: Cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = cli("build", "--version", "v1", PATH=str(empty))
    assert_one_line_error(done, 3, "install Docker", progress=True)


def test_build_runs_docker_with_an_argument_list(cli: Cli) -> None:
    done = cli("build", "--version", "v1")
    assert done.returncode == 0, done.stderr
    logged = cli.docker_log.read_text().splitlines()
    assert logged[0].startswith(f"build -t widget-server:v1 -f {cli.work}/Dockerfile ")
    # FROM scratch copies nothing: docker is given a (then removed) folder of what it reads.
    assert " " + str(cli.work.parent / ".cache" / "ecr-release" / "build" / "context-") in logged[0]
    assert "--label org.opencontainers.image.version=v1" in logged[0]
    assert "built widget-server:v1" in done.stdout


def test_secret_in_context_is_refused(cli: Cli) -> None:
    (cli.work / ".env.production").write_text("AWS_SECRET_ACCESS_KEY=nope\n")
    done = cli("build", "--version", "v1")
    assert_one_line_error(done, 2, ".env.production")
    assert not cli.docker_log.exists()


def test_no_credentials_is_one_line(cli: Cli, listener: Listener) -> None:
    done = cli(
        "ensure-repo",
        env_file="AWS_REGION=eu-west-1\n",
        AWS_ACCESS_KEY_ID="",
        AWS_SECRET_ACCESS_KEY="",
    )
    assert_one_line_error(done, 4, "no AWS credentials found", progress=True)
    assert listener.connections == 0


@pytest.fixture
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _unreachable_registry(
    cli: Cli,
    moto_server: str,
    listener: Listener,
    *argv: str,
    env_file: str = "AWS_REGION=eu-west-1\n",
) -> subprocess.CompletedProcess[str]:
    """``inv ARGV`` with moto as the ECR API. The registry host moto names is a real AWS
    host: it is routed, through a proxy, to a listener that never answers."""
    (cli.work / ".dockerignore").write_text(".env\n")
    return cli(
        *argv,
        env_file=env_file,
        AWS_ENDPOINT_URL=moto_server,
        HTTPS_PROXY=f"http://127.0.0.1:{listener.port}",
        NO_PROXY="127.0.0.1",
    )


@pytest.mark.parametrize(
    "argv", [["release", "--version", "v1", "--dry-run"], ["--dry", "release", "--version", "v1"]]
)
def test_dry_run_changes_nothing_anywhere(
    cli: Cli, moto_server: str, listener: Listener, argv: list[str]
) -> None:
    import boto3

    done = _unreachable_registry(cli, moto_server, listener, *argv)
    assert done.returncode == 0, done.stderr
    host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    plan = plan_lines(done.stderr.splitlines())
    assert planned_steps(plan) == RELEASE_PLAN
    assert f"docker login --username AWS --password-stdin {host}  (password on stdin: ***)" in (
        step_line(plan, "login")
    )
    assert plan[0].startswith(f"[dry-run] check: could not ask the registry about {host}/")
    assert listener.connections >= 1  # it did try, through the proxy, and nowhere else
    assert "auth-token" not in done.stdout + done.stderr  # moto's password
    assert "nothing was built, created, logged in to or pushed" in done.stdout
    # Only read-only docker commands ran; no repository was created.
    verbs = [line.split()[0] for line in cli.docker_log.read_text().splitlines()]
    assert set(verbs) <= {"version", "image"}
    client = boto3.client("ecr", region_name="eu-west-1", endpoint_url=moto_server)
    assert client.describe_repositories()["repositories"] == []


def test_a_dry_run_with_also_tag_plans_when_the_registry_cannot_be_asked(
    cli: Cli, moto_server: str, listener: Listener
) -> None:
    """Whether an --also-tag is a released version is asked of the registry before the
    build; a dry run that cannot ask it plans every tag instead of failing."""
    argv = ("release", "--version", "v1", "--dry-run", "--also-tag", "latest")
    done = _unreachable_registry(
        cli,
        moto_server,
        listener,
        *argv,
        env_file="AWS_REGION=eu-west-1\nECR_TAG_MUTABILITY=MUTABLE\n",
    )
    assert done.returncode == 0, done.stderr
    assert "could not ask the registry" in done.stderr
    assert "PUT /v2/widget-server/manifests/latest" in done.stderr


def test_a_named_env_file_that_does_not_exist_is_refused(cli: Cli, listener: Listener) -> None:
    done = cli("release", "--version", "v1", "--env-file", "prod.env", AWS_REGION="eu-west-1")
    assert_one_line_error(done, 2, "--env-file 'prod.env' does not exist")
    assert not cli.docker_log.exists()
    assert listener.connections == 0


def test_run_from_a_subdirectory_reads_the_project_folder(cli: Cli) -> None:
    (cli.work / ".env").write_text("AWS_REGION=eu-west-1\nIMAGE_NAME=from-root-env\n")
    (cli.work / ".dockerignore").write_text("*.env\n.env\n")
    (cli.work / "widget_server").mkdir()
    (cli.work / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")  # the whole context
    cli.cwd = cli.work / "widget_server"
    done = cli("build", "--version", "v1")
    assert done.returncode == 0, done.stderr
    logged = cli.docker_log.read_text().splitlines()
    assert logged[0].startswith(f"build -t from-root-env:v1 -f {cli.work}/Dockerfile ")
    assert logged[0].endswith(f" {cli.work}")
    # --env-file too is taken from the project folder.
    (cli.work / "prod.env").write_text("AWS_REGION=eu-west-1\nIMAGE_NAME=from-prod-env\n")
    done = cli("build", "--version", "v2", "--env-file", "prod.env")
    assert done.returncode == 0, done.stderr
    assert "build -t from-prod-env:v2" in cli.docker_log.read_text()


def test_json_dry_run_prints_one_document_with_the_plan(
    cli: Cli, moto_server: str, listener: Listener
) -> None:
    argv = ("release", "--version", "v1", "--dry-run", "--json")
    done = _unreachable_registry(cli, moto_server, listener, *argv)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert document["ok"] is True and document["dry_run"] is True
    assert document["version"] == "v1" and document["repository"] == "widget-server"
    assert planned_steps(f"[dry-run] {line}" for line in document["plan"]) == RELEASE_PLAN
    assert planned_steps(plan_lines(done.stderr.splitlines())) == RELEASE_PLAN
    assert "auth-token" not in done.stdout + done.stderr


def test_json_errors_are_one_document_too(cli: Cli, listener: Listener) -> None:
    done = cli("release", "--version", "-bad", "--json", env_file="AWS_REGION=eu-west-1\n")
    assert_one_line_error(done, 2, "--version")
    document = json.loads(done.stdout)
    assert document["ok"] is False and document["exit_code"] == 2
    assert "--version" in document["error"]
    assert listener.connections == 0


def test_json_is_offered_on_release_and_push() -> None:
    for task in ("release", "push"):
        helped = subprocess.run(
            [sys.executable, "-m", "invoke", "--help", task],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        assert "--json" in helped.stdout


@pytest.mark.parametrize(
    ("argv", "text"),
    [
        (["release", "--version", "v1", "--also-tag", "latest,-x"], "--also-tag) '-x'"),
        (["promote", "--version", "v1"], "--tag is required"),
        (["promote", "--version", "v1", "--tag", "lat:est"], "--tag 'lat:est'"),
        (["promote", "--version", "v 1", "--tag", "latest"], "--version"),
    ],
)
def test_bad_tags_are_refused_before_anything_runs(
    cli: Cli, listener: Listener, argv: list[str], text: str
) -> None:
    done = cli(*argv, env_file="AWS_REGION=eu-west-1\n")
    assert_one_line_error(done, 2, text)
    assert not cli.docker_log.exists()
    assert listener.connections == 0


def test_config_shows_flags_and_masks_secrets(cli: Cli, listener: Listener) -> None:
    done = cli(
        "config",
        "--region",
        "eu-north-1",
        env_file="AWS_REGION=eu-west-1\nAWS_SESSION_TOKEN=sup3rsecret\n",
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert rows["AWS_REGION"].split()[1:] == ["eu-north-1", "(flag)"]
    assert rows["AWS_SESSION_TOKEN"].split()[1:] == ["***", "(.env)"]
    assert rows["AWS_SECRET_ACCESS_KEY"].split()[1:] == ["***", "(environment)"]
    assert "sup3rsecret" not in done.stdout + done.stderr
    assert listener.connections == 0 and not cli.docker_log.exists()  # it only reads


def test_config_json_and_invalid_settings_exit_2(cli: Cli) -> None:
    done = cli("config", "--json", env_file="AWS_REGION=nowhere#x\n")
    assert done.returncode == 2
    document = json.loads(done.stdout)
    assert document["valid"] is False and "AWS_REGION" in document["problems"]
    assert document["settings"]["AWS_REGION"] == {"value": "nowhere#x", "source": ".env"}


# -- the sandbox task, and what the review found --------------------------------------------


def test_dry_sandbox_up_or_down_is_refused_and_starts_or_removes_nothing(cli: Cli) -> None:
    for action in ("up", "down"):
        done = cli("--dry", "sandbox", action, XDG_CACHE_HOME=str(cli.work / "cache"))
        assert_one_line_error(done, 2, f"inv --dry sandbox {action} would")
    assert not (cli.work / "cache").exists()
    assert not cli.docker_log.exists()  # docker was never asked anything


def test_sandbox_down_is_not_stopped_by_a_setting_wrong_for_releases(cli: Cli) -> None:
    cache = cli.work / "cache"
    done = cli("sandbox", "down", env_file="ECR_TAG_MUTABILITY=bogus\n", XDG_CACHE_HOME=str(cache))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("sandbox down: ")  # it ran, whatever the settings say


def test_an_unknown_sandbox_action_is_one_line(cli: Cli) -> None:
    assert_one_line_error(cli("sandbox", "restart"), 2, "takes up, down or status")


def test_a_password_in_the_endpoint_url_never_reaches_an_error(cli: Cli) -> None:
    done = cli(
        "ensure-repo",
        env_file="AWS_REGION=eu-west-1\n",
        AWS_ENDPOINT_URL="http://svc:supersecretpw@127.0.0.1:1",
    )
    assert done.returncode == 4, done.stderr
    assert "supersecretpw" not in done.stderr + done.stdout
    assert "http://***@127.0.0.1:1" in done.stderr


def test_sigterm_stops_the_docker_command_under_way(tmp_path: Path) -> None:
    """A cancelled CI job (SIGTERM to inv) must not leave docker running: docker runs in a
    process group of its own, out of reach of a signal sent to inv's."""
    marker = tmp_path / "child.pid"
    script = (
        "import sys\n"
        "from ecr_release.cli.session import _signals_as_interrupts\n"
        "from ecr_release.outside.process import SubprocessRunner\n"
        "with _signals_as_interrupts():\n"
        "    try:\n"
        f"        SubprocessRunner()(['sh', '-c', 'echo $$ > {marker}; exec sleep 300'],"
        " stream=True, idle=600)\n"
        "    except KeyboardInterrupt:\n"
        "        sys.exit(130)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    deadline = time.monotonic() + 20
    while not (marker.exists() and marker.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(marker.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 130
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text()


# -- inv scan: a released version's findings ----------------------------------------------

MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "x", "size": 1, "digest": "sha256:" + "c0" * 32},
        "layers": [],
    }
)


@pytest.fixture
def released(moto_server: str) -> str:
    """moto's server with widget-server:v1 scanned (moto's fixed finding: CVE-9999-9999,
    HIGH, in moto_fake 9.9.9) and widget-server:v2 not scanned."""
    import urllib.request

    import boto3

    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"))
    ecr = boto3.client("ecr", region_name="eu-west-1", endpoint_url=moto_server)
    ecr.create_repository(repositoryName="widget-server")
    ecr.put_image(repositoryName="widget-server", imageManifest=MANIFEST, imageTag="v1")
    ecr.start_image_scan(repositoryName="widget-server", imageId={"imageTag": "v1"})
    other = MANIFEST.replace("c0", "d1")
    ecr.put_image(repositoryName="widget-server", imageManifest=other, imageTag="v2")
    return moto_server


def test_scan_shows_a_released_versions_findings(cli: Cli, released: str) -> None:
    done = cli(
        "scan", "--version", "v1", env_file="AWS_REGION=eu-west-1\n", AWS_ENDPOINT_URL=released
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "scan of widget-server:v1: COMPLETE, 1 finding: 1 HIGH"
    assert " ".join(lines[1].split()) == "CVE-9999-9999 HIGH moto_fake 9.9.9 no fix listed"
    assert len(lines) == 2
    assert not cli.docker_log.exists()  # docker is never asked


def test_scan_fails_with_exit_10_when_scan_fail_on_refuses(cli: Cli, released: str) -> None:
    env = "AWS_REGION=eu-west-1\nSCAN_FAIL_ON=HIGH\n"
    done = cli("scan", "--version", "v1", env_file=env, AWS_ENDPOINT_URL=released)
    assert_one_line_error(
        done,
        10,
        "error: the image's scan found 1 finding at HIGH or above (worst: CVE-9999-9999 HIGH "
        "in moto_fake 9.9.9): SCAN_FAIL_ON=HIGH refuses it; fix them, or accept them in "
        "SCAN_IGNORE",
    )
    assert done.stdout.startswith("scan of widget-server:v1: COMPLETE, 1 finding: 1 HIGH\n")
    # Accepted, it is shown as ignored and passes.
    done = cli(
        "scan",
        "--version",
        "v1",
        env_file=env + "SCAN_IGNORE=CVE-9999-9999\n",
        AWS_ENDPOINT_URL=released,
    )
    assert done.returncode == 0, done.stderr
    assert "(1 ignored by SCAN_IGNORE)" in done.stdout
    assert done.stdout.splitlines()[1].endswith("ignored (SCAN_IGNORE)")
    # Below the threshold passes too.
    done = cli(
        "scan",
        "--version",
        "v1",
        SCAN_FAIL_ON="CRITICAL",
        AWS_ENDPOINT_URL=released,
        AWS_REGION="eu-west-1",
    )
    assert done.returncode == 0, done.stderr


def test_scan_json_is_one_document_a_refusals_too(cli: Cli, released: str) -> None:
    done = cli(
        "scan",
        "--version",
        "v1",
        "--json",
        env_file="AWS_REGION=eu-west-1\n",
        AWS_ENDPOINT_URL=released,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["ok"] is True and document["version"] == "v1"
    assert document["counts"] == {"HIGH": 1}
    assert [f["id"] for f in document["findings"]] == ["CVE-9999-9999"]
    done = cli(
        "scan",
        "--version",
        "v1",
        "--json",
        env_file="AWS_REGION=eu-west-1\nSCAN_FAIL_ON=LOW\n",
        AWS_ENDPOINT_URL=released,
    )
    assert done.returncode == 10
    document = json.loads(done.stdout)
    assert document["ok"] is False and document["exit_code"] == 10
    assert "SCAN_FAIL_ON=LOW refuses it" in document["error"]
    assert document["worst"][0]["id"] == "CVE-9999-9999"


def test_scan_of_a_version_that_is_not_released_is_one_line_exit_2(cli: Cli, released: str) -> None:
    done = cli(
        "scan", "--version", "v9", env_file="AWS_REGION=eu-west-1\n", AWS_ENDPOINT_URL=released
    )
    assert_one_line_error(done, 2, "widget-server:v9 is not released, so it has no scan")
    done = cli(
        "scan",
        "--version",
        "v1",
        "--repository",
        "nothing-here",
        env_file="AWS_REGION=eu-west-1\n",
        AWS_ENDPOINT_URL=released,
    )
    assert_one_line_error(done, 2, "repository nothing-here does not exist")


def test_scan_of_a_version_without_a_scan_is_one_line(cli: Cli, released: str) -> None:
    done = cli(
        "scan", "--version", "v2", env_file="AWS_REGION=eu-west-1\n", AWS_ENDPOINT_URL=released
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "warning: widget-server:v2 was not scanned: ECR has no scan of it (scanning did not "
        "cover the repository when it was pushed, or the scan has not started)"
    ]
    # With a threshold, an image that cannot be shown scanned is refused.
    done = cli(
        "scan",
        "--version",
        "v2",
        env_file="AWS_REGION=eu-west-1\nSCAN_FAIL_ON=CRITICAL\n",
        AWS_ENDPOINT_URL=released,
    )
    assert_one_line_error(done, 10, "widget-server:v2 was not scanned (ECR has no scan of it")


def test_scan_needs_a_version(cli: Cli, listener: Listener) -> None:
    done = cli("scan", env_file="AWS_REGION=eu-west-1\n")
    assert_one_line_error(done, 2, "--version is required")
    assert listener.connections == 0


# -- several services ----------------------------------------------------------------------

SERVICES = """
[tool.ecr-release.services.api]
context = "api"
repository = "shop/api"

[tool.ecr-release.services.worker]
context = "worker"
"""


def declare(cli: Cli, declaration: str = SERVICES) -> None:
    for name in ("api", "worker"):
        (cli.work / name).mkdir(exist_ok=True)
        (cli.work / name / "Dockerfile").write_text("FROM scratch\n")
    (cli.work / "pyproject.toml").write_text(declaration)


def test_a_bad_declaration_is_refused_before_anything_runs(cli: Cli, listener: Listener) -> None:
    declare(cli, SERVICES + 'dockerfil = "x"\n')
    for argv in (
        ["release", "--version", "v1"],
        ["plan", "--version", "v1"],
        ["build", "--version", "v1"],
    ):
        done = cli(*argv, env_file="AWS_REGION=eu-west-1\n")
        assert_one_line_error(
            done, 2, "[tool.ecr-release.services.worker] in pyproject.toml: unknown key 'dockerfil'"
        )
    assert not cli.docker_log.exists()
    assert listener.connections == 0


def test_a_services_bad_setting_names_it_before_any_service_starts(
    cli: Cli, listener: Listener
) -> None:
    declare(cli)
    done = cli("release", "--version", "v1", env_file="AWS_REGION=eu-west-1\nSMOKE_TIMEOUT=0\n")
    assert_one_line_error(done, 2, "service api: SMOKE_TIMEOUT '0' must be a whole number")
    assert not cli.docker_log.exists()
    assert listener.connections == 0


def test_a_one_image_task_needs_service_when_several_are_declared(cli: Cli) -> None:
    declare(cli)
    done = cli("build", "--version", "v1", env_file="AWS_REGION=eu-west-1\n")
    assert_one_line_error(done, 2, "2 services are declared (api, worker): name one with --service")
    assert not cli.docker_log.exists()

    done = cli("build", "--version", "v1", "--service", "api")
    assert done.returncode == 0, done.stderr
    logged = cli.docker_log.read_text().splitlines()
    assert logged[0].startswith(f"build -t shop/api:v1 -f {cli.work}/api/Dockerfile ")
    assert "built shop/api:v1" in done.stdout


def test_service_must_name_a_declared_service_and_repository_one_service(cli: Cli) -> None:
    declare(cli)
    cli("config", env_file="AWS_REGION=eu-west-1\n")
    done = cli("release", "--version", "v1", "--service", "web")
    assert_one_line_error(
        done, 2, "--service 'web' is not declared in pyproject.toml: the services are api, worker"
    )
    done = cli("release", "--version", "v1", "--repository", "other")
    assert_one_line_error(done, 2, "--repository names one repository")
    assert not cli.docker_log.exists()


@pytest.mark.parametrize(("declared", "jobs"), [(True, "0"), (False, "abc")])
def test_jobs_must_be_a_whole_number_with_one_service_or_several(
    cli: Cli, declared: bool, jobs: str
) -> None:
    if declared:
        declare(cli)
    done = cli("release", "--version", "v1", "--jobs", jobs, env_file="AWS_REGION=eu-west-1\n")
    assert_one_line_error(done, 2, f"--jobs {jobs!r} must be a whole number from 1 to 32")
    assert not cli.docker_log.exists()


def test_config_shows_each_service_and_where_its_values_come_from(cli: Cli) -> None:
    declare(cli)
    done = cli("config", "--json", env_file="AWS_REGION=eu-west-1\nECR_REPOSITORY=from-env\n")
    assert done.returncode == 0, done.stderr
    views = json.loads(done.stdout)["services"]
    assert set(views) == {"api", "worker"}
    api = views["api"]["settings"]["ECR_REPOSITORY"]
    assert api == {"value": "shop/api", "source": "pyproject.toml [tool.ecr-release.services.api]"}
    assert views["worker"]["settings"]["ECR_REPOSITORY"]["value"] == "worker"
    assert views["worker"]["settings"]["AWS_REGION"]["source"] == ".env"
    text = cli("config").stdout
    assert text.startswith("service api:\n  ")
    assert "\nservice worker:\n" in text


def test_doctor_shows_the_shared_checks_once_then_each_services_own(cli: Cli) -> None:
    declare(cli)
    done = cli("doctor", env_file="AWS_REGION=eu-west-1\n")
    lines = done.stdout.splitlines()

    assert sum(1 for line in lines if "docker CLI:" in line) == 1
    assert lines.index("service api:") < lines.index("service worker:")
    api = lines[lines.index("service api:") + 1 : lines.index("service worker:")]
    assert [line.split(":")[0].split(maxsplit=1)[1] for line in api] == [
        "settings",
        "build context",
        "working tree",
        "repository",
    ]
    assert "repository shop/api, image shop/api" in api[0]
    assert "Traceback" not in done.stderr


def test_doctor_names_a_bad_declaration_as_a_failing_check(cli: Cli) -> None:
    declare(cli, SERVICES + "smoke-test = 1\n")
    done = cli("doctor", env_file="AWS_REGION=eu-west-1\n")

    assert done.returncode == 2
    assert done.stdout.startswith("FAIL services: [tool.ecr-release.services.worker]")
    assert "smoke-test must be true or false" in done.stdout
    assert not cli.docker_log.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["promote", "--version", "v1", "--tag", "latest"],
        ["config"],
        ["doctor"],
        ["plan", "--version", "v1"],
    ],
)
def test_repository_is_refused_wherever_it_would_send_several_services_to_one(
    cli: Cli, listener: Listener, argv: list[str]
) -> None:
    declare(cli)
    done = cli(*argv, "--repository", "shop/other", env_file="AWS_REGION=eu-west-1\n")

    assert done.returncode == 2
    assert "--repository names one repository" in done.stdout + done.stderr
    assert not cli.docker_log.exists()
    assert listener.connections == 0


def test_an_empty_service_never_means_every_declared_service(cli: Cli) -> None:
    declare(cli)
    done = cli("release", "--version", "v1", "--service", "", env_file="AWS_REGION=eu-west-1\n")
    assert_one_line_error(done, 2, "--service '' names no service")
    assert not cli.docker_log.exists()


def test_a_task_ends_its_process_with_everything_frozen_once(cli: Cli, tmp_path: Path) -> None:
    """The collector's last walk over what the run made (boto3's models above all) is
    skipped: the first exit handler to run freezes everything. An exit handler registered
    before the task (here, by a sitecustomize) runs after it, and sees it done."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0,"
        " file=sys.stderr))\n"
    )
    done = cli("build", "--version", "v1", "build", "--version", "v2", PYTHONPATH=str(site))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == "frozen at exit: True"
    assert "built widget-server:v2" in done.stdout  # the second task ran: nothing frozen early


def test_the_exit_handler_is_registered_once_however_many_tasks_run() -> None:
    code = (
        "import atexit, gc\n"
        "from ecr_release.cli import session\n"
        "before = atexit._ncallbacks()\n"
        "session._no_last_collection(); session._no_last_collection()\n"
        "print(atexit._ncallbacks() - before, gc.get_freeze_count() > 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "False"]  # one handler; nothing frozen until the end


@pytest.mark.parametrize("ending", ["returns", "interrupted"])
def test_a_task_puts_the_terminals_settings_back(ending: str) -> None:
    """An MFA prompt left on the thread that asks AWS beside the build (Ctrl-C) turned echo
    off: the task's end puts the terminal's settings back as they were."""
    import pty
    import termios

    from ecr_release.cli.session import terminal_kept

    leader, follower = pty.openpty()
    try:
        with open(follower, closefd=False) as tty:

            def echo() -> bool:
                return bool(termios.tcgetattr(follower)[3] & termios.ECHO)

            assert echo()
            with contextlib.suppress(KeyboardInterrupt), terminal_kept(tty):
                attrs = termios.tcgetattr(follower)
                attrs[3] &= ~termios.ECHO  # as getpass does
                termios.tcsetattr(follower, termios.TCSADRAIN, attrs)
                assert not echo()
                if ending == "interrupted":
                    raise KeyboardInterrupt
            assert echo()
    finally:
        os.close(leader)
        os.close(follower)


def test_no_terminal_is_no_trouble() -> None:
    from ecr_release.cli.session import terminal_kept

    with open(os.devnull) as not_a_tty, terminal_kept(not_a_tty):
        pass
    with terminal_kept(object()):  # a replaced stdin without fileno or isatty
        pass
