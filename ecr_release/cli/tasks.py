"""The suite's tasks, as an invoke collection another project can import.

A project's ``tasks.py`` is two lines (this repository's own is the same)::

    from ecr_release.cli.tasks import namespace
    ns = namespace(__file__)

``namespace`` configures the collection with the project's folder: settings paths
(``.env``, ``DOCKERFILE``, ``BUILD_CONTEXT``) and ``pyproject.toml`` are read from it,
wherever ``inv`` runs from (invoke finds ``tasks.py`` upward, as make finds its
Makefile). Each task is a docstring, its flags' help and one call into the session.
"""

from __future__ import annotations

from pathlib import Path

from invoke.collection import Collection
from invoke.tasks import task

from .session import (
    Flags,
    flag_help,
    promote_all,
    run_doctor,
    run_sandbox,
    session,
    show_config,
    show_scan,
)

# Every task takes the shared flags (repository, region, profile, sandbox: the settings
# declared with a shared flag in ecr_release/model/settings.py) and env_file.


@task(help=flag_help("version", "service"))
def build(
    c,
    version=None,
    repository=None,
    region=None,
    profile=None,
    sandbox=False,
    service=None,
    env_file=None,
):
    """Build IMAGE_NAME:VERSION from the Dockerfile, with OCI labels."""
    flags = Flags.of(locals())
    with session(c, "build", flags, service=service) as run:
        print(f"built {run.steps.build(version)}")


@task(help=flag_help("service"))
def ensure_repo(
    c, repository=None, region=None, profile=None, sandbox=False, service=None, env_file=None
):
    """Create the ECR repository if it is missing; print its URI."""
    flags = Flags.of(locals())
    with session(c, "ensure-repo", flags, service=service) as run:
        print(run.steps.ensure_repo().uri)


@task(help=flag_help("force", "service"))
def login(
    c,
    force=False,
    repository=None,
    region=None,
    profile=None,
    sandbox=False,
    service=None,
    env_file=None,
):
    """Log docker in to the ECR registry with a fresh token (password on stdin)."""
    flags = Flags.of(locals())
    with session(c, "login", flags, service=service) as run:
        print(f"logged in to {run.steps.login(force=force)}")


@task(help=flag_help("version", "service"))
def tag(
    c,
    version=None,
    repository=None,
    region=None,
    profile=None,
    sandbox=False,
    service=None,
    env_file=None,
):
    """Tag IMAGE_NAME:VERSION as REGISTRY/ECR_REPOSITORY:VERSION."""
    flags = Flags.of(locals())
    with session(c, "tag", flags, service=service) as run:
        print(run.steps.tag(version))


@task(help=flag_help("version", "json", "service"))
def push(
    c,
    version=None,
    json=False,
    repository=None,
    region=None,
    profile=None,
    sandbox=False,
    service=None,
    env_file=None,
):
    """Push REGISTRY/ECR_REPOSITORY:VERSION, verify it and print its digest."""
    flags = Flags.of(locals())
    with session(c, "push", flags, json=json, service=service) as run:
        run.report(run.steps.push(version))


@task(
    help=flag_help(
        "version",
        "dry_run",
        "json",
        "also_tag",
        "no_smoke",
        "require_clean",
        "allow_dirty",
        "service",
        "jobs",
        "fail_fast",
    )
)
def release(
    c,
    version=None,
    dry_run=False,
    json=False,
    also_tag=None,
    no_smoke=False,
    require_clean=False,
    allow_dirty=False,
    repository=None,
    region=None,
    profile=None,
    sandbox=False,
    service=None,
    jobs=None,
    fail_fast=False,
    env_file=None,
):
    """Build VERSION, pass its gates (smoke test, candidate pushed and verified, scan), then
    put and verify its tag (every declared service, in parallel)."""
    flags = Flags.of(locals())
    from . import fleet  # several services: imported when a release runs

    many = {"jobs": jobs, "fail_fast": fail_fast, "json": json, "dry_run": dry_run}
    if fleet.release_many(c, flags, service=service, **many):
        return
    with session(c, "release", flags, dry_run=dry_run, json=json, service=service) as run:
        run.report(run.steps.release(version))


@task(help=flag_help("version", "json", "service", "jobs"))
def plan(
    c,
    version=None,
    json=False,
    repository=None,
    region=None,
    profile=None,
    sandbox=False,
    service=None,
    jobs=None,
    env_file=None,
):
    """List the services VERSION still needs releasing (--json: a GitHub Actions matrix)."""
    flags = Flags.of(locals())
    from . import fleet

    fleet.plan(c, flags, service=service, jobs=jobs, json=json)


@task(help=flag_help("version", "tag", "service"))
def promote(
    c,
    version=None,
    tag=None,
    repository=None,
    region=None,
    profile=None,
    sandbox=False,
    service=None,
    env_file=None,
):
    """Point moving tags (latest, prod) at a released VERSION, on the registry side (every
    declared service's, once each has VERSION)."""
    flags = Flags.of(locals())
    promote_all(c, flags, version, service=service)


@task(help=flag_help("json", "service"))
def config(
    c,
    json=False,
    repository=None,
    region=None,
    profile=None,
    sandbox=False,
    service=None,
    env_file=None,
):
    """Show every setting, its value and where it comes from (secrets masked)."""
    flags = Flags.of(locals())
    show_config(c, flags, json=json, service=service)


@task(help=flag_help("service"))
def doctor(
    c, repository=None, region=None, profile=None, sandbox=False, service=None, env_file=None
):
    """Check Docker, the settings, AWS and the registry, one line each; change nothing."""
    flags = Flags.of(locals())
    run_doctor(c, flags, service=service)


@task(help={"action": "up, down or status", "env_file": "settings file to read"})
def sandbox(c, action, env_file=None):
    """The local ECR sandbox (no AWS account): inv sandbox up|down|status."""
    run_sandbox(c, action, Flags(env_file=env_file))


@task(help=flag_help("version", "json", "service"))
def scan(
    c,
    version=None,
    json=False,
    repository=None,
    region=None,
    profile=None,
    sandbox=False,
    service=None,
    env_file=None,
):
    """Show the image scan findings of a released VERSION (exit 10 if SCAN_FAIL_ON refuses)."""
    flags = Flags.of(locals())
    with session(c, "scan", flags, json=json, service=service) as run:
        show_scan(run, json=json)


TASKS = (
    build,
    ensure_repo,
    login,
    tag,
    push,
    release,
    plan,
    promote,
    config,
    doctor,
    sandbox,
    scan,
)


def namespace(tasks_file: str | Path | None = None) -> Collection:
    """The tasks as a collection, rooted at the folder of ``tasks_file`` (a project's
    ``tasks.py``: pass ``__file__``); without one, at the folder ``inv`` runs in."""
    ns = Collection(*TASKS)
    if tasks_file is not None:
        ns.configure({"ecr_release": {"root": str(Path(tasks_file).resolve().parent)}})
    return ns
