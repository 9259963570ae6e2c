"""Release the widget server to AWS ECR: `inv release --version v1`. See README.md."""

from pathlib import Path

from invoke import Collection, task

from ecr_release.cli.session import (
    Flags,
    flag_help,
    run_doctor,
    run_sandbox,
    session,
    show_config,
    show_scan,
)

# Every task takes the shared flags (repository, region, profile, sandbox: the settings
# declared with a shared flag in ecr_release/model/settings.py) and env_file.


@task(help=flag_help("version"))
def build(
    c, version=None, repository=None, region=None, profile=None, sandbox=False, env_file=None
):
    """Build IMAGE_NAME:VERSION from the Dockerfile, with OCI labels."""
    flags = Flags.of(locals())
    with session(c, "build", flags) as run:
        print(f"built {run.steps.build(version)}")


@task(help=flag_help())
def ensure_repo(c, repository=None, region=None, profile=None, sandbox=False, env_file=None):
    """Create the ECR repository if it is missing; print its URI."""
    flags = Flags.of(locals())
    with session(c, "ensure-repo", flags) as run:
        print(run.steps.ensure_repo().uri)


@task(help=flag_help("force"))
def login(c, force=False, repository=None, region=None, profile=None, sandbox=False, env_file=None):
    """Log docker in to the ECR registry with a fresh token (password on stdin)."""
    flags = Flags.of(locals())
    with session(c, "login", flags) as run:
        print(f"logged in to {run.steps.login(force=force)}")


@task(help=flag_help("version"))
def tag(c, version=None, repository=None, region=None, profile=None, sandbox=False, env_file=None):
    """Tag IMAGE_NAME:VERSION as REGISTRY/ECR_REPOSITORY:VERSION."""
    flags = Flags.of(locals())
    with session(c, "tag", flags) as run:
        print(run.steps.tag(version))


@task(help=flag_help("version", "json"))
def push(
    c,
    version=None,
    json=False,
    repository=None,
    region=None,
    profile=None,
    sandbox=False,
    env_file=None,
):
    """Push REGISTRY/ECR_REPOSITORY:VERSION, verify it and print its digest."""
    flags = Flags.of(locals())
    with session(c, "push", flags, json=json) as run:
        run.report(run.steps.push(version))


@task(
    help=flag_help(
        "version", "dry_run", "json", "also_tag", "no_smoke", "require_clean", "allow_dirty"
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
    env_file=None,
):
    """Build, smoke-test, ensure-repo, login, tag and push VERSION, then verify it."""
    flags = Flags.of(locals())
    with session(c, "release", flags, dry_run=dry_run, json=json) as run:
        run.report(run.steps.release(version))


@task(help=flag_help("version", "tag"))
def promote(
    c,
    version=None,
    tag=None,
    repository=None,
    region=None,
    profile=None,
    sandbox=False,
    env_file=None,
):
    """Point moving tags (latest, prod) at a released VERSION, on the registry side."""
    flags = Flags.of(locals())
    with session(c, "promote", flags) as run:
        digest = run.steps.promote(version, run.steps.settings.tags)
        for name in run.steps.settings.tags:
            print(f"{name} -> {version} ({digest})")


@task(help=flag_help("json"))
def config(c, json=False, repository=None, region=None, profile=None, sandbox=False, env_file=None):
    """Show every setting, its value and where it comes from (secrets masked)."""
    flags = Flags.of(locals())
    show_config(c, flags, json=json)


@task(help=flag_help())
def doctor(c, repository=None, region=None, profile=None, sandbox=False, env_file=None):
    """Check Docker, the settings, AWS and the registry, one line each; change nothing."""
    flags = Flags.of(locals())
    run_doctor(c, flags)


@task(help={"action": "up, down or status", "env_file": "settings file to read"})
def sandbox(c, action, env_file=None):
    """The local ECR sandbox (no AWS account): inv sandbox up|down|status."""
    run_sandbox(c, action, Flags(env_file=env_file))


@task(help=flag_help("version", "json"))
def scan(
    c,
    version=None,
    json=False,
    repository=None,
    region=None,
    profile=None,
    sandbox=False,
    env_file=None,
):
    """Show the image scan findings of a released VERSION (exit 10 if SCAN_FAIL_ON refuses)."""
    flags = Flags.of(locals())
    with session(c, "scan", flags, json=json) as run:
        show_scan(run, json=json)


ns = Collection(
    build, ensure_repo, login, tag, push, release, promote, config, doctor, sandbox, scan
)
# Settings paths (.env, DOCKERFILE, BUILD_CONTEXT) are relative to this folder, wherever
# inv runs from: invoke finds tasks.py upward, as make finds its Makefile.
ns.configure({"ecr_release": {"root": str(Path(__file__).resolve().parent)}})
