"""A throwaway copy of the shipped project, released with the real `inv` against a backend.

Each test gets its own git checkout of `tasks.py`, `widget_server/`, `Dockerfile` and
`.dockerignore` in a temp dir, a `.env` written there (holding a unique fake
secret), and its own ECR repository, Docker config and cache directory. The
CLI runs as a subprocess: the suite's production path, with only `.env` pointing it at
the backend (``backends.py``): the root stack (``AWS_ENDPOINT_URL``) or the local sandbox
(``SANDBOX=true``; then the cache directory is the session's, where the sandbox lives).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tarfile
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backends import INV, Backend

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

    from .stack import Stack

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("tasks.py", "widget_server", "Dockerfile", ".dockerignore")
__all__ = ["INV", "ROOT", "Project"]


@dataclass
class Project:
    root: Path
    env: dict[str, str]
    repository: str
    backend: Backend
    marker: str

    @classmethod
    def create(
        cls, tmp: Path, *, repository: str, backend: Backend, docker_config: Path, marker: str
    ) -> Project:
        root = tmp / "project"
        root.mkdir()
        for name in SHIPPED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, root / name)
        git = [
            "git",
            "-C",
            str(root),
            "-c",
            "user.name=e2e",
            "-c",
            "user.email=e2e@example.invalid",
        ]
        subprocess.run([*git, "init", "-q"], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", "shipped"], check=True)
        home = tmp / "home"
        home.mkdir()
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(home),
            "DOCKER_CONFIG": str(docker_config),
            "XDG_CACHE_HOME": str(backend.shared_cache or tmp / "cache"),
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        if os.environ.get("DOCKER_HOST"):
            env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
        project = cls(root=root, env=env, repository=repository, backend=backend, marker=marker)
        project.write_env(**backend.dotenv(repository, marker))
        return project

    @property
    def registry_host(self) -> str:
        return self.backend.registry_host

    @property
    def password(self) -> str:
        return self.backend.password

    def second_checkout(self, tmp: Path) -> Project:
        """The same commit cloned elsewhere, as a fresh CI runner sees it: its own HOME,
        Docker config and cache, the same .env (CI would pass it as variables)."""
        root = tmp / "project"
        root.parent.mkdir(parents=True)
        subprocess.run(["git", "clone", "-q", str(self.root), str(root)], check=True)
        shutil.copy2(self.root / ".env", root / ".env")
        for name in ("home", "docker-config", "cache"):
            (tmp / name).mkdir()
        env = {
            **self.env,
            "HOME": str(tmp / "home"),
            "DOCKER_CONFIG": str(tmp / "docker-config"),
            # The sandbox stands for AWS: a fresh runner releases to the same one.
            "XDG_CACHE_HOME": str(self.backend.shared_cache or tmp / "cache"),
        }
        return dataclasses.replace(self, root=root, env=env)

    def remove_images(self) -> None:
        """Remove every image of this project's repository from the engine (not the base)."""
        remove_images(self.repository)

    # -- driving the CLI -------------------------------------------------------------

    def write_env(self, **values: str) -> None:
        path = self.root / ".env"
        current: dict[str, str] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                key, _, value = line.partition("=")
                current[key] = value
        current.update(values)
        path.write_text("".join(f"{k}={v}\n" for k, v in current.items()))

    def inv(
        self,
        *args: str,
        timeout: float = 900,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``inv ARGS`` in the project (or a folder of it), with ``env`` over its environment."""
        done = subprocess.run(
            [str(INV), *args],
            cwd=cwd or self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.assert_no_secret(done)
        return done

    def steps(self, *tasks: str, version: str = "v1") -> None:
        """Run each task alone, in order (with ``--version`` where it takes one); each exits 0."""
        for task in tasks:
            argv = [task, "--version", version] if task in ("build", "tag", "push") else [task]
            done = self.inv(*argv)
            assert done.returncode == 0, f"{argv}: {done.stderr}"

    def popen(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(INV), *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def assert_no_secret(self, done: subprocess.CompletedProcess[str]) -> None:
        """Neither the fake AWS secret nor the registry password is ever printed."""
        secrets = [secret for secret in (self.marker, self.password) if secret]
        for stream in (done.stdout, done.stderr):
            for secret in secrets:
                assert secret not in stream

    def change_code(self, text: str) -> None:
        """A code-only change, committed: the next build differs in its last layer only."""
        init = self.root / "widget_server" / "__init__.py"
        init.write_text(init.read_text() + f"\n# {text}\n")
        self.git("commit", "-qam", text)  # tracked files only: .env stays out

    def commit(self, message: str) -> None:
        """Commit everything in the checkout, new files too (.env among them)."""
        self.git("add", "-A")
        self.git("commit", "-qm", message)

    def git(self, *args: str) -> None:
        who = ["-c", "user.name=e2e", "-c", "user.email=e2e@example.invalid"]
        subprocess.run(["git", "-C", str(self.root), *who, *args], check=True)

    def head(self) -> str:
        return subprocess.run(
            ["git", "-C", str(self.root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    # -- what landed -------------------------------------------------------------------

    def ecr(self) -> ECRClient:
        return self.backend.ecr()

    def remote(self, version: str) -> str:
        return f"{self.registry_host}/{self.repository}:{version}"


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The failure's last stderr line, checked to be our single `error:` line."""
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == errors[0]
    return errors[0]


def fails_then_heals(
    project: Project,
    stack: Stack,
    *says: str,
    code: int | None,
    heal: Callable[[], object],
    command: str = "release",
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """A fault test's course, once the fault is in place: ``inv COMMAND --version v1`` (with
    ``env`` on top) fails with one `error:` line containing each of ``says`` and exit status
    ``code`` (None: any non-zero); then ``heal()``; then the same command exits 0 and the
    registry holds exactly ``v1``. Returns the failed run and the rerun."""
    argv = (command, "--version", "v1")
    done = project.inv(*argv, env=env)
    line = one_line_error(done)
    for text in says:
        assert text in line
    if code is not None:
        assert done.returncode == code
    heal()
    again = project.inv(*argv)
    assert again.returncode == 0, again.stderr
    assert stack.registry_tags(project.repository) == ["v1"]
    return done, again


def remove_images(repository: str) -> None:
    """Remove every image named after ``repository`` from the engine: the local image and
    the registry's references to it."""
    listed = docker("images", "--format", "{{.Repository}}:{{.Tag}}").split()
    # REPOSITORY:TAG or HOST[:PORT]/REPOSITORY:TAG (the sandbox's host has a port).
    names = {ref: ref.rsplit(":", 1)[0] for ref in listed}
    mine = [
        ref for ref, name in names.items() if name == repository or name.endswith(f"/{repository}")
    ]
    if mine:
        docker("rmi", "-f", *mine)


def docker(*args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, env=env, timeout=600
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return done.stdout.strip()


def digest_from_output(stdout: str) -> str:
    for line in stdout.splitlines():
        if line.strip().startswith("digest:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no digest in: {stdout}")


def image_files_containing(
    image: str, needles: list[bytes], names: list[str], work: Path
) -> list[str]:
    """Every file of every layer of ``image`` whose name or content matches."""
    archive = work / "image.tar"
    docker("save", "-o", str(archive), image)
    found: list[str] = []
    with tarfile.open(archive) as outer:
        for member in outer.getmembers():
            if not member.name.endswith(".tar") and "layer" not in member.name:
                # the config JSON and manifest carry labels and history, searched too
                meta = outer.extractfile(member) if member.isfile() else None
                data = meta.read() if meta else b""
                found += [f"{member.name}: {n!r}" for n in needles if n in data]
                continue
            if not member.isfile():
                continue
            layer = outer.extractfile(member)
            assert layer is not None
            with tarfile.open(fileobj=layer) as inner:
                for entry in inner.getmembers():
                    base = entry.name.rsplit("/", 1)[-1]
                    if base in names:
                        found.append(f"{member.name}:{entry.name}")
                    if entry.isfile():
                        content = inner.extractfile(entry)
                        data = content.read() if content else b""
                        found += [
                            f"{member.name}:{entry.name}: {n!r}" for n in needles if n in data
                        ]
    return found


def http_get(url: str) -> tuple[int, dict[str, Any]]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, json.loads(response.read())
