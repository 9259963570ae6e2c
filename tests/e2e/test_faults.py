"""Fault injection on the real stack: each fault ends in one line and a non-zero exit, a
rerun once it is gone succeeds, and the registry holds exactly the expected tags."""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .project import Project, digest_from_output, fails_then_heals, one_line_error
from .stack import Stack


def test_moto_stopped(project: Project, stack: Stack) -> None:
    stack.stop_moto()
    fails_then_heals(project, stack, "cannot reach the ECR API", code=4, heal=stack.start_moto)


def test_registry_stopped_right_before_the_push(project: Project, stack: Stack) -> None:
    project.steps("build", "ensure-repo", "login", "tag")
    stack.stop_registry()
    _, again = fails_then_heals(
        project, stack, "cannot reach registry", code=5, heal=stack.start_registry, command="push"
    )
    assert stack.registry_manifest_digest(project.repository, "v1") == again.stdout.split()[-1]


def test_docker_daemon_unreachable(project: Project, stack: Stack, tmp_path: Path) -> None:
    dead = f"unix://{tmp_path}/no-daemon-{uuid.uuid4().hex[:6]}.sock"

    def stopped_before_anything() -> None:  # no repository, nothing in the registry
        names = [r["repositoryName"] for r in project.ecr().describe_repositories()["repositories"]]
        assert project.repository not in names

    fails_then_heals(
        project,
        stack,
        "Docker daemon is not answering",
        dead,
        code=3,
        heal=stopped_before_anything,
        env={"DOCKER_HOST": dead},
    )


def test_a_hung_docker_daemon_stops_the_release_in_seconds(
    project: Project, stack: Stack, silent_socket: str
) -> None:
    # The daemon takes the connection and never answers: before the runner had limits,
    # `inv release` waited forever with nothing on the screen. The first docker command is
    # the base image's look-up (which stands in for `docker version`): one wait, not two.
    started = time.monotonic()
    done = project.inv("release", "--version", "v1", env={"DOCKER_HOST": silent_socket}, timeout=60)
    elapsed = time.monotonic() - started
    print(f"\nrelease with a hung DOCKER_HOST: exit {done.returncode} in {elapsed:.2f} s")
    line = one_line_error(done)
    assert done.returncode == 3, done.stderr
    assert line == (
        "error: `docker image inspect` gave no answer within 10 s: the Docker daemon at "
        f"{silent_socket} (DOCKER_HOST) is hung or unreachable; restart Docker (or fix "
        "DOCKER_HOST) and try again"
    )
    assert elapsed < 15, elapsed
    names = [r["repositoryName"] for r in project.ecr().describe_repositories()["repositories"]]
    assert project.repository not in names  # stopped before anything changed
    assert stack.registry_tags(project.repository) == []


def test_a_hung_aws_endpoint_stops_the_release_within_30_seconds(
    project: Project, stack: Stack, silent_endpoint: str
) -> None:
    # The endpoint takes the connection and never answers: with botocore's defaults (60 s
    # reads, 5 attempts) a release waited about five minutes.
    project.write_env(AWS_ENDPOINT_URL=silent_endpoint)
    started = time.monotonic()
    done = project.inv("release", "--version", "v1", timeout=120)
    elapsed = time.monotonic() - started
    print(f"\nrelease with a hung AWS endpoint: exit {done.returncode} in {elapsed:.2f} s")
    line = one_line_error(done)
    assert done.returncode == 4, done.stderr
    assert line.startswith("error: cannot reach the ECR API: Read timeout on endpoint URL"), line
    assert silent_endpoint in line
    assert elapsed < 30, elapsed
    assert "Traceback" not in done.stderr
    assert stack.registry_tags(project.repository) == []


class DenyCreateRepository(BaseHTTPRequestHandler):
    """In front of moto: CreateRepository is denied, every other call is forwarded."""

    upstream = ""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("X-Amz-Target", "").endswith(".CreateRepository"):
            payload = json.dumps(
                {
                    "__type": "AccessDeniedException",
                    "message": "User: arn:aws:iam::123456789012:user/ci is not authorized to "
                    "perform: ecr:CreateRepository",
                }
            ).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        request = urllib.request.Request(
            self.upstream + self.path, data=body, method="POST", headers=dict(self.headers)
        )
        try:
            response = urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as error:  # AWS errors are answers too: relay them
            response = error
        with response:
            data = response.read()
            self.send_response(response.status)
            for key, value in response.headers.items():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def denying_endpoint(stack: Stack) -> Iterator[str]:
    handler = type("Handler", (DenyCreateRepository,), {"upstream": stack.info.moto_endpoint})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_access_denied_on_create_repository(
    project: Project, stack: Stack, denying_endpoint: str
) -> None:
    env_file = project.root / ".env"
    original = env_file.read_text()
    project.write_env(AWS_ENDPOINT_URL=denying_endpoint)
    fails_then_heals(
        project,
        stack,
        "AWS denied ecr:CreateRepository",
        code=4,
        heal=lambda: env_file.write_text(original),
    )


def test_stale_registry_login_gets_one_fresh_login(project: Project, stack: Stack) -> None:
    project.steps("build", "ensure-repo", "tag")
    # Docker holds a login whose password the registry no longer accepts.
    stale = base64.b64encode(b"AWS:an-expired-password").decode()
    config = Path(project.env["DOCKER_CONFIG"]) / "config.json"
    config.write_text(json.dumps({"auths": {project.registry_host: {"auth": stale}}}))
    done = project.inv("push", "--version", "v1")
    assert done.returncode == 0, done.stderr
    assert "logging in again and retrying once" in done.stderr
    assert stack.registry_tags(project.repository) == ["v1"]
    assert stack.registry_manifest_digest(project.repository, "v1") == done.stdout.split()[-1]


def test_changed_registry_password_is_one_line(project: Project, stack: Stack) -> None:
    stack.set_registry_password("rotated-elsewhere")
    done, _ = fails_then_heals(
        project, stack, "refused the login token", code=None, heal=stack.set_registry_password
    )
    assert "rotated-elsewhere" not in done.stderr


def test_released_version_same_image_is_a_no_op_other_image_is_refused(
    project: Project, stack: Stack
) -> None:
    first = project.inv("release", "--version", "v1")
    assert first.returncode == 0, first.stderr
    digest = digest_from_output(first.stdout)

    again = project.inv("release", "--version", "v1")
    assert again.returncode == 0, again.stderr
    assert "already released" in again.stdout
    assert digest_from_output(again.stdout) == digest
    assert "==> build" not in again.stderr and "==> push" not in again.stderr

    # Another image under the same local tag (as on another machine, or after a rebuild).
    project.change_code("a different image under the same version")
    assert project.inv("build", "--version", "v1").returncode == 0
    refused = project.inv("release", "--version", "v1")
    line = one_line_error(refused)
    assert refused.returncode == 6
    assert digest in line and "choose a new --version" in line
    assert "==> build" not in refused.stderr
    assert stack.registry_tags(project.repository) == ["v1"]
    assert stack.registry_manifest_digest(project.repository, "v1") == digest


def test_two_concurrent_releases_of_one_version(project: Project, stack: Stack) -> None:
    runs = [project.popen("release", "--version", "v1") for _ in range(2)]
    results = [(proc.wait(timeout=900), *proc.communicate()) for proc in runs]
    for code, out, err in results:
        assert code == 0, err
        assert project.marker not in out + err and project.password not in out + err
    titles = ("released and verified", "already released: the same image is in the registry")
    outputs = sorted(
        line for _, out, _ in results for line in out.splitlines() if line.startswith(titles)
    )
    assert outputs == [
        "already released: the same image is in the registry, nothing to do",
        "released and verified",
    ]
    # The second one waited for the first (the machine's lock), then found it released.
    assert any("waiting for another release" in err for _, _, err in results)
    digests = {digest_from_output(out) for _, out, _ in results}
    assert digests == {stack.registry_manifest_digest(project.repository, "v1")}
    assert stack.registry_tags(project.repository) == ["v1"]


def _upload_started(storage: Path, repository: str) -> bool:
    uploads = storage / "docker" / "registry" / "v2" / "repositories" / repository / "_uploads"
    return any(path.is_file() and path.stat().st_size > 1_000_000 for path in uploads.rglob("data"))


def test_registry_killed_during_a_large_push(project: Project, stack: Stack) -> None:
    # A large, incompressible layer, so the push is still running when the registry dies.
    (project.root / "widget_server" / "blob.bin").write_bytes(os.urandom(150 * 1024 * 1024))
    proc = project.popen("release", "--version", "v1")
    storage = Path(stack.info.registry_storage_dir)
    deadline = time.monotonic() + 300
    while not _upload_started(storage, project.repository):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the push never started uploading"
        time.sleep(0.05)
    assert stack.info.registry_pid is not None
    os.kill(stack.info.registry_pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=900)
    assert project.marker not in out + err and project.password not in out + err
    assert proc.returncode != 0, out + err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == err.strip().splitlines()[-1], err
    assert "push attempt 1/4 failed" in err  # the transient failure was retried, with backoff
    stack.start_registry()
    assert stack.registry_tags(project.repository) == []  # no half-published tag

    again = project.inv("release", "--version", "v1")
    assert again.returncode == 0, again.stderr
    assert stack.registry_tags(project.repository) == ["v1"]
    assert stack.registry_manifest_digest(project.repository, "v1") == digest_from_output(
        again.stdout
    )
