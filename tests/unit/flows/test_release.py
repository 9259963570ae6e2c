"""The release sequence with a fake docker runner, moto for ECR and a fake registry."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from moto import mock_aws

from ecr_release.cli.session import make_release
from ecr_release.errors import (
    AwsError,
    DockerError,
    ImageNotFoundError,
    LockedError,
    RegistryAuthError,
    RegistryError,
    ScanGateError,
    SettingsError,
    SmokeTestError,
    VersionExistsError,
)
from ecr_release.flows import candidate as candidate_module
from ecr_release.flows.release import Clock, Release, Summary
from ecr_release.model.provenance import UNCOMMITTED_LABEL
from ecr_release.model.settings import Settings
from ecr_release.outside.docker import Docker, Result
from ecr_release.outside.ecr import Authorization, Ecr, ScanFindings
from ecr_release.outside.git import Change, Revision
from ecr_release.outside.localstate import (
    LoginRecords,
    login_lock_name,
    pull_lock_name,
    release_lock,
)
from ecr_release.outside.registry import Manifest, RawManifest, Registry

from ..plans import RELEASE_PLAN, plan_lines, planned_steps, step_line

REGION = "eu-west-1"
ACCOUNT = "123456789012"
HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CLEAN = Revision("0123abc", "https://example.invalid/widget.git")


class FakeRegistry:
    """What the registry holds: (repository, tag) -> Manifest, and each config's labels."""

    def __init__(self) -> None:
        self.manifests: dict[tuple[str, str], Manifest] = {}
        self.configs: dict[str, dict[str, str]] = {}
        self.logins: list[Authorization] = []
        self.puts: list[tuple[str, str]] = []  # tags put on the registry side
        self.list_denied = False
        self.put_fails: set[str] | bool = False  # True, or the tags whose PUT fails
        self.empty: set[str] = set()  # repositories that ECR knows with no tag in them
        self.deleted: list[tuple[str, str]] = []  # tags removed through the ECR API
        self.findings: list[dict[str, Any]] = []  # what a scan of any pushed image finds
        self.scans: list[tuple[str, str]] = []  # scans read through the ECR API

    def manifest(self, repository: str, reference: str) -> Manifest | None:
        return self.manifests.get((repository, reference))

    def labels(self, repository: str, config_digest: str) -> dict[str, str]:
        return self.configs.get(config_digest, {})

    def tags(self, repository: str) -> list[str] | None:
        if self.list_denied:  # an identity without ecr:ListImages
            raise RegistryAuthError("registry refused the login token (HTTP 403)")
        found = [tag for name, tag in self.manifests if name == repository]
        return found or (None if repository not in self.empty else [])

    def raw_manifest(self, repository: str, reference: str) -> RawManifest | None:
        found = self.manifests.get((repository, reference))
        return RawManifest(found, found.digest.encode(), "docker-v2") if found else None

    def put_manifest(self, repository: str, tag: str, raw: RawManifest) -> str:
        if self.put_fails is True or (isinstance(self.put_fails, set) and tag in self.put_fails):
            raise RegistryError("registry answered HTTP 500 for the tag")
        self.puts.append((repository, tag))
        self.manifests[(repository, tag)] = raw.manifest
        return raw.manifest.digest


def _with_registry(kind: type[Ecr], registry: FakeRegistry) -> type[Ecr]:
    """ECR over moto, whose BatchDeleteImage removes the tag from the fake registry (moto
    alone knows nothing of what was pushed): as ECR removes a tag, keeping the image."""

    def delete_tag(self: Ecr, name: str, tag: str) -> bool:
        if kind is not Ecr:  # a dry run's: a plan line
            return kind.delete_tag(self, name, tag)
        registry.deleted.append((name, tag))
        return registry.manifests.pop((name, tag), None) is not None

    def image_scan_findings(self: Ecr, name: str, digest_or_tag: str) -> ScanFindings:
        """A pushed image's scan is COMPLETE with the world's findings (ECR with scan on
        push); one the registry does not hold is unknown, as to ECR."""
        registry.scans.append((name, digest_or_tag))
        held = any(
            repository == name and digest_or_tag in (tag, manifest.digest)
            for (repository, tag), manifest in registry.manifests.items()
        )
        if not held:
            raise ImageNotFoundError(f"the ECR API does not know {name}:{digest_or_tag}")
        counts: dict[str, int] = {}
        for finding in registry.findings:
            counts[finding["severity"]] = counts.get(finding["severity"], 0) + 1
        found = tuple(registry.findings)
        return ScanFindings("COMPLETE", "", digest_or_tag, found, (), counts, NOW)

    methods = {"delete_tag": delete_tag, "image_scan_findings": image_scan_findings}
    return type(f"World{kind.__name__}", (kind,), methods)


class FakeRegistryClient:
    """The registry as one login sees it: a password the registry no longer takes is a 401."""

    def __init__(self, registry: FakeRegistry, auth: Authorization, accepts: set[str]) -> None:
        self._registry, self.auth, self._accepts = registry, auth, accepts

    def __getattr__(self, name: str) -> Any:
        if self.auth.password not in self._accepts:
            raise RegistryAuthError(f"registry refused the login token (HTTP 401) for {name}")
        return getattr(self._registry, name)


SMOKE_VERBS = ("run", "exec", "inspect", "logs", "rm")
BASE = "local/python-base:bookworm"
BASE_ID = "sha256:" + "ba5e" * 16


@dataclass
class FakeDocker:
    """A docker CLI stand-in: records argument lists, keeps images (ID and labels), pushes
    into the registry."""

    registry: FakeRegistry
    config_dir: Path | None = None  # where `docker login` stores what it was given
    images: dict[str, str] = field(default_factory=lambda: {BASE: BASE_ID})
    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # image ID -> labels
    calls: list[tuple[list[str], str | None]] = field(default_factory=list)
    push_outcomes: list[str] = field(default_factory=list)
    push_hangs: bool = False
    push_cancelled: bool = False
    build_hangs: bool = False  # until a check beside it stops it
    build_cancelled: bool = False
    fail: dict[str, Result] = field(default_factory=dict)
    on_build: Callable[[], None] | None = None
    on_verb: dict[str, Callable[[], None]] = field(default_factory=dict)  # before it runs
    builds: int = 0
    # Docker's containerd image store: once pushed, an image's ID is its manifest digest.
    containerd: bool = False
    # The smoke test: the image's HEALTHCHECK, whether it passes, the containers run.
    healthcheck: dict[str, Any] | None = field(
        default_factory=lambda: {"Test": ["CMD", "python3", "-c", "health"]}
    )
    healthy: bool = True
    containers: list[str] = field(default_factory=list)
    onbuild: list[str] | None = None  # every image's ONBUILD triggers
    idle_limits: dict[str, float | None] = field(default_factory=dict)  # verb -> idle limit

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
        args = list(args)
        self.calls.append((args, input))
        verb = args[1]
        self.idle_limits[verb] = idle
        if verb in self.on_verb:
            self.on_verb[verb]()
        if verb in self.fail:
            return self.fail[verb]
        if verb == "build":
            if self.build_hangs:
                assert cancel is not None
                self.build_cancelled = cancel.wait(30)
                return Result(124, "", "was cancelled", "cancel")
            if self.on_build:
                self.on_build()
            self.builds += 1
            image_id = "sha256:" + hashlib.sha256(f"image-{self.builds}".encode()).hexdigest()
            self.images[args[args.index("-t") + 1]] = image_id
            pairs = [args[i + 1] for i, arg in enumerate(args) if arg == "--label"]
            self.labels[image_id] = dict(pair.split("=", 1) for pair in pairs)
        elif verb == "login" and self.config_dir is not None and input is not None:
            path = self.config_dir / "config.json"
            data = json.loads(path.read_text()) if path.exists() else {}
            token = base64.b64encode(f"{args[3]}:{input.strip()}".encode()).decode()
            data.setdefault("auths", {})[args[-1]] = {"auth": token}
            self.config_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data))
        elif verb == "pull":
            self.images[args[-1]] = BASE_ID
        elif verb == "tag":
            if args[2] not in self.images:
                return Result(1, f"Error response from daemon: No such image: {args[2]}")
            self.images[args[3]] = self.images[args[2]]
        elif verb in SMOKE_VERBS:
            return self._smoke(verb, args)
        elif verb == "image":
            found = self.images.get(args[-1])
            if not found:
                return Result(1, "Error: No such image")
            labels = self.labels.get(found) or None
            inspected: dict[str, object] = {"id": found, "digests": [], "labels": labels}
            inspected |= {"healthcheck": self.healthcheck, "shell": None, "onbuild": self.onbuild}
            return Result(0, json.dumps(inspected) + "\n")
        elif verb == "push":
            if self.push_hangs:  # until the other gate stops it
                assert cancel is not None
                self.push_cancelled = cancel.wait(30)
                return Result(124, "", "was cancelled", "cancel")
            outcome = self.push_outcomes.pop(0) if self.push_outcomes else "ok"
            if outcome != "ok":
                return Result(1, f"The push refers to repository\n{outcome}\n")
            reference = args[2]
            repository, tag = reference.split("/", 1)[1].rsplit(":", 1)
            config = self.images[reference]
            digest = "sha256:" + hashlib.sha256(config.encode()).hexdigest()
            self.registry.manifests[(repository, tag)] = Manifest(digest, config, "docker-v2")
            self.registry.configs[config] = self.labels.get(config, {})
            if self.containerd:
                for ref, image_id in list(self.images.items()):
                    if image_id == config:
                        self.images[ref] = digest
                        self.labels[digest] = self.labels.get(config, {})
            return Result(0, f"{tag}: digest: {digest} size: 528\n")
        return Result(0, "")

    def _smoke(self, verb: str, args: list[str]) -> Result:
        if verb == "run":
            self.containers.append(args[args.index("--name") + 1])
        elif verb == "rm":
            self.containers.remove(args[-1])
        elif verb == "exec":
            return Result(0 if self.healthy else 1, "" if self.healthy else "refused\n")
        elif verb == "inspect":
            state = {"Status": "running", "Running": True, "ExitCode": 0, "OOMKilled": False}
            return Result(0, json.dumps(state) + "\n")
        elif verb == "logs":
            return Result(0, "starting\nTraceback: boom\n")
        return Result(0, "")

    def verbs(self) -> list[str]:
        """The commands that change something (not reads, not the smoke test's own)."""
        skip = {"image", "version", *SMOKE_VERBS}
        return [args[1] for args, _ in self.calls if args[1] not in skip]

    def smoke_verbs(self) -> list[str]:
        return [args[1] for args, _ in self.calls if args[1] in SMOKE_VERBS]


@dataclass
class World:
    release: Release
    docker: FakeDocker
    registry: FakeRegistry
    client: Any
    tmp: Path
    connects: list[int]
    sleeps: list[float]
    registries: list[Authorization]  # one registry client made per token
    new_run: Callable[[], Release]  # another `inv` run, on the same machine and registry

    def rerun(self) -> Release:
        """A new run against the same docker, registry and AWS: it gathers its inputs anew."""
        self.release = self.new_run()
        return self.release


@pytest.fixture
def aws() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("ecr", region_name=REGION)


@pytest.fixture
def make_world(
    aws: Any, tmp_path: Path, make_settings: Callable[..., Settings]
) -> Callable[..., World]:
    def make(
        *,
        dry_run: bool = False,
        now: datetime = NOW,
        revision: Revision = CLEAN,
        **overrides: Any,
    ) -> World:
        context = tmp_path / "ctx"
        context.mkdir(exist_ok=True)
        (context / "Dockerfile").write_text("ARG BASE_IMAGE=python:3.12-slim\nFROM ${BASE_IMAGE}\n")
        fields: dict[str, Any] = {
            "dockerfile": context / "Dockerfile",
            "build_context": context,
            "base_image": BASE,
            **overrides,
        }
        registry = FakeRegistry()
        docker = FakeDocker(registry, config_dir=tmp_path / "docker")
        connects: list[int] = []
        sleeps: list[float] = []
        registries: list[Authorization] = []
        ticks = itertools.count(0.0, 0.25)  # a monotonic clock that moves a quarter second a read
        accepts = {Ecr(aws).authorization().password}  # moto's token; and docker's login

        def connect(settings: Settings, kind: type[Ecr]) -> Ecr:
            connects.append(1)
            return _with_registry(kind, registry)(aws)

        def registry_for(auth: Authorization) -> Any:
            registries.append(auth)
            return FakeRegistryClient(registry, auth, accepts)

        environ = {
            "DOCKER_CONFIG": str(tmp_path / "docker"),
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
        }

        def new_run() -> Release:
            return make_release(
                make_settings(**fields),
                dry_run=dry_run,
                environ=environ,
                runner=docker,
                connect=connect,
                registry_for=registry_for,
                clock=Clock(now=lambda: now, monotonic=ticks.__next__, sleep=sleeps.append),
                revision=lambda path: revision,
            )

        return World(
            new_run(), docker, registry, aws, tmp_path, connects, sleeps, registries, new_run
        )

    return make


def repo_names(client: Any) -> list[str]:
    return [r["repositoryName"] for r in client.describe_repositories()["repositories"]]


def test_release_runs_the_steps_in_order_and_verifies(make_world: Callable[..., World]) -> None:
    world = make_world()
    summary = world.release.release("v1")

    assert world.docker.verbs() == ["build", "login", "tag", "push", "tag", "rmi"]
    assert [name for name, _ in summary.timings] == [
        "check",
        "build",
        "ensure-repo",
        "login",
        "gates",
        "smoke-test",  # during the gates: the candidate's push and the smoke test at once
    ]
    assert repo_names(world.client) == ["widget-server"]
    assert summary.image_uri == f"{HOST}/widget-server:v1"
    assert summary.digest == world.registry.manifests[("widget-server", "v1")].digest
    assert world.connects == [1]  # one boto3 session for the whole run
    gates = summary.gates
    assert gates is not None and gates.candidate.startswith("ecr-release-candidate-")
    tag_args = next(args for args, _ in world.docker.calls if args[1] == "tag")
    candidate = f"{HOST}/widget-server:{gates.candidate}"
    assert tag_args == ["docker", "tag", "widget-server:v1", candidate]
    push_args = next(args for args, _ in world.docker.calls if args[1] == "push")
    assert push_args == ["docker", "push", candidate]  # never the version itself
    assert world.registry.puts == [("widget-server", "v1")]  # the candidate's bytes, put
    assert world.registry.deleted == [("widget-server", gates.candidate)] and gates.removed
    assert ("widget-server", gates.candidate) not in world.registry.manifests
    # Locally too, the image ends under its version's remote name, not the candidate's.
    local_tags = [args for args, _ in world.docker.calls if args[1] in ("tag", "rmi")][1:]
    assert local_tags == [
        ["docker", "tag", "widget-server:v1", f"{HOST}/widget-server:v1"],
        ["docker", "rmi", "--no-prune", candidate],
    ]


def test_build_arguments_labels_and_base_image(make_world: Callable[..., World]) -> None:
    world = make_world()
    world.release.build("v7")
    args = next(args for args, _ in world.docker.calls if args[1] == "build")
    context = str(world.tmp / "ctx")
    assert args[:6] == ["docker", "build", "-t", "widget-server:v7", "-f", f"{context}/Dockerfile"]
    # The Dockerfile copies nothing: docker is given a folder of what it reads, now gone.
    sent = Path(args[-1])
    assert sent.parent == world.tmp / "cache" / "ecr-release" / "build" and not sent.exists()
    pairs = {args[i + 1] for i, a in enumerate(args) if a in ("--label", "--build-arg")}
    assert {
        "org.opencontainers.image.version=v7",
        "org.opencontainers.image.revision=0123abc",
        "org.opencontainers.image.created=2026-11-27T12:00:00Z",
        "org.opencontainers.image.source=https://example.invalid/widget.git",
        "BASE_IMAGE=local/python-base:bookworm",
        "APP_VERSION=v7",
        "VCS_REF=0123abc",
    } <= pairs


def _sent_at_build(world: World) -> dict[str, Any]:
    """What docker is given to build, as it is during the build (and whether it stays)."""
    seen: dict[str, Any] = {}

    def look() -> None:
        context = Path(world.docker.calls[-1][0][-1])
        seen["context"] = context
        seen["paths"] = sorted(p.relative_to(context).as_posix() for p in context.rglob("*"))

    world.docker.on_build = look
    return seen


def _copying(world: World, dockerfile: str) -> None:
    context = world.tmp / "ctx"
    (context / "Dockerfile").write_text(dockerfile)
    for name in ("app/main.py", "app/lib/util.py", "assets/big.bin", "README.md"):
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text(name)
    (context / "app" / "run.sh").write_text("#!/bin/sh\n")
    (context / "app" / "run.sh").chmod(0o755)
    (context / "app" / "link").symlink_to("main.py")


COPY_APP = "ARG BASE_IMAGE=python:3.12-slim\nFROM ${BASE_IMAGE}\nCOPY app/ /app/\n"


def test_the_build_is_given_only_what_copy_and_add_read(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    """The classic builder sends all it is given before the first step: a folder of
    assets the Dockerfile never copies must not cost a build its upload."""
    world = make_world()
    _copying(world, COPY_APP)
    (world.tmp / "ctx" / ".dockerignore").write_text("app/lib/\n")
    seen = _sent_at_build(world)
    with caplog.at_level(logging.INFO, logger="ecr_release"):
        world.release.release("v1")
    assert seen["paths"] == [".dockerignore", "app", "app/link", "app/main.py", "app/run.sh"]
    sent, context = seen["context"], world.tmp / "ctx"
    assert not sent.exists()  # removed after the build
    sending = "==> build widget-server:v1 (sending 5 of 9 context entries: what COPY and ADD read)"
    assert sending in caplog.text
    args = next(args for args, _ in world.docker.calls if args[1] == "build")
    assert args[args.index("-f") + 1] == str(context / "Dockerfile")  # the Dockerfile as it is


def test_files_are_sent_with_their_content_mode_and_times(
    make_world: Callable[..., World], tmp_path: Path
) -> None:
    world = make_world()
    _copying(world, COPY_APP)
    context = world.tmp / "ctx"
    os.utime(context / "app" / "main.py", ns=(10**18, 10**18))
    found: dict[str, Any] = {}

    def look() -> None:
        sent = Path(world.docker.calls[-1][0][-1])
        found["main"] = (sent / "app" / "main.py").stat()
        found["run"] = (sent / "app" / "run.sh").stat()
        found["text"] = (sent / "app" / "main.py").read_text()
        found["link"] = os.readlink(sent / "app" / "link")

    world.docker.on_build = look
    world.release.build("v1")
    assert found["text"] == "app/main.py" and found["link"] == "main.py"
    assert found["main"].st_mtime_ns == 10**18
    assert found["run"].st_mode & 0o777 == 0o755


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM python:3.12-slim\nCOPY . /app/\n",  # the whole context
        "FROM python:3.12-slim\nCOPY app/*.py /app/\n",  # a wildcard
        "FROM python:3.12-slim\nARG DIR=app\nCOPY ${DIR} /app/\n",  # a variable
        "FROM python:3.12-slim\nCOPY missing/ /app/\n",  # not in the context: docker says so
    ],
)
def test_when_what_the_build_reads_is_not_certain_it_gets_the_whole_context(
    make_world: Callable[..., World], dockerfile: str
) -> None:
    world = make_world(base_image=None)
    _copying(world, dockerfile)
    world.docker.images["python:3.12-slim"] = BASE_ID
    world.release.build("v1")
    args = next(args for args, _ in world.docker.calls if args[1] == "build")
    assert args[-1] == str(world.tmp / "ctx")


def test_a_base_with_onbuild_triggers_gets_the_whole_context(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    _copying(world, COPY_APP)
    world.docker.onbuild = ["COPY . /src"]  # runs first, in our build, reading anything
    world.release.build("v1")
    args = next(args for args, _ in world.docker.calls if args[1] == "build")
    assert args[-1] == str(world.tmp / "ctx")


def test_a_failing_step_stops_the_release(make_world: Callable[..., World]) -> None:
    world = make_world()
    world.docker.fail["build"] = Result(
        1, "Step 2/5 : RUN false\nThe command returned a non-zero code: 1"
    )
    with pytest.raises(DockerError, match="docker build failed"):
        world.release.release("v1")
    assert world.docker.verbs() == ["build"]
    assert repo_names(world.client) == []  # ensure-repo never ran


def test_login_failure_stops_before_tag_and_push(make_world: Callable[..., World]) -> None:
    world = make_world()
    world.docker.fail["login"] = Result(1, "Error response from daemon: login attempt failed")
    with pytest.raises(DockerError, match=r"docker login to .* was refused: Error response"):
        world.release.release("v1")
    assert world.docker.verbs() == ["build", "login"]


def test_rerun_of_a_released_version_is_a_no_op(make_world: Callable[..., World]) -> None:
    world = make_world()
    first = world.release.release("v1")
    world.docker.calls.clear()
    second = world.release.release("v1")
    assert second.already_released is True
    assert second.digest == first.digest
    assert world.docker.verbs() == []  # no build, no login, no push


def test_existing_version_with_another_image_is_refused_before_building(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    world.registry.manifests[("widget-server", "v1")] = Manifest(
        "sha256:" + "a" * 64, "sha256:other", "x"
    )
    with pytest.raises(VersionExistsError) as err:
        world.release.release("v1")
    assert "sha256:" + "a" * 64 in err.value.message
    assert "choose a new --version" in err.value.message
    assert world.docker.verbs() == []
    assert world.registry.manifests[("widget-server", "v1")].config_digest == "sha256:other"


def test_push_alone_refuses_to_overwrite(make_world: Callable[..., World]) -> None:
    world = make_world()
    world.release.release("v1")
    (world.tmp / "ctx" / "app.py").write_text("changed\n")
    world.rerun().build("v1")  # another image, from other inputs, under the same local tag
    world.release.tag("v1")
    with pytest.raises(VersionExistsError, match="the build context differs"):
        world.release.push("v1")
    assert world.docker.verbs()[-1] == "tag"


def test_push_alone_of_a_rebuild_from_identical_inputs_is_a_no_op(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    first = world.release.release("v1")
    world.rerun().build("v1")  # a new image ID (a new created time), the same inputs
    world.release.tag("v1")
    again = world.release.push("v1")
    assert again.already_released and again.digest == first.digest
    assert world.docker.verbs()[-2:] == ["build", "tag"]  # no push


def test_verification_catches_a_digest_mismatch(make_world: Callable[..., World]) -> None:
    world = make_world()
    real_call = world.docker.__call__

    def racing(args: Sequence[str], **kwargs: Any) -> Result:
        result = real_call(args, **kwargs)
        if args[1] == "push":  # someone else's push lands right after ours
            tag = args[-1].rsplit(":", 1)[1]
            world.registry.manifests[("widget-server", tag)] = Manifest(
                "sha256:" + "b" * 64, "x", "y"
            )
        return result

    world.release.docker = Docker(racing)
    with pytest.raises(
        RegistryError,
        match=r"verification failed: tag ecr-release-candidate-\w+ resolves to sha256:b",
    ):
        world.release.release("v1")
    assert ("widget-server", "v1") not in world.registry.manifests  # no version tag


def test_verification_catches_a_foreign_config(make_world: Callable[..., World]) -> None:
    world = make_world()
    world.release.release("v1")
    manifest = world.registry.manifests[("widget-server", "v1")]
    world.registry.manifests[("widget-server", "v1")] = Manifest(
        manifest.digest, "sha256:else", "x"
    )
    with pytest.raises(RegistryError, match="config is sha256:else"):
        world.release.published.verify("v1", manifest.digest, f"{HOST}/widget-server:v1")


@pytest.mark.parametrize(
    "failure",
    [
        "read: connection reset by peer",
        "EOF",
        "received unexpected HTTP status: 503 Service Unavailable",
        "toomanyrequests: Rate exceeded",
    ],
)
def test_transient_push_failures_are_retried_with_backoff(
    make_world: Callable[..., World], failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world()
    world.docker.push_outcomes = [failure, failure]
    with caplog.at_level(logging.INFO, logger="ecr_release"):
        summary = world.release.release("v1")
    assert world.docker.verbs() == ["build", "login", "tag", "push", "push", "push", "tag", "rmi"]
    assert world.sleeps == [2.0, 4.0]
    assert "push attempt 1/4 failed" in caplog.text
    assert "push attempt 2/4 failed" in caplog.text
    assert summary.digest == world.registry.manifests[("widget-server", "v1")].digest


def test_transient_retries_are_bounded(make_world: Callable[..., World]) -> None:
    world = make_world()
    world.docker.push_outcomes = ["EOF"] * 10
    with pytest.raises(DockerError, match="failed: EOF"):
        world.release.release("v1")
    assert world.docker.verbs().count("push") == 4
    assert world.sleeps == [2.0, 4.0, 8.0]


@pytest.mark.parametrize(
    "failure",
    [
        "denied: Your authorization token has expired. Reauthenticate and try again.",
        "unauthorized: authentication required",
    ],
)
def test_expired_login_triggers_one_fresh_login(
    make_world: Callable[..., World], failure: str
) -> None:
    world = make_world()
    world.docker.push_outcomes = [failure]
    world.release.release("v1")
    assert world.docker.verbs() == ["build", "login", "tag", "push", "login", "push", "tag", "rmi"]
    assert world.sleeps == []


def test_second_auth_failure_is_final(make_world: Callable[..., World]) -> None:
    world = make_world()
    world.docker.push_outcomes = ["unauthorized: authentication required"] * 2
    with pytest.raises(DockerError, match="unauthorized"):
        world.release.release("v1")
    assert world.docker.verbs() == ["build", "login", "tag", "push", "login", "push", "rmi"]


@pytest.mark.parametrize(
    ("failure", "hint"),
    [
        (
            "name unknown: The repository with name 'widget-server' does not exist",
            "inv ensure-repo",
        ),
        ("denied: User: arn:aws:iam::1:user/ci is not authorized", "ecr:InitiateLayerUpload"),
    ],
)
def test_final_push_failures_fail_at_once_with_a_hint(
    make_world: Callable[..., World], failure: str, hint: str
) -> None:
    world = make_world()
    world.docker.push_outcomes = [failure]
    with pytest.raises(DockerError) as err:
        world.release.release("v1")
    assert hint in err.value.message
    assert world.docker.verbs().count("push") == 1
    assert world.sleeps == []


def test_immutable_tag_becomes_version_already_released(make_world: Callable[..., World]) -> None:
    world = make_world()
    world.docker.push_outcomes = [
        "tag invalid: The image tag 'v1' already exists in the 'widget-server' repository and "
        "cannot be overwritten because the repository is immutable."
    ]
    with pytest.raises(VersionExistsError, match="already released in the immutable repository"):
        world.release.release("v1")


def test_password_never_reaches_arguments_or_logs(
    make_world: Callable[..., World], aws: Any, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world()
    password = Ecr(aws).authorization().password
    with caplog.at_level(logging.DEBUG):
        world.release.release("v1")
    logins = [(args, stdin) for args, stdin in world.docker.calls if args[1] == "login"]
    assert logins == [
        (["docker", "login", "--username", "AWS", "--password-stdin", HOST], password + "\n")
    ]
    for args, _ in world.docker.calls:
        assert all(password not in arg for arg in args)
    assert password not in caplog.text
    records = (world.tmp / "cache" / "ecr-release" / "logins.json").read_text()
    assert password not in records


def write_docker_config(world: World, config: dict[str, Any]) -> None:
    path = world.tmp / "docker" / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    "config", [{"credHelpers": {HOST: "ecr-login"}}, {"credsStore": "ecr-login"}]
)
def test_login_is_skipped_with_the_ecr_credential_helper(
    make_world: Callable[..., World], config: dict[str, Any]
) -> None:
    world = make_world()
    write_docker_config(world, config)
    assert world.release.login() == HOST
    assert world.docker.verbs() == []
    world.release.login(force=True)
    assert world.docker.verbs() == ["login"]


def _record(world: World, expires: datetime) -> None:
    LoginRecords(world.tmp / "cache" / "ecr-release" / "logins.json").record(
        world.tmp / "docker", HOST, expires
    )


def test_a_recent_login_is_reused(make_world: Callable[..., World]) -> None:
    world = make_world()
    write_docker_config(world, {"auths": {HOST: {"auth": "x"}}})
    _record(world, NOW + timedelta(hours=2))
    world.release.login()
    assert world.docker.verbs() == []
    world.release.login(force=True)
    assert world.docker.verbs() == ["login"]


@pytest.mark.parametrize(
    ("expires", "auths"),
    [
        (NOW + timedelta(minutes=29), {HOST: {}}),  # expires too soon
        (NOW + timedelta(hours=2), {}),  # docker no longer holds credentials
        (NOW + timedelta(hours=2), {"other.example": {}}),
    ],
)
def test_login_happens_when_the_old_one_is_not_good_enough(
    make_world: Callable[..., World], expires: datetime, auths: dict[str, Any]
) -> None:
    world = make_world()
    write_docker_config(world, {"auths": auths})
    _record(world, expires)
    world.release.login()
    assert world.docker.verbs() == ["login"]


def test_login_records_the_expiry(make_world: Callable[..., World], aws: Any) -> None:
    world = make_world()
    world.release.login()
    data = json.loads((world.tmp / "cache" / "ecr-release" / "logins.json").read_text())
    auth = Ecr(aws).authorization()
    [(key, value)] = [(k, v) for k, v in data.items() if not k.startswith("registry|")]
    assert key.endswith(f"|{HOST}")
    assert datetime.fromisoformat(value) == auth.expires_at
    # And which registry this AWS identity's token named, until it expires: no password.
    [(key, value)] = [(k, v) for k, v in data.items() if k.startswith("registry|")]
    host, expiry = value.split()
    assert host == HOST and datetime.fromisoformat(expiry) == auth.expires_at
    assert auth.password not in json.dumps(data)


def test_dry_run_changes_nothing(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture, aws: Any
) -> None:
    world = make_world(dry_run=True)
    with caplog.at_level(logging.INFO, logger="ecr_release"):
        summary = world.release.release("v1")
    assert summary.dry_run is True
    assert world.docker.verbs() == []
    assert repo_names(world.client) == []
    assert world.registry.manifests == {}
    plan = plan_lines(r.getMessage() for r in caplog.records)
    assert planned_steps(plan) == RELEASE_PLAN
    assert plan[0] == f"[dry-run] check: {HOST}/widget-server:v1 is not released yet"
    assert "docker build -t widget-server:v1" in step_line(plan, "build")
    assert "docker run -d --network none widget-server:v1" in step_line(plan, "smoke-test")
    create = step_line(plan, "ensure-repo")
    assert "ecr:CreateRepository(" in create and "'scanOnPush': True" in create
    login = step_line(plan, "login")
    assert f"--password-stdin {HOST}" in login and "***" in login
    candidate = f"{HOST}/widget-server:ecr-release-candidate-"
    assert step_line(plan, "push").startswith(f"[dry-run] push: docker push {candidate}")
    assert "PUT /v2/widget-server/manifests/v1" in step_line(plan, "version")
    assert "ecr:BatchDeleteImage(widget-server" in step_line(plan, "candidate")
    assert Ecr(aws).authorization().password not in caplog.text


def test_dry_run_with_existing_repository(make_world: Callable[..., World], aws: Any) -> None:
    aws.create_repository(repositoryName="widget-server", imageTagMutability="IMMUTABLE")
    world = make_world(dry_run=True)
    world.release.release("v1")
    assert world.docker.verbs() == []


def test_secrets_in_the_build_context_stop_the_build(make_world: Callable[..., World]) -> None:
    world = make_world()
    (world.tmp / "ctx" / ".env").write_text("AWS_SECRET_ACCESS_KEY=x\n")
    with pytest.raises(SettingsError, match=r"holds \.env and \.dockerignore does not exclude it"):
        world.release.release("v1")
    assert world.docker.verbs() == []
    (world.tmp / "ctx" / ".dockerignore").write_text(".env\n")
    world.release.build("v1")
    assert world.docker.verbs() == ["build"]


def test_wrong_account_stops_before_building(make_world: Callable[..., World]) -> None:
    world = make_world(account_id="000000000000")
    with pytest.raises(AwsError, match="not account 000000000000"):
        world.release.release("v1")
    assert world.docker.verbs() == []


def test_tag_and_push_alone_need_the_repository(make_world: Callable[..., World]) -> None:
    world = make_world()
    with pytest.raises(AwsError, match="does not exist: run `inv ensure-repo`"):
        world.release.tag("v1")
    assert world.docker.verbs() == []


def test_steps_one_by_one_reach_the_same_result(make_world: Callable[..., World]) -> None:
    world = make_world()
    world.release.build("v2")
    assert world.release.ensure_repo().uri == f"{HOST}/widget-server"
    world.release.login()
    world.release.tag("v2")
    digest = world.release.push("v2").digest
    assert world.docker.verbs() == ["build", "login", "tag", "push"]
    assert world.registry.manifests[("widget-server", "v2")].digest == digest


def test_release_holds_the_machine_lock(make_world: Callable[..., World]) -> None:
    world = make_world()
    seen: list[str] = []

    def try_lock() -> None:
        try:
            with release_lock(
                world.tmp / "cache" / "ecr-release" / "locks", f"{REGION}-widget-server", timeout=0
            ):
                seen.append("acquired")
        except LockedError as exc:
            seen.append(exc.message)

    world.docker.on_build = try_lock
    world.release.release("v1")
    assert len(seen) == 1 and seen[0].startswith("another release of")


@dataclass
class LockLook:
    """A docker hook: is this machine's lock ``name`` held (by the run) when the command
    runs? ``held`` and ``free`` count the looks that found it held, and free."""

    locks: Path
    name: str
    held: int = 0
    free: int = 0

    def __call__(self) -> None:
        try:
            with release_lock(self.locks, self.name, timeout=0):
                self.free += 1
        except LockedError:
            self.held += 1


def _look(world: World, name: str) -> LockLook:
    return LockLook(world.tmp / "cache" / "ecr-release" / "locks", name)


def _bounded(work: Callable[[], object], seconds: float = 60.0) -> None:
    """Run ``work`` in a thread; fail if it is not done in ``seconds`` (a deadlock)."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds}s: a lock waits for itself?"
    if failures:
        raise failures[0]


def test_a_missing_base_image_is_pulled_under_the_machines_pull_lock(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    del world.docker.images[BASE]
    look = world.docker.on_verb["pull"] = _look(world, pull_lock_name(BASE))
    world.release.release("v1")
    assert (look.held, look.free) == (1, 0)
    pulls = [args for args, _ in world.docker.calls if args[1] == "pull"]
    assert pulls == [["docker", "pull", BASE]]


def test_each_login_holds_the_machines_login_lock_and_a_relogin_does_not_wait_for_itself(
    make_world: Callable[..., World],
) -> None:
    """The release's login, the fresh one after a 401 (``_relogin``: a forced login) and
    ``inv login --force`` each run once, under the registry's lock, and none waits on a
    lock its own run holds."""
    world = make_world()
    world.docker.push_outcomes = ["unauthorized: authentication required"]
    look = world.docker.on_verb["login"] = _look(world, login_lock_name(HOST))
    _bounded(lambda: world.release.release("v1"))
    _bounded(lambda: world.release.login(force=True))
    assert world.docker.verbs() == [
        *("build", "login", "tag", "push", "login", "push", "tag", "rmi", "login")
    ]
    assert (look.held, look.free) == (3, 0)


def test_two_runs_logging_in_at_once_log_in_once(make_world: Callable[..., World]) -> None:
    """Two services' runs on one machine and registry: the second waits for the first's
    login, then finds it valid and skips its own (without the lock both log in)."""
    world = make_world(now=BEFORE_EXPIRY)
    runs = [world.release, world.new_run()]
    # A slow login: the other run, unless the lock holds it back, checks meanwhile.
    world.docker.on_verb["login"] = lambda: time.sleep(0.5)
    with ThreadPoolExecutor(2) as pool:
        hosts = [future.result(timeout=60) for future in [pool.submit(r.login) for r in runs]]
    assert hosts == [HOST, HOST]
    assert world.docker.verbs() == ["login"]


def test_daemon_down_fails_before_anything(make_world: Callable[..., World]) -> None:
    world = make_world()
    down = Result(
        1,
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
        "Is the docker daemon running?",
    )
    world.docker.fail["version"] = world.docker.fail["image"] = down  # every command fails
    with pytest.raises(DockerError, match="Docker daemon is not answering"):
        world.release.release("v1")
    assert world.docker.verbs() == []
    assert world.connects == []


def test_containerd_image_store_ids_verify_and_rerun(make_world: Callable[..., World]) -> None:
    world = make_world()
    world.docker.containerd = True
    first = world.release.release("v1")
    assert first.digest == world.registry.manifests[("widget-server", "v1")].digest
    again = world.release.release("v1")
    assert again.already_released is True


def test_ensure_repo_alone_checks_the_account_first(make_world: Callable[..., World]) -> None:
    world = make_world(account_id="000000000000")
    with pytest.raises(AwsError, match="not account 000000000000"):
        world.release.ensure_repo()
    assert repo_names(world.client) == []


def test_released_version_without_a_local_image_says_so(make_world: Callable[..., World]) -> None:
    world = make_world()
    world.registry.manifests[("widget-server", "v1")] = Manifest("sha256:" + "c" * 64, "x", "y")
    with pytest.raises(VersionExistsError, match="there is no local image widget-server:v1"):
        world.release.release("v1")


def test_an_unwritable_cache_is_one_line_before_anything(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    (world.tmp / "cache").write_text("a file where the cache directory should be")
    with pytest.raises(SettingsError, match="set XDG_CACHE_HOME to a writable directory"):
        world.release.release("v1")
    assert world.docker.verbs() == []


def test_a_login_record_that_cannot_be_written_is_a_warning(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world()
    records = world.tmp / "cache" / "ecr-release" / "logins.json"
    records.mkdir(parents=True)  # a directory where the file should be
    with caplog.at_level(logging.WARNING, logger="ecr_release"):
        assert world.release.login() == HOST
    assert world.docker.verbs() == ["login"]
    assert "could not record the login" in caplog.text


def test_one_registry_client_per_token(make_world: Callable[..., World]) -> None:
    world = make_world()
    world.release.release("v1")  # the check before building, the verification after pushing
    assert len(world.registries) == 1
    world.docker.push_outcomes = ["unauthorized: authentication required"]
    world.release.build("v2")
    world.release.tag("v2")
    world.release.push("v2")
    assert len(world.registries) == 2  # the fresh login brought a new token, hence a new client


# -- hardening --------------------------------------------------------------------------


def test_push_of_a_version_never_tagged_says_build_and_tag(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    world.release.ensure_repo()
    with pytest.raises(DockerError) as err:
        world.release.push("v9")
    assert err.value.message == (
        f"there is no local image {HOST}/widget-server:v9 to push: run `inv build --version v9` "
        "and `inv tag --version v9` first"
    )
    assert world.docker.verbs() == []


@pytest.mark.parametrize("step", ["release", "login"])
def test_a_corrupt_docker_config_stops_before_any_login(
    make_world: Callable[..., World], step: str
) -> None:
    world = make_world()
    config = world.tmp / "docker" / "config.json"
    config.parent.mkdir()
    config.write_text('{"auths": {"other.example": {"auth": "eA=="}}')  # cut short
    with pytest.raises(SettingsError, match="fix or move it"):
        world.release.release("v1") if step == "release" else world.release.login()
    assert world.docker.verbs() == []  # no build, and above all no docker login
    assert config.read_text() == '{"auths": {"other.example": {"auth": "eA=="}}'


def test_a_repository_too_long_for_the_real_host_is_refused_before_anything(
    make_world: Callable[..., World],
) -> None:
    world = make_world(repository="a" * 211)
    with pytest.raises(SettingsError, match=f"registry host {HOST} .* use at most 210"):
        world.release.release("v1")
    assert world.docker.verbs() == []
    assert repo_names(world.client) == []


# -- same inputs, same release, on any machine --------------------------------------------


def _fresh_machine(world: World) -> Release:
    """Another runner: the same checkout and registry, no image but the base."""
    world.docker.images = {BASE: BASE_ID}
    world.docker.calls.clear()
    return world.rerun()


def test_a_rerun_on_a_fresh_machine_with_the_same_inputs_is_a_no_op(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world()
    first = world.release.release("v1")
    with caplog.at_level(logging.INFO, logger="ecr_release"):
        again = _fresh_machine(world).release("v1")
    assert again.already_released and again.digest == first.digest
    assert world.docker.verbs() == []  # no build, no login, no push
    assert "released from identical inputs (commit 0123abc)" in caplog.text
    assert again.fingerprint == first.fingerprint is not None


@pytest.mark.parametrize(
    ("change", "part"),
    [
        ("context", "the build context differs"),
        ("dockerfile", "the Dockerfile differs"),
        ("base", "the images the build reads differ"),
    ],
)
def test_a_rerun_with_changed_inputs_is_refused_before_building(
    make_world: Callable[..., World], change: str, part: str
) -> None:
    world = make_world()
    first = world.release.release("v1")
    if change == "context":
        (world.tmp / "ctx" / "app.py").write_text("print('changed')\n")
    elif change == "dockerfile":
        (world.tmp / "ctx" / "Dockerfile").write_text(f"FROM {BASE}\nUSER 10001\n")
    release = _fresh_machine(world)
    if change == "base":
        world.docker.images[BASE] = "sha256:" + "4e3" * 21 + "0"  # the tag moved
    with pytest.raises(VersionExistsError) as err:
        release.release("v1")
    assert err.value.message == (
        f"widget-server:v1 is already released as {first.digest} and {part} from the one "
        "released as v1 (commit 0123abc): released versions are never overwritten; choose a "
        "new --version"
    )
    assert world.docker.verbs() == []
    assert world.registry.manifests[("widget-server", "v1")].digest == first.digest


def test_a_rerun_whose_copied_from_image_moved_is_refused_before_building(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    side, side_id = "side-image:1", "sha256:" + "51de" * 16
    (world.tmp / "ctx" / "Dockerfile").write_text(
        f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nCOPY --from={side} /side.txt /side.txt\n"
    )
    world.docker.images[side] = side_id
    first = world.release.release("v1")
    labels = world.docker.labels[world.docker.images["widget-server:v1"]]
    assert labels["org.opencontainers.image.base.name"] == BASE  # the FROM image, not the side
    release = _fresh_machine(world)
    world.docker.images[side] = side_id
    assert release.release("v1").already_released  # the same side image: the same inputs
    release = _fresh_machine(world)
    world.docker.images[side] = "sha256:" + "51d2" * 16  # rebuilt with other content
    with pytest.raises(VersionExistsError, match="and the images the build reads differ from"):
        release.release("v1")
    assert world.docker.verbs() == []
    assert world.registry.manifests[("widget-server", "v1")].digest == first.digest


def test_a_from_with_a_default_releases_and_a_required_variable_stops_before_anything(
    make_world: Callable[..., World],
) -> None:
    world = make_world(base_image=None)
    dockerfile = world.tmp / "ctx" / "Dockerfile"
    dockerfile.write_text(f"FROM ${{BASE_IMAGE:-{BASE}}}\n")
    assert not world.release.release("v1").already_released
    labels = world.docker.labels[world.docker.images["widget-server:v1"]]
    assert labels["org.opencontainers.image.base.digest"] == BASE_ID
    dockerfile.write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE:?required}\n")
    world.docker.calls.clear()
    with pytest.raises(SettingsError, match=r"line 2: cannot expand FROM .*BASE_IMAGE: required"):
        world.rerun().release("v2")
    assert world.docker.verbs() == []
    assert ("widget-server", "v2") not in world.registry.manifests


def test_the_same_machine_with_changed_code_is_refused(make_world: Callable[..., World]) -> None:
    world = make_world()
    world.release.release("v1")
    (world.tmp / "ctx" / "app.py").write_text("print('changed')\n")
    world.docker.calls.clear()
    with pytest.raises(VersionExistsError, match="the build context differs"):
        world.rerun().release("v1")  # the old image is still here under the same tag
    assert world.docker.verbs() == []


def test_a_release_without_a_fingerprint_falls_back_to_the_image_id(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    # Pushed by another tool: no fingerprint labels, but the same image as the local one.
    world.docker.images["widget-server:v1"] = "sha256:" + "0ff" * 21 + "0"
    world.registry.manifests[("widget-server", "v1")] = Manifest(
        "sha256:" + "d" * 64, "sha256:" + "0ff" * 21 + "0", "x"
    )
    assert world.release.release("v1").already_released
    world.docker.images["widget-server:v1"] = "sha256:" + "1" * 64
    with pytest.raises(VersionExistsError, match="with a different image than the local"):
        world.rerun().release("v1")


def test_the_built_image_carries_its_fingerprint_and_base_labels(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    summary = world.release.release("v1")
    labels = world.docker.labels[world.docker.images["widget-server:v1"]]
    assert summary.fingerprint is not None
    assert labels["io.ecr-release.fingerprint"] == summary.fingerprint.digest
    assert labels["org.opencontainers.image.base.name"] == BASE
    assert labels["org.opencontainers.image.base.digest"] == BASE_ID
    assert "BUILD_DATE" not in json.dumps(summary.fingerprint.labels())


# -- the fast path: docker's stored login, no AWS call -------------------------------------

# moto's tokens say they expire on 2015-01-01: a clock four hours before keeps them valid.
BEFORE_EXPIRY = datetime(2014, 12, 31, 20, 0, tzinfo=UTC)


@contextlib.contextmanager
def patch_method(cls: type, name: str, calls: list[object]) -> Iterator[None]:
    """Record each call of ``cls.name`` in ``calls``, and let it run."""
    original = getattr(cls, name)

    def recording(self: object, *args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(self, *args, **kwargs)

    setattr(cls, name, recording)
    try:
        yield
    finally:
        setattr(cls, name, original)


def test_a_rerun_with_dockers_login_asks_aws_nothing(make_world: Callable[..., World]) -> None:
    world = make_world(now=BEFORE_EXPIRY)
    first = world.release.release("v1")
    assert world.connects == [1]
    again = _fresh_release(world)
    assert again.already_released and again.digest == first.digest
    assert world.connects == [1]  # no second boto3 session: no AWS call at all
    assert world.docker.verbs() == []


def test_a_rerun_asks_the_registry_while_the_context_is_walked(
    make_world: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With docker's stored login the registry's answer is read in a thread of its own,
    started before the walk: its time hides in the walk's."""
    world = make_world(now=BEFORE_EXPIRY)
    world.release.release("v1")
    seen: list[str] = []
    real_read = world.registry.manifest

    def manifest(repository: str, reference: str) -> Manifest | None:
        seen.append(f"registry in {threading.current_thread().name}")
        return real_read(repository, reference)

    monkeypatch.setattr(world.registry, "manifest", manifest)
    again = _fresh_release(world)
    assert again.already_released
    assert seen and seen[0].startswith("registry in check")
    assert world.connects == [1]  # still no AWS call


def test_the_base_image_is_looked_up_while_the_context_is_walked(
    make_world: Callable[..., World],
) -> None:
    """BASE_IMAGE's image is asked of docker in the check thread, once docker answered: the
    fingerprint after the walk is answered from there, with no docker call of its own."""
    world = make_world(now=BEFORE_EXPIRY)
    world.release.release("v1")
    asked: list[str] = []
    world.docker.on_verb["image"] = lambda: asked.append(threading.current_thread().name)
    assert _fresh_release(world).already_released
    assert len(asked) == 1 and asked[0].startswith("check"), asked


def test_a_base_image_docker_describes_is_its_answer_without_docker_version(
    make_world: Callable[..., World],
) -> None:
    """One start of the docker CLI beside the walk, not two: the base image's look-up shows
    that docker answers. Without a local base, ``docker version`` says what is wrong."""
    world = make_world(now=BEFORE_EXPIRY)
    world.release.release("v1")
    world.docker.calls.clear()
    assert _fresh_release(world).already_released
    assert [args[1] for args, _ in world.docker.calls] == ["image"]
    world.docker.images.pop(BASE)
    world.docker.calls.clear()
    (world.tmp / "ctx" / "app.py").write_text("print('v2')\n")
    world.rerun().release("v2")
    verbs = [args[1] for args, _ in world.docker.calls]
    assert verbs[:2] == ["image", "version"] and "pull" in verbs


def test_a_daemon_that_does_not_answer_costs_one_wait_not_two(
    make_world: Callable[..., World],
) -> None:
    """The base image's look-up stands in for ``docker version``: when it gets no answer in
    time, that is the one line, and ``docker version`` does not wait again."""
    world = make_world(now=BEFORE_EXPIRY)
    world.docker.fail["image"] = Result(
        124, "", stopped="gave no answer within 10 s", limit="timeout"
    )
    with pytest.raises(DockerError, match=r"^`docker image inspect` gave no answer within 10 s"):
        world.release.release("v1")
    assert [args[1] for args, _ in world.docker.calls] == ["image"]


def test_a_new_version_asks_aws_beside_the_build_and_a_rerun_never(
    make_world: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a stored login, a rerun asks AWS nothing (boto3 is not even made a client); a
    new version's first AWS call, with boto3's import and client, is made beside the build."""
    world = make_world(now=BEFORE_EXPIRY)
    world.release.release("v1")
    asked: list[str] = []
    real = Ecr.describe_repository

    def describe(self: Ecr, name: str) -> Any:
        asked.append(threading.current_thread().name)
        return real(self, name)

    monkeypatch.setattr(Ecr, "describe_repository", describe)
    before = len(world.connects)
    assert _fresh_release(world).already_released
    assert asked == [] and len(world.connects) == before
    (world.tmp / "ctx" / "app.py").write_text("print('v2')\n")
    assert not world.rerun().release("v2").already_released
    assert asked == ["rules"] and len(world.connects) == before + 1


def test_without_a_stored_login_the_registry_is_asked_after_docker_answers(
    make_world: Callable[..., World],
) -> None:
    """No stored login means a token, so AWS: not before docker has answered, as ever."""
    world = make_world()
    down = Result(1, "Cannot connect to the Docker daemon")
    world.docker.fail["version"] = world.docker.fail["image"] = down
    asked: list[object] = []
    with patch_method(FakeRegistry, "manifest", asked), pytest.raises(DockerError):
        world.release.release("v1")
    assert asked == [] and world.connects == []


def test_a_registry_failure_read_early_is_told_after_the_secrets_check(
    make_world: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world(now=BEFORE_EXPIRY)
    world.release.release("v1")

    def broken(repository: str, reference: str) -> Manifest | None:
        raise RegistryError("the registry answered 500")

    monkeypatch.setattr(world.registry, "manifest", broken)
    (world.tmp / "ctx" / ".env").write_text("SECRET=1\n")
    with pytest.raises(SettingsError, match=r"holds \.env"):
        _fresh_release(world)
    (world.tmp / "ctx" / ".env").unlink()
    with pytest.raises(RegistryError, match="answered 500"):
        _fresh_release(world)


def test_a_new_version_with_dockers_login_asks_aws_only_the_repositorys_settings(
    make_world: Callable[..., World], aws: Any
) -> None:
    world = make_world(now=BEFORE_EXPIRY)
    world.release.release("v1")
    (world.tmp / "ctx" / "app.py").write_text("print('v2')\n")
    world.docker.calls.clear()
    tokens: list[object] = []
    with patch_method(Ecr, "authorization", tokens):
        summary = world.rerun().release("v2")
    assert not summary.already_released
    assert world.connects == [1, 1]  # a session for DescribeRepositories, the one question
    assert tokens == []  # no GetAuthorizationToken: docker's login was good
    assert world.docker.verbs() == ["build", "tag", "push", "tag", "rmi"]  # no docker login either
    assert world.registry.manifests[("widget-server", "v2")].digest == summary.digest


def test_a_stale_stored_login_falls_back_to_a_token_without_a_word(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(now=BEFORE_EXPIRY)
    world.release.release("v1")
    _write_docker_login(world, "AWS:rotated-elsewhere")  # the registry no longer takes it
    (world.tmp / "ctx" / "app.py").write_text("print('v2')\n")
    world.docker.calls.clear()
    with caplog.at_level(logging.WARNING, logger="ecr_release"):
        summary = world.rerun().release("v2")
    assert not summary.already_released
    assert world.connects == [1, 1]  # fell back to GetAuthorizationToken
    # a fresh docker login, then the local image is named as released
    assert world.docker.verbs() == ["build", "login", "tag", "push", "tag", "rmi"]
    assert caplog.records == []  # no warning, no error: the fallback is silent


def test_a_recorded_registry_of_another_account_is_refused_without_aws(
    make_world: Callable[..., World],
) -> None:
    world = make_world(now=BEFORE_EXPIRY)
    world.release.release("v1")
    other = make_world(now=BEFORE_EXPIRY, account_id="000000000000")
    other.release = _same_machine(world, other)
    with pytest.raises(AwsError, match="not account 000000000000"):
        other.release.release("v1")
    assert other.connects == []


def _fresh_release(world: World) -> Summary:
    world.docker.calls.clear()
    return world.rerun().release("v1")


def _write_docker_login(world: World, user_password: str) -> None:
    path = world.tmp / "docker" / "config.json"
    token = base64.b64encode(user_password.encode()).decode()
    path.write_text(json.dumps({"auths": {HOST: {"auth": token}}}))


def _same_machine(world: World, other: World) -> Release:
    """``other``'s settings on ``world``'s machine (its records, docker login and registry)."""
    other.docker, other.registry = world.docker, world.registry
    return other.new_run()


# -- moving tags: promote, --also-tag, and the repository's lifecycle ----------------------


def _repo(aws: Any, mutability: str, *filters: str) -> None:
    extra = {"imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": f}
             for f in filters]} if filters else {}  # fmt: skip
    aws.create_repository(repositoryName="widget-server", imageTagMutability=mutability, **extra)


def test_promote_moves_a_tag_between_versions_on_the_registry_side(
    make_world: Callable[..., World], aws: Any
) -> None:
    _repo(aws, "IMMUTABLE_WITH_EXCLUSION", "latest")
    world = make_world()
    one = world.release.release("v1")
    (world.tmp / "ctx" / "app.py").write_text("v2\n")
    two = world.rerun().release("v2")
    world.docker.calls.clear()
    world.registry.puts.clear()  # the versions' own
    assert world.release.promote("v1", ["latest"]) == one.digest
    assert world.registry.manifests[("widget-server", "latest")].digest == one.digest
    assert world.release.promote("v2", ["latest"]) == two.digest
    assert world.registry.manifests[("widget-server", "latest")].digest == two.digest
    assert world.registry.puts == [("widget-server", "latest"), ("widget-server", "latest")]
    assert world.docker.verbs() == []  # nothing pulled, pushed or tagged locally
    world.release.promote("v2", ["latest"])  # already there: nothing put
    assert len(world.registry.puts) == 2


def test_promote_on_an_immutable_repository_is_refused(
    make_world: Callable[..., World], aws: Any
) -> None:
    _repo(aws, "IMMUTABLE")
    world = make_world()
    world.release.release("v1")
    world.registry.puts.clear()  # v1's own
    with pytest.raises(VersionExistsError, match="is IMMUTABLE: tag latest could never move"):
        world.release.promote("v1", ["latest"])
    assert world.registry.puts == []


def test_promote_of_a_version_never_released_is_refused(
    make_world: Callable[..., World], aws: Any
) -> None:
    _repo(aws, "MUTABLE")
    world = make_world()
    with pytest.raises(SettingsError, match="widget-server:v9 is not released"):
        world.release.promote("v9", ["latest"])
    assert world.registry.puts == []


def test_also_tag_points_the_tags_after_the_verified_push(
    make_world: Callable[..., World], aws: Any
) -> None:
    _repo(aws, "IMMUTABLE_WITH_EXCLUSION", "latest", "stable")
    world = make_world(extra_tags=("latest", "stable"))
    summary = world.release.release("v1")
    assert summary.tags == ["v1", "latest", "stable"]
    assert [name for name, _ in summary.timings][-3:] == ["gates", "smoke-test", "also-tag"]
    for tag in ("latest", "stable"):
        assert world.registry.manifests[("widget-server", tag)].digest == summary.digest


def test_a_dry_run_plans_the_also_tags_of_the_version_it_did_not_release(
    make_world: Callable[..., World], aws: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _repo(aws, "IMMUTABLE_WITH_EXCLUSION", "latest")
    world = make_world(dry_run=True, extra_tags=("latest",))
    with caplog.at_level(logging.INFO, logger="ecr_release"):
        summary = world.release.release("v1")
    assert summary.dry_run and summary.tags == ["v1", "latest"]
    assert "[dry-run] promote: PUT /v2/widget-server/manifests/latest (the manifest of v1, " in (
        caplog.text
    )
    assert world.registry.puts == [] and world.registry.manifests == {}


def test_also_tag_that_may_not_move_is_refused_beside_the_build(
    make_world: Callable[..., World], aws: Any
) -> None:
    _repo(aws, "IMMUTABLE_WITH_EXCLUSION", "latest")
    world = make_world(extra_tags=("prod",))
    with pytest.raises(VersionExistsError, match="tag prod is immutable"):
        world.release.release("v1")
    assert world.docker.verbs() == ["build"]  # stopped there: nothing tagged or pushed
    assert world.registry.manifests == {}


# -- released versions are final, whatever the repository allows (hardening) ---------------


def _two_versions(world: World, first: str, second: str) -> tuple[Summary, Summary]:
    one = world.release.release(first)
    (world.tmp / "ctx" / "app.py").write_text(f"{second}\n")
    return one, world.rerun().release(second)


def test_promote_never_moves_a_released_version_on_a_mutable_repository(
    make_world: Callable[..., World], aws: Any
) -> None:
    _repo(aws, "MUTABLE")
    world = make_world(tag_mutability="MUTABLE")
    _, two = _two_versions(world, "m1", "m2")
    world.registry.puts.clear()  # the versions' own
    with pytest.raises(SettingsError, match="tag m2 of widget-server is the released version m2"
                       ) as caught:  # fmt: skip
        world.release.promote("m1", ["m2"])
    assert caught.value.exit_code == 2
    assert world.registry.manifests[("widget-server", "m2")].digest == two.digest
    assert world.registry.puts == []
    world.release.promote("m1", ["latest"])  # a moving tag still moves
    world.release.promote("m2", ["latest"])
    assert world.registry.manifests[("widget-server", "latest")].digest == two.digest


def test_promote_never_moves_a_released_version_that_an_exclusion_makes_mutable(
    make_world: Callable[..., World], aws: Any
) -> None:
    # m5 was released before the m* filter was added: ECR would let it move now.
    _repo(aws, "IMMUTABLE_WITH_EXCLUSION", "m*", "latest")
    world = make_world(tag_mutability="IMMUTABLE_WITH_EXCLUSION", tag_mutability_exclusions=("m*",))
    one, five = _two_versions(world, "r1", "r5")
    five_manifest = world.registry.manifests.pop(("widget-server", "r5"))
    world.registry.manifests[("widget-server", "m5")] = five_manifest
    assert five_manifest.config_digest is not None
    world.registry.configs[five_manifest.config_digest] = {
        **world.registry.configs[five_manifest.config_digest],
        "org.opencontainers.image.version": "m5",
    }
    with pytest.raises(SettingsError, match="tag m5 of widget-server is the released version m5"):
        world.release.promote("r1", ["m5"])
    assert world.registry.manifests[("widget-server", "m5")].digest == five.digest
    world.release.promote("r1", ["latest"])  # the filter's moving tags still move
    assert world.registry.manifests[("widget-server", "latest")].digest == one.digest


def test_also_tag_never_moves_a_released_version(
    make_world: Callable[..., World], aws: Any
) -> None:
    _repo(aws, "MUTABLE")
    world = make_world(tag_mutability="MUTABLE")
    one, _ = _two_versions(world, "m1", "m2")
    world.docker.calls.clear()
    run = make_world(tag_mutability="MUTABLE", extra_tags=("m1",))
    run.registry.manifests.update(world.registry.manifests)
    run.registry.configs.update(world.registry.configs)
    (run.tmp / "ctx" / "app.py").write_text("m3\n")
    with pytest.raises(SettingsError, match="tag m1 of widget-server is the released version m1"):
        run.release.release("m3")
    assert run.docker.verbs() == []  # the registry alone tells: refused before anything ran
    assert run.registry.manifests[("widget-server", "m1")].digest == one.digest


def test_a_version_an_exclusion_leaves_mutable_is_refused_before_anything_is_pushed(
    make_world: Callable[..., World], aws: Any
) -> None:
    _repo(aws, "IMMUTABLE_WITH_EXCLUSION", "v*")
    world = make_world(tag_mutability="IMMUTABLE_WITH_EXCLUSION", tag_mutability_exclusions=("v*",))
    with pytest.raises(SettingsError, match=r"version v3 would stay mutable .*filters: v\*"):
        world.release.release("v3")
    assert world.docker.verbs() == ["build"]  # stopped there: nothing tagged or pushed
    assert world.registry.manifests == {}
    assert world.release.release("3.0").digest  # a version no filter matches is released


def test_the_repository_rules_are_asked_while_the_image_builds(
    make_world: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world()
    building = threading.Event()
    world.docker.on_build = building.set
    seen: list[tuple[str, bool]] = []
    real = Ecr.describe_repository

    def describe(self: Ecr, name: str) -> Any:
        seen.append((threading.current_thread().name, building.wait(5)))
        return real(self, name)

    monkeypatch.setattr(Ecr, "describe_repository", describe)
    world.release.release("v1")
    # On its own thread, with the build under way (ensure-repo then creates the repository).
    assert seen[0] == ("rules", True)


def _mutable_v(world_of: Callable[..., World], aws: Any) -> World:
    """A repository whose exclusion filter ``v*`` would leave any ``v`` version mutable."""
    _repo(aws, "IMMUTABLE_WITH_EXCLUSION", "v*")
    return world_of(tag_mutability="IMMUTABLE_WITH_EXCLUSION", tag_mutability_exclusions=("v*",))


def test_a_refusal_beside_the_build_stops_it(make_world: Callable[..., World], aws: Any) -> None:
    world = _mutable_v(make_world, aws)
    world.docker.build_hangs = True  # until it is stopped
    with pytest.raises(SettingsError, match="version v3 would stay mutable"):
        world.release.release("v3")
    assert world.docker.build_cancelled
    assert "widget-server:v3" not in world.docker.images
    assert world.docker.verbs() == ["build"] and world.registry.manifests == {}


def test_a_failed_build_and_a_refusal_beside_it_say_the_refusal(
    make_world: Callable[..., World], aws: Any
) -> None:
    """The refusal is why the release cannot happen, whatever the build did."""
    world = _mutable_v(make_world, aws)
    world.docker.fail["build"] = Result(1, "The command '/bin/sh -c false' returned 1\n")
    with pytest.raises(SettingsError, match="version v3 would stay mutable"):
        world.release.release("v3")


def test_a_failed_build_waits_for_the_rules_and_says_its_own_error(
    make_world: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world()
    world.docker.fail["build"] = Result(1, "The command '/bin/sh -c false' returned 1\n")
    answered: list[bool] = []
    real = Ecr.describe_repository

    def describe(self: Ecr, name: str) -> Any:
        time.sleep(0.2)  # answered after the build failed
        answered.append(True)
        return real(self, name)

    monkeypatch.setattr(Ecr, "describe_repository", describe)
    with pytest.raises(DockerError, match="docker build failed"):
        world.release.release("v1")
    assert answered == [True]  # the run ended after the rules' answer, not during it


def test_ctrl_c_during_the_build_does_not_wait_for_the_rules(
    make_world: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world()
    answer = threading.Event()
    real = Ecr.describe_repository

    def describe(self: Ecr, name: str) -> Any:
        answer.wait(10)  # AWS that takes its time
        return real(self, name)

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Ecr, "describe_repository", describe)
    world.docker.on_build = interrupted
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            world.release.release("v1")
        assert time.monotonic() - started < 5
    finally:
        answer.set()
        for thread in threading.enumerate():
            if thread.name == "rules":
                thread.join(10)


def test_a_dry_run_asks_the_rules_before_its_build_plan(
    make_world: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world(dry_run=True)
    order: list[str] = []
    real = Ecr.describe_repository

    def describe(self: Ecr, name: str) -> Any:
        order.append(f"describe on {threading.current_thread().name}")
        return real(self, name)

    monkeypatch.setattr(Ecr, "describe_repository", describe)
    world.docker.on_verb["build"] = lambda: order.append("build")
    world.release.release("v1")
    assert order[:1] == ["describe on MainThread"]  # in turn: the plan lines keep their order


def test_a_version_the_configured_exclusions_leave_mutable_is_refused_on_a_new_repository(
    make_world: Callable[..., World], aws: Any
) -> None:
    world = make_world(tag_mutability="IMMUTABLE_WITH_EXCLUSION", tag_mutability_exclusions=("v*",))
    with pytest.raises(SettingsError, match="version v1 would stay mutable"):
        world.release.release("v1")
    assert repo_names(aws) == []  # not created
    assert world.docker.verbs() == ["build"]  # stopped there: nothing tagged or pushed


def test_also_tag_equal_to_the_version_is_a_no_op_with_a_note(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(extra_tags=("a1",))  # a new IMMUTABLE repository
    with caplog.at_level(logging.INFO, logger="ecr_release"):
        summary = world.release.release("a1")
    assert "--also-tag a1 is the version itself: nothing more to do" in caplog.text
    assert summary.tags == ["a1"] and world.registry.puts == [("widget-server", "a1")]
    assert "also-tag" not in [name for name, _ in summary.timings]


def test_a_rerun_of_an_old_release_never_moves_a_tag_back(
    make_world: Callable[..., World], aws: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _repo(aws, "IMMUTABLE_WITH_EXCLUSION", "latest", "stable")
    world = make_world(extra_tags=("latest",))
    one, two = _two_versions(world, "x1", "x2")
    assert world.registry.manifests[("widget-server", "latest")].digest == two.digest
    (world.tmp / "ctx" / "app.py").unlink()  # the old job's inputs, rerun
    old_job = make_world(extra_tags=("latest", "stable"))
    old_job.registry.manifests.update(world.registry.manifests)
    old_job.registry.configs.update(world.registry.configs)
    with caplog.at_level(logging.INFO, logger="ecr_release"):
        summary = old_job.release.release("x1")
    assert summary.already_released
    assert old_job.registry.manifests[("widget-server", "latest")].digest == two.digest
    assert "tag widget-server:latest points elsewhere now: left alone" in caplog.text
    assert "`inv promote --version x1 --tag latest` moves it" in caplog.text
    # A tag the first run never put is finished, and only what points at x1 is reported.
    assert old_job.registry.manifests[("widget-server", "stable")].digest == one.digest
    assert summary.tags == ["x1", "stable"]


def test_also_tag_on_a_new_repository_follows_the_configured_mutability(
    make_world: Callable[..., World],
) -> None:
    world = make_world(extra_tags=("latest",))  # the default: IMMUTABLE
    with pytest.raises(VersionExistsError, match="is IMMUTABLE"):
        world.release.release("v1")
    assert world.docker.verbs() == ["build"]  # stopped there: nothing tagged or pushed


def test_lifecycle_drift_is_warned_about_and_left_alone(
    make_world: Callable[..., World], aws: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _repo(aws, "IMMUTABLE")
    world = make_world(expire_untagged_days=14)
    # The repository holds a release: it is in use, and its policy is its owner's choice.
    world.registry.manifests[("widget-server", "v0")] = Manifest("sha256:" + "0" * 64, None, "")
    with caplog.at_level(logging.WARNING, logger="ecr_release"):
        world.release.ensure_repo()
    assert "has no lifecycle policy, configured ECR_EXPIRE_UNTAGGED_DAYS=14 (left unchanged)" in (
        caplog.text
    )
    assert Ecr(aws).lifecycle_policy("widget-server") is None


@pytest.mark.parametrize("registry_knows_it", [True, False])
def test_a_lifecycle_policy_that_failed_at_creation_is_put_by_the_next_run(
    make_world: Callable[..., World],
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    registry_knows_it: bool,
) -> None:
    def refused(self: Ecr, name: str, text: str) -> None:
        raise AwsError("AWS denied ecr:PutLifecyclePolicy: not allowed")

    world = make_world(expire_untagged_days=14)
    with monkeypatch.context() as patch:
        patch.setattr(Ecr, "put_lifecycle_policy", refused)
        with pytest.raises(AwsError, match="PutLifecyclePolicy"):
            world.release.release("v1")
    assert repo_names(aws) == ["widget-server"]
    assert Ecr(aws).lifecycle_policy("widget-server") is None
    assert world.docker.verbs() == ["build"]  # stopped at ensure-repo: nothing pushed
    if registry_knows_it:  # ECR lists an empty repository; distribution does not
        world.registry.empty.add("widget-server")

    with caplog.at_level(logging.INFO, logger="ecr_release"):
        world.rerun().release("v1")
    policy = Ecr(aws).lifecycle_policy("widget-server")
    assert policy is not None and json.loads(policy)["rules"][0]["selection"]["countNumber"] == 14
    assert "put the lifecycle policy of widget-server" in caplog.text
    assert "left unchanged" not in caplog.text
    assert ("widget-server", "v1") in world.registry.manifests


def test_a_dry_run_shows_the_lifecycle_policy_it_would_finish(
    make_world: Callable[..., World], aws: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _repo(aws, "IMMUTABLE")
    world = make_world(dry_run=True, expire_untagged_days=14)
    with caplog.at_level(logging.INFO, logger="ecr_release"):
        world.release.release("v1")
    assert "[dry-run] ensure-repo: ecr:PutLifecyclePolicy(widget-server" in caplog.text
    assert Ecr(aws).lifecycle_policy("widget-server") is None


# -- the smoke test, between build and push --------------------------------------------------


def test_the_smoke_test_runs_between_build_and_push(make_world: Callable[..., World]) -> None:
    world = make_world()
    summary = world.release.release("v1")
    steps = [name for name, _ in summary.timings]
    assert steps.index("build") < steps.index("gates") and "smoke-test" in summary.concurrent
    assert summary.gates is not None and summary.gates.smoke is not None
    assert summary.gates.smoke.startswith("health check passed")
    run = next(args for args, _ in world.docker.calls if args[1] == "run")
    assert run[2:5] == ["-d", "--network", "none"] and run[-1] == "widget-server:v1"
    assert world.docker.containers == []  # removed


def test_a_failing_smoke_test_leaves_no_version_and_no_candidate(
    make_world: Callable[..., World], aws: Any
) -> None:
    world = make_world(smoke_timeout=5.0)
    world.docker.healthy = False
    with pytest.raises(SmokeTestError) as err:
        world.release.release("v1")
    assert err.value.exit_code == 8
    assert "health check still failing after 5 s" in err.value.message
    assert err.value.log_tail == ["starting", "Traceback: boom"]
    assert ("widget-server", "v1") not in world.registry.manifests  # no version
    assert world.registry.puts == []
    pushed = [tag for _, tag in world.registry.manifests]
    assert pushed == []  # the candidate, if its push got that far, was removed
    assert world.docker.containers == []


def test_a_failing_smoke_test_stops_the_candidates_push(
    make_world: Callable[..., World], aws: Any
) -> None:
    world = make_world(smoke_timeout=1.0)
    world.docker.healthy = False
    world.docker.push_hangs = True  # a push that would take long: stopped by the smoke test
    with pytest.raises(SmokeTestError):
        world.release.release("v1")
    assert world.docker.push_cancelled
    assert world.registry.manifests == {}


def test_a_failing_push_stops_the_smoke_test(make_world: Callable[..., World], aws: Any) -> None:
    world = make_world(smoke_timeout=60.0)
    world.docker.healthy = False  # it would take the whole minute to fail
    world.docker.push_outcomes = ["denied: requested access to the resource is denied"]
    with pytest.raises(DockerError, match="denied"):
        world.release.release("v1")
    assert sum(world.sleeps) < 60  # the smoke test stopped at once, not after its minute
    assert world.docker.containers == []
    assert ("widget-server", "v1") not in world.registry.manifests


def test_a_dry_run_shows_the_smoke_test_as_a_plan_line(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(dry_run=True)
    with caplog.at_level(logging.INFO, logger="ecr_release"):
        world.release.release("v1")
    plan = plan_lines(r.getMessage() for r in caplog.records)
    assert planned_steps(plan) == RELEASE_PLAN
    assert "docker run -d --network none widget-server:v1" in step_line(plan, "smoke-test")
    assert world.docker.smoke_verbs() == []  # nothing run


# -- review fixes ---------------------------------------------------------------------------


def test_a_registry_that_refuses_to_list_tags_falls_back_to_the_ecr_api(
    make_world: Callable[..., World],
) -> None:
    world = make_world(now=BEFORE_EXPIRY)
    world.release.release("v1")
    world.registry.list_denied = True  # no ecr:ListImages
    (world.tmp / "ctx" / "app.py").write_text("v2\n")
    summary = world.rerun().release("v2")
    assert not summary.already_released
    assert world.connects == [1, 1]  # DescribeRepositories decided instead
    records = json.loads((world.tmp / "cache" / "ecr-release" / "logins.json").read_text())
    assert any(key.endswith(f"|{HOST}") for key in records)  # the good login is kept


def test_a_token_for_another_registry_than_the_one_checked_stops_the_run(
    make_world: Callable[..., World], aws: Any
) -> None:
    world = make_world(now=BEFORE_EXPIRY)
    world.release.release("v1")
    records = world.tmp / "cache" / "ecr-release" / "logins.json"
    data = json.loads(records.read_text())
    other = "210987654321.dkr.ecr.eu-west-1.amazonaws.com"
    for key, value in list(data.items()):
        if key.startswith("registry|"):
            data[key] = value.replace(HOST, other)  # recorded for other credentials
    records.write_text(json.dumps(data))
    _write_docker_login(world, "AWS:whatever")
    world.docker.calls.clear()
    with pytest.raises(AwsError, match=f"checked registry {other}, but .* is for {HOST}"):
        world.rerun().release("v2")
    assert world.docker.verbs() == []
    assert not any(k.startswith("registry|") for k in json.loads(records.read_text()))


def test_an_index_is_judged_by_its_image_manifest(make_world: Callable[..., World]) -> None:
    world = make_world()
    first = world.release.release("v1")
    image = world.registry.manifests[("widget-server", "v1")]
    index = Manifest("sha256:" + "1d" * 32, None, "application/vnd.oci.image.index.v1+json",
                     images=(image.digest,))  # fmt: skip
    world.registry.manifests[("widget-server", "v1")] = index  # as BuildKit pushes it
    world.registry.manifests[("widget-server", image.digest)] = image
    again = _fresh_machine(world).release("v1")
    assert again.already_released and again.digest == index.digest
    assert first.fingerprint == again.fingerprint


def test_also_tag_is_finished_by_a_rerun(make_world: Callable[..., World], aws: Any) -> None:
    _repo(aws, "IMMUTABLE_WITH_EXCLUSION", "latest")
    world = make_world(extra_tags=("latest",))
    world.registry.put_fails = {"latest"}
    with pytest.raises(RegistryError):
        world.release.release("v1")  # released and verified, then the tag failed
    world.registry.put_fails = False
    again = world.rerun().release("v1")
    assert again.already_released and again.tags == ["v1", "latest"]
    assert world.registry.manifests[("widget-server", "latest")].digest == again.digest


def test_no_stage_asks_whether_this_is_a_dry_run() -> None:
    """The dry run is a wiring choice (cli.session.make_release): the stages and the
    repository's view never branch on it; only the summary says which kind of run it was."""
    import inspect

    from ecr_release.flows.published import Published

    assert "dry_run" not in inspect.getsource(Published)
    stages = [
        inspect.getsource(member)
        for name, member in vars(Release).items()
        if inspect.isfunction(member) and name != "_summary"
    ]
    assert stages and not any("dry_run" in source or "dry-run" in source for source in stages)


def test_docker_idle_timeout_bounds_the_build_and_the_push(
    make_world: Callable[..., World],
) -> None:
    world = make_world(docker_idle_timeout=42.0)
    world.release.release("v1")
    assert world.docker.idle_limits["build"] == 42.0
    assert world.docker.idle_limits["push"] == 42.0


def test_a_sandbox_run_keeps_its_logins_and_locks_apart_and_asks_its_own_api(
    make_world: Callable[..., World], tmp_path: Path, aws: Any, make_settings: Callable[..., Any]
) -> None:
    from ecr_release.outside.sandbox import Target

    target = Target("http://127.0.0.1:1", "127.0.0.1:2", "123456789012", tmp_path / "sandbox")
    world = make_world()
    run = make_release(
        make_settings(sandbox=True),
        environ={"XDG_CACHE_HOME": str(tmp_path / "cache")},
        runner=world.docker,
        registry_for=lambda auth: cast(Registry, FakeRegistryClient(world.registry, auth, set())),
        sandbox=target,
    )
    assert run.state.directory == tmp_path / "sandbox" / "local"
    with pytest.raises(AwsError, match=r"cannot reach the ECR API.*127\.0\.0\.1:1"):
        run.ensure_repo()  # the sandbox's endpoint, which nothing answers here


@pytest.mark.parametrize(
    ("runner_given", "dry_run", "through_api"),
    [(False, False, True), (False, True, False), (True, False, False)],
    ids=["a-real-run", "a-dry-run", "a-tests-runner"],
)
def test_a_real_run_on_a_local_socket_runs_the_smoke_container_through_the_api(
    make_world: Callable[..., World],
    aws: Any,
    make_settings: Callable[..., Any],
    runner_given: bool,
    dry_run: bool,
    through_api: bool,
) -> None:
    world = make_world()
    folder = Path(tempfile.mkdtemp(prefix="sock-", dir="/tmp"))  # AF_UNIX's 108 bytes
    try:
        path = str(folder / "docker.sock")
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path)
        sock.close()
        run = make_release(
            make_settings(),
            dry_run=dry_run,
            environ={"DOCKER_HOST": f"unix://{path}", "XDG_CACHE_HOME": str(folder / "cache")},
            runner=world.docker if runner_given else None,
            registry_for=lambda auth: cast(
                Registry, FakeRegistryClient(world.registry, auth, set())
            ),
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    engine = run.docker.containers.engine
    assert (engine.path if engine is not None else None) == (path if through_api else None)
    if engine is not None:  # its hosts files go where this user's cache is
        assert engine.scratch.is_relative_to(folder / "cache")


# -- the candidate: the version appears only when every gate has passed ---------------------


def test_a_rerun_after_an_interrupted_run_reuses_the_candidate(
    make_world: Callable[..., World], aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world()
    world.registry.put_fails = {"v1"}  # stopped after the candidate's push, before the version

    def stopped_there(self: Ecr, name: str, tag: str) -> bool:
        raise AwsError("the run was killed")

    with monkeypatch.context() as patch:
        patch.setattr(world.release.ecr.api.__class__, "delete_tag", stopped_there)
        with pytest.raises(RegistryError):
            world.release.release("v1")
    left = [tag for _, tag in world.registry.manifests if tag.startswith("ecr-release-")]
    assert len(left) == 1 and ("widget-server", "v1") not in world.registry.manifests
    world.registry.put_fails = False
    world.docker.calls.clear()
    summary = world.rerun().release("v1")
    assert summary.gates is not None and summary.gates.reused
    assert summary.gates.candidate == left[0]
    assert "push" not in world.docker.verbs()  # nothing pushed again
    assert world.registry.manifests[("widget-server", "v1")].digest == summary.digest
    assert ("widget-server", left[0]) not in world.registry.manifests  # removed at last


def test_an_interrupted_run_leaves_its_pushed_candidate_for_the_rerun(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    """Ctrl-C (or SIGTERM, turned into it) is no failed gate: the pushed candidate stays,
    so the rerun reuses it instead of pushing again."""
    world = make_world()

    def interrupted(repository: str, digest: str, **options: Any) -> None:
        raise KeyboardInterrupt

    world.release._scan = interrupted
    with pytest.raises(KeyboardInterrupt):
        world.release.release("v1")
    left = [tag for _, tag in world.registry.manifests]
    assert len(left) == 1 and left[0].startswith("ecr-release-candidate-")
    assert world.registry.deleted == []
    assert f"interrupted: the candidate tag {left[0]} stays" in caplog.text
    world.docker.calls.clear()
    summary = world.rerun().release("v1")
    assert summary.gates is not None and summary.gates.reused
    assert "push" not in world.docker.verbs()
    assert [tag for _, tag in world.registry.manifests] == ["v1"]


def test_a_failed_gate_removes_the_candidate(make_world: Callable[..., World], aws: Any) -> None:
    world = make_world()
    world.registry.put_fails = {"v1"}
    with pytest.raises(RegistryError):
        world.release.release("v1")
    assert [tag for _, tag in world.registry.manifests] == []
    assert len(world.registry.deleted) == 1


def test_a_leftover_candidate_is_removed_by_a_rerun_of_the_released_version(
    make_world: Callable[..., World], aws: Any, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world()
    summary = world.release.release("v1")
    assert summary.gates is not None
    candidate = summary.gates.candidate
    world.registry.manifests[("widget-server", candidate)] = world.registry.manifests[
        ("widget-server", "v1")
    ]  # its removal had failed
    with caplog.at_level(logging.INFO, logger="ecr_release"):
        again = world.rerun().release("v1")
    assert again.already_released
    assert ("widget-server", candidate) not in world.registry.manifests
    assert f"removed the candidate tag {candidate}" in caplog.text


def test_a_candidate_that_cannot_be_removed_after_the_version_is_out_is_said_loudly(
    make_world: Callable[..., World], aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Ecr, name: str, tag: str) -> bool:
        raise AwsError("AWS denied ecr:BatchDeleteImage: not allowed")

    world = make_world()
    monkeypatch.setattr(world.release.ecr.api.__class__, "delete_tag", refuse)
    with pytest.raises(RegistryError, match="released and verified, but its candidate tag") as err:
        world.release.release("v1")
    assert ("widget-server", "v1") in world.registry.manifests  # the version is out
    assert err.value.gates is None  # no gate failed: nothing reports it "not released"
    candidate = next(tag for _, tag in world.registry.manifests if tag != "v1")
    assert err.value.message.endswith(
        "run the release again (it removes it), or remove it by hand (aws ecr "
        f"batch-delete-image --repository-name widget-server --image-ids imageTag={candidate})"
    )


def test_a_candidate_that_cannot_be_removed_after_a_failed_gate_is_a_warning_naming_the_ways(
    make_world: Callable[..., World],
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(self: Ecr, name: str, tag: str) -> bool:
        raise AwsError("AWS denied ecr:BatchDeleteImage: not allowed")

    world = make_world()
    world.registry.put_fails = {"v1"}  # a gate that fails after the candidate's push
    monkeypatch.setattr(world.release.ecr.api.__class__, "delete_tag", refuse)
    logged = caplog.at_level(logging.WARNING, logger="ecr_release")
    with logged, pytest.raises(RegistryError, match="HTTP 500"):  # the gate's error
        world.release.release("v1")
    candidate = next(tag for _, tag in world.registry.manifests)
    said = [r.getMessage() for r in caplog.records if "could not be removed" in r.getMessage()]
    assert said == [
        f"warning: the candidate tag {candidate} could not be removed (AWS denied "
        "ecr:BatchDeleteImage: not allowed): a rerun of the same inputs reuses it; else remove "
        "it (aws ecr batch-delete-image --repository-name widget-server --image-ids "
        f"imageTag={candidate}), or let the lifecycle rule of ECR_EXPIRE_UNTAGGED_DAYS expire it"
    ]


# -- the scan gate --------------------------------------------------------------------------

HIGH = {
    "name": "CVE-2026-0001",
    "severity": "HIGH",
    "attributes": [
        {"key": "package_name", "value": "openssl"},
        {"key": "package_version", "value": "3.0.1"},
    ],
}
LOW = {"name": "CVE-2026-0002", "severity": "LOW", "attributes": []}


def test_the_candidates_scan_is_read_by_digest_and_reported(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world()
    world.registry.findings = [HIGH, LOW]
    with caplog.at_level(logging.INFO, logger="ecr_release"):
        summary = world.release.release("v1")
    assert summary.gates is not None and summary.gates.scan is not None
    assert world.registry.scans == [("widget-server", summary.digest)]  # the candidate's
    assert summary.gates.scan.counts == {"HIGH": 1, "LOW": 1}
    assert summary.gates.scan.summary_line() == "COMPLETE, 1 HIGH, 1 LOW"
    shown = [r.getMessage() for r in caplog.records]
    head = f"scan of widget-server@{summary.digest}: COMPLETE, 2 findings: 1 HIGH, 1 LOW"
    assert head in shown
    assert any("CVE-2026-0001" in line and "openssl 3.0.1" in line for line in shown)
    assert ("widget-server", "v1") in world.registry.manifests  # SCAN_FAIL_ON unset: reported


def test_a_finding_at_the_threshold_leaves_no_version_and_no_candidate(
    make_world: Callable[..., World],
) -> None:
    world = make_world(scan_fail_on="HIGH")
    world.registry.findings = [HIGH, LOW]
    with pytest.raises(ScanGateError) as err:
        world.release.release("v1")
    assert err.value.exit_code == 10
    assert "1 finding at HIGH or above (worst: CVE-2026-0001 HIGH" in err.value.message
    gates = err.value.gates  # what the gates found, for the failure's report
    assert gates.candidate.startswith("ecr-release-candidate-") and gates.removed
    assert gates.smoke is not None and gates.scan.counts == {"HIGH": 1, "LOW": 1}
    assert world.registry.puts == []  # the version was never put
    assert world.registry.manifests == {}  # and the candidate tag is gone
    assert world.registry.deleted[0][1].startswith("ecr-release-candidate-")


def _fresh_budgets(world: World) -> list[tuple[int, int, int]]:
    """Each time the run's AWS calls get a budget of their own, as (scans read, tags put,
    tags removed) at that moment."""
    seen: list[tuple[int, int, int]] = []
    fresh = world.release.ecr.new_step

    def new_step() -> None:
        found = world.registry
        seen.append((len(found.scans), len(found.puts), len(found.deleted)))
        fresh()

    world.release.ecr.new_step = new_step  # type: ignore[method-assign]
    return seen


def test_the_version_and_the_candidates_removal_get_aws_time_of_their_own(
    make_world: Callable[..., World],
) -> None:
    # A long scan wait may have spent the gates' AWS time: the removal after the version is
    # out must not be refused, or the candidate tag would stay on the released image.
    world = make_world()
    seen = _fresh_budgets(world)
    world.release.release("v1")
    assert seen[-1] == (1, 0, 0)  # after the scan, before the version's put and the removal
    assert len(world.registry.puts) == 1 and len(world.registry.deleted) == 1


def test_after_a_failed_gate_the_candidates_removal_gets_aws_time_of_its_own(
    make_world: Callable[..., World],
) -> None:
    world = make_world(scan_fail_on="HIGH")
    world.registry.findings = [HIGH]
    seen = _fresh_budgets(world)
    with pytest.raises(ScanGateError):
        world.release.release("v1")
    assert seen[-1] == (1, 0, 0) and len(world.registry.deleted) == 1


OTHER_IMAGE = Manifest("sha256:" + "9" * 64, "sha256:" + "8" * 64, "docker-v2")


def _during_the_gates(world: World, change: Callable[[FakeRegistry, str], None]) -> None:
    """``change(registry, candidate_tag)`` happens while the candidate is scanned: another
    machine's run, say."""

    def scan(repository: str, digest: str, **options: Any) -> None:
        candidate = next(t for _, t in world.registry.manifests if t.startswith("ecr-release-"))
        change(world.registry, candidate)

    world.release._scan = scan


def test_a_version_released_by_another_run_during_the_gates_is_never_overwritten(
    make_world: Callable[..., World],
) -> None:
    world = make_world()

    def released_elsewhere(registry: FakeRegistry, candidate: str) -> None:
        registry.manifests[("widget-server", "v1")] = OTHER_IMAGE

    _during_the_gates(world, released_elsewhere)
    with pytest.raises(VersionExistsError) as err:
        world.release.release("v1")
    assert err.value.exit_code == 6
    assert err.value.message == (
        f"widget-server:v1 was released by another run while the gates ran (as "
        f"{OTHER_IMAGE.digest}); released versions are never overwritten: release this image "
        "under a new --version"
    )
    assert world.registry.manifests == {("widget-server", "v1"): OTHER_IMAGE}  # untouched
    assert world.registry.puts == [] and len(world.registry.deleted) == 1  # candidate gone


def test_a_version_released_meanwhile_as_this_very_image_is_not_put_again(
    make_world: Callable[..., World],
) -> None:
    world = make_world()

    def released_the_same(registry: FakeRegistry, candidate: str) -> None:
        # Another run of the same inputs (the same candidate tag) finished first: it put the
        # version and removed the candidate tag.
        registry.manifests[("widget-server", "v1")] = registry.manifests.pop(
            ("widget-server", candidate)
        )

    _during_the_gates(world, released_the_same)
    summary = world.release.release("v1")
    assert world.registry.puts == []
    assert [tag for _, tag in world.registry.manifests] == ["v1"]
    assert world.registry.manifests[("widget-server", "v1")].digest == summary.digest


def test_a_candidate_removed_during_the_gates_is_not_released(
    make_world: Callable[..., World],
) -> None:
    world = make_world()

    def removed(registry: FakeRegistry, candidate: str) -> None:
        del registry.manifests[("widget-server", candidate)]

    _during_the_gates(world, removed)
    with pytest.raises(RegistryError) as err:
        world.release.release("v1")
    assert err.value.message.startswith("the candidate tag widget-server:ecr-release-candidate-")
    assert err.value.message.endswith(
        "was removed while the gates ran (by hand, or by another run of the same inputs): "
        "release again"
    )
    assert world.registry.puts == [] and world.registry.manifests == {}


def test_a_candidate_that_moved_during_the_gates_is_not_released(
    make_world: Callable[..., World],
) -> None:
    world = make_world()

    def moved(registry: FakeRegistry, candidate: str) -> None:
        registry.manifests[("widget-server", candidate)] = OTHER_IMAGE

    _during_the_gates(world, moved)
    with pytest.raises(RegistryError, match=r"moved to sha256:9999.* while the gates ran"):
        world.release.release("v1")
    assert world.registry.puts == [] and ("widget-server", "v1") not in world.registry.manifests


def test_a_version_that_does_not_read_back_as_put_fails_its_verification(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    put = world.registry.put_manifest

    def put_elsewhere(repository: str, tag: str, raw: RawManifest) -> str:
        digest = put(repository, tag, raw)
        world.registry.manifests[(repository, tag)] = OTHER_IMAGE  # what a read answers after
        return digest

    world.registry.put_manifest = put_elsewhere  # type: ignore[method-assign]
    with pytest.raises(RegistryError, match="verification failed: tag v1 resolves to sha256:9"):
        world.release.release("v1")


def test_an_ignored_finding_does_not_hold_the_version_back(
    make_world: Callable[..., World],
) -> None:
    world = make_world(scan_fail_on="HIGH", scan_ignore=("cve-2026-0001",))
    world.registry.findings = [HIGH, LOW]
    summary = world.release.release("v1")
    assert summary.gates is not None and summary.gates.scan.ignored == ("CVE-2026-0001",)
    assert ("widget-server", "v1") in world.registry.manifests


def test_a_rerun_after_a_failed_scan_gate_scans_the_same_image_again(
    make_world: Callable[..., World],
) -> None:
    """The findings were fixed upstream (here: the scan answers clean): the same inputs are
    not 'released', so the rerun ships them."""
    world = make_world(scan_fail_on="HIGH")
    world.registry.findings = [HIGH]
    with pytest.raises(ScanGateError):
        world.release.release("v1")
    world.registry.findings = []
    summary = world.rerun().release("v1")
    assert not summary.already_released
    assert ("widget-server", "v1") in world.registry.manifests


# -- the gates at the same time: the smoke test beside the candidate's push, check and scan -----


def _until(done: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Wait (really, briefly) until ``done()``; whether it came."""
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.002)
    return done()


def test_the_candidates_verification_and_scan_run_while_the_smoke_test_runs(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    seen: dict[str, bool] = {}

    def health_check() -> None:  # the smoke test's first probe waits for the scan
        seen["scanned meanwhile"] = _until(lambda: bool(world.registry.scans))
        seen["version put meanwhile"] = ("widget-server", "v1") in world.registry.manifests

    world.docker.on_verb["exec"] = health_check
    summary = world.release.release("v1")
    assert seen == {"scanned meanwhile": True, "version put meanwhile": False}
    assert ("widget-server", "v1") in world.registry.manifests
    assert summary.gates is not None and summary.gates.scan is not None
    assert world.docker.containers == []  # the smoke test's container, removed before the end


def test_a_candidate_tag_holding_other_inputs_is_refused_before_the_gates(
    make_world: Callable[..., World],
) -> None:
    """The candidate's name is this build's fingerprint: another image under it means
    something else wrote it. Refused (exit 5) before the smoke test or a push, and left."""
    world = make_world()
    world.release.release("v0")
    (world.tmp / "ctx" / "app.py").write_text("v1\n")
    run = world.rerun()
    tag = candidate_module.candidate_tag(run._inputs("v1").fingerprint)
    name = run.settings.repository
    world.registry.manifests[(name, tag)] = world.registry.manifests[(name, "v0")]
    world.docker.calls.clear()
    with pytest.raises(RegistryError, match="holds an image of other inputs") as caught:
        run.release("v1")
    assert caught.value.exit_code == 5
    assert world.docker.smoke_verbs() == [] and "push" not in world.docker.verbs()
    assert (name, tag) in world.registry.manifests and (name, tag) not in world.registry.deleted


def test_a_failing_scan_gate_stops_the_smoke_test(make_world: Callable[..., World]) -> None:
    world = make_world(scan_fail_on="HIGH", smoke_timeout=60.0)
    world.registry.findings = [HIGH]
    world.docker.healthy = False  # it would take the whole minute to fail
    world.docker.on_verb["exec"] = lambda: time.sleep(0.002)
    with pytest.raises(ScanGateError):  # the scan's error, not the smoke test's
        world.release.release("v1")
    health_checks = [args for args, _ in world.docker.calls if args[1] == "exec"]
    assert len(health_checks) < 60  # stopped: a minute of checks would be about 240
    assert world.docker.containers == []
    assert world.registry.puts == [] and world.registry.manifests == {}


def _waiting_scan(started: threading.Event, ended: list[str]) -> Callable[..., None]:
    """A scan that is still pending (its wait ends only when the gate is stopped)."""

    def scan(repository: str, digest: str, *, sleep: Callable[[float], None]) -> None:
        started.set()
        try:
            for _ in range(5000):
                sleep(1.0)
                time.sleep(0.002)
        except BaseException as exc:
            ended.append(type(exc).__name__)
            raise
        ended.append("waited to the end")

    return scan


def test_a_failing_smoke_test_stops_the_scans_wait(make_world: Callable[..., World]) -> None:
    world = make_world(smoke_timeout=1.0)
    started, ended = threading.Event(), list[str]()
    world.release._scan = _waiting_scan(started, ended)
    world.docker.healthy = False
    world.docker.on_verb["exec"] = lambda: assert_set(started)
    with pytest.raises(SmokeTestError):
        world.release.release("v1")
    assert ended == ["GateStopped"]  # stopped, not waited out
    assert world.registry.puts == [] and world.registry.manifests == {}  # candidate removed


def test_ctrl_c_during_the_smoke_test_stops_the_scans_wait_and_leaves_the_candidate(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    started, ended = threading.Event(), list[str]()
    world.release._scan = _waiting_scan(started, ended)

    def interrupted() -> None:
        assert_set(started)
        raise KeyboardInterrupt

    world.docker.on_verb["exec"] = interrupted
    with pytest.raises(KeyboardInterrupt):
        world.release.release("v1")
    assert ended == ["GateStopped"]
    assert not any(thread.name == "candidate" for thread in threading.enumerate())
    left = [tag for _, tag in world.registry.manifests]
    assert len(left) == 1 and left[0].startswith("ecr-release-candidate-")  # for the rerun
    assert world.docker.containers == []


@pytest.fixture
def ctrl_c() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt, as in a terminal: a shell's background job (and so
    a test run started as one) starts with SIGINT ignored, which Python then leaves alone."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_between_the_versions_put_and_the_candidates_removal_waits_for_both(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture, ctrl_c: None
) -> None:
    """Stopped between the two, the released image would keep its candidate tag, which the
    lifecycle rule for candidates expires with the image: Ctrl-C waits until both are done."""
    world = make_world()
    put = world.registry.put_manifest

    def put_then_ctrl_c(repository: str, tag: str, raw: Any) -> str:
        digest = put(repository, tag, raw)
        os.kill(os.getpid(), signal.SIGINT)  # right after the version's PUT
        return digest

    world.registry.put_manifest = put_then_ctrl_c  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="ecr_release"), pytest.raises(KeyboardInterrupt):
        world.release.release("v1")
    assert [tag for _, tag in world.registry.manifests] == ["v1"]  # the candidate tag is gone
    assert world.registry.deleted[0][1].startswith("ecr-release-candidate-")
    said = "interrupted once {host}/widget-server:v1 was released and verified"
    host = world.release.ecr.host()
    assert any(said.format(host=host) in r.getMessage() for r in caplog.records)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back


def test_ctrl_c_while_the_scan_is_awaited_stops_it_before_the_release_ends(
    make_world: Callable[..., World], ctrl_c: None
) -> None:
    """The smoke test passed; Ctrl-C comes while the run waits for the candidate's gates:
    they are stopped and over before the interrupt goes on (a second ``Thread.join`` after
    an interrupted one returns at once on Python 3.11 and 3.12)."""
    world = make_world()
    started, ended = threading.Event(), list[str]()
    world.release._scan = _waiting_scan(started, ended)
    main = threading.main_thread().ident
    assert main == threading.get_ident()

    def interrupt_the_wait() -> None:
        assert_set(started)
        time.sleep(0.05)
        signal.pthread_kill(main, signal.SIGINT)

    helper = threading.Thread(target=interrupt_the_wait)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            world.release.release("v1")
        alive = [thread.name for thread in threading.enumerate() if thread.name == "candidate"]
    finally:
        helper.join()
    assert alive == [] and ended == ["GateStopped"]
    left = [tag for _, tag in world.registry.manifests]
    assert len(left) == 1 and left[0].startswith("ecr-release-candidate-")  # kept for reuse


def test_a_stopped_gate_ends_a_real_sleep_at_once() -> None:
    stop = threading.Event()
    wait = candidate_module._stoppable(time.sleep, stop)
    threading.Timer(0.05, stop.set).start()
    began = time.monotonic()
    with pytest.raises(candidate_module.GateStopped):
        wait(10.0)  # a scan's longest poll
    assert time.monotonic() - began < 5


def test_a_candidate_this_run_never_pushed_is_left_alone(make_world: Callable[..., World]) -> None:
    """``docker tag`` of the candidate fails: nothing was pushed, so the registry's candidate
    tag (pushed meanwhile by another run of the same inputs) is not removed."""
    world = make_world()
    world.release.release("v0")
    name = world.release.settings.repository
    seen: list[str] = []

    def another_run_pushes_it_meanwhile() -> None:
        tag = world.docker.calls[-1][0][3].rsplit(":", 1)[1]
        world.registry.manifests[(name, tag)] = world.registry.manifests[(name, "v0")]
        seen.append(tag)

    world.docker.on_verb["tag"] = another_run_pushes_it_meanwhile
    world.docker.fail["tag"] = Result(1, "Error response from daemon: no space left on device")
    with pytest.raises(DockerError):
        world.rerun().release("v1")
    assert seen and seen[0].startswith("ecr-release-candidate-")
    assert (name, seen[0]) in world.registry.manifests
    assert (name, seen[0]) not in world.registry.deleted


def test_when_both_gates_fail_the_smoke_tests_error_is_raised_and_the_other_said(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(smoke_timeout=0.1)  # its first failed check is its last: no wait
    failed = threading.Event()

    def refused(repository: str, digest: str, **options: Any) -> None:
        try:
            raise ScanGateError("the image's scan found 1 finding at HIGH or above")
        finally:
            failed.set()

    world.release._scan = refused
    world.docker.healthy = False
    world.docker.on_verb["exec"] = lambda: assert_set(failed)  # the scan gate fails first
    with caplog.at_level(logging.WARNING, logger="ecr_release"), pytest.raises(SmokeTestError):
        world.release.release("v1")
    said = [r.getMessage() for r in caplog.records]
    warning = "warning: the candidate's gates failed as well: the image's scan found 1 finding"
    assert any(line.startswith(warning) for line in said), said
    assert world.registry.puts == [] and world.registry.manifests == {}


def assert_set(event: threading.Event) -> None:
    assert event.wait(10), "the other gate never started"


# -- uncommitted changes --------------------------------------------------------------------


def dirty(tmp_path: Path) -> Revision:
    """The world's checkout (its top is the temp folder; the context is ``ctx``) with an
    edited file in the context and another outside it."""
    (tmp_path / "ctx").mkdir(exist_ok=True)
    (tmp_path / "ctx" / "app.py").write_text("print('edited')\n")
    return Revision(
        "0123abc",
        None,
        tmp_path,
        (Change("ctx/app.py", "modified"), Change("README.md", "modified")),
    )


def test_a_dirty_release_at_a_desk_warns_and_labels_the_image(
    make_world: Callable[..., World], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(revision=dirty(tmp_path))
    summary = world.release.release("v1")
    assert "warning: releasing uncommitted changes: ctx/app.py; the image's revision is " in (
        caplog.text
    )
    build = next(args for args, _ in world.docker.calls if args[1] == "build")
    assert "VCS_REF=0123abc-dirty" in build
    assert any(arg.startswith(f"{UNCOMMITTED_LABEL}=sha256:") for arg in build)
    assert summary.provenance is not None and summary.provenance.dirty == ("ctx/app.py",)
    assert not summary.allow_dirty


def test_a_dirty_tree_is_refused_where_a_clean_one_is_required_before_anything_runs(
    make_world: Callable[..., World], tmp_path: Path
) -> None:
    world = make_world(revision=dirty(tmp_path), require_clean=True)
    with pytest.raises(SettingsError) as err:
        world.release.release("v1")
    assert err.value.exit_code == 2
    assert "uncommitted changes that reach the image (ctx/app.py)" in err.value.message
    assert "--allow-dirty" in err.value.message
    assert world.docker.verbs() == []  # nothing built, nothing pushed
    assert world.registry.manifests == {}


def test_allow_dirty_lets_it_through_and_says_so(
    make_world: Callable[..., World], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(revision=dirty(tmp_path), require_clean=True, allow_dirty=True)
    summary = world.release.release("v1")
    assert summary.allow_dirty
    assert "warning: releasing uncommitted changes (--allow-dirty): ctx/app.py" in caplog.text


def test_a_dirty_rerun_of_the_same_content_is_already_released(
    make_world: Callable[..., World], tmp_path: Path
) -> None:
    world = make_world(revision=dirty(tmp_path), require_clean=True, allow_dirty=True)
    world.release.release("v1")
    strict = make_world(revision=dirty(tmp_path), require_clean=True)
    strict.registry.manifests = world.registry.manifests
    strict.registry.configs = world.registry.configs
    assert strict.release.release("v1").already_released  # nothing refused: nothing ships


def test_other_content_under_a_released_version_names_the_uncommitted_paths(
    make_world: Callable[..., World], tmp_path: Path
) -> None:
    world = make_world()
    world.release.release("v1")
    world.registry.manifests, configs = dict(world.registry.manifests), world.registry.configs
    other = make_world(revision=dirty(tmp_path))
    other.registry.manifests, other.registry.configs = world.registry.manifests, configs
    with pytest.raises(VersionExistsError) as err:
        other.release.release("v1")
    assert err.value.exit_code == 6
    assert err.value.message.endswith("(this tree has uncommitted changes: ctx/app.py)")
