"""Release the widget server to AWS ECR: `inv release --version v1`. See README.md."""

from invoke import task

from ecr_release.cli import COMMON_HELP, VERSION_HELP, print_summary, session


def _help(**extra: str) -> dict[str, str]:
    return {**COMMON_HELP, **extra}


@task(help=_help(version=VERSION_HELP))
def build(c, version=None, repository=None, region=None, profile=None, env_file=None):
    """Build IMAGE_NAME:VERSION from the Dockerfile, with OCI labels."""
    with session(
        c,
        version=version,
        versioned=True,
        need_aws=False,
        need_build=True,
        env_file=env_file,
        repository=repository,
        region=region,
        profile=profile,
    ) as run:
        run.build(run.settings.version)
        print(f"built {run.settings.image(run.settings.version)}")


@task(help=_help())
def ensure_repo(c, repository=None, region=None, profile=None, env_file=None):
    """Create the ECR repository if it is missing; print its URI."""
    with session(
        c, env_file=env_file, repository=repository, region=region, profile=profile
    ) as run:
        print(run.ensure_repo().uri)


@task(help=_help(force="log in even when a valid login exists"))
def login(c, force=False, repository=None, region=None, profile=None, env_file=None):
    """Log docker in to the ECR registry with a fresh token (password on stdin)."""
    with session(
        c, env_file=env_file, repository=repository, region=region, profile=profile
    ) as run:
        print(f"logged in to {run.login(force=force)}")


@task(help=_help(version=VERSION_HELP))
def tag(c, version=None, repository=None, region=None, profile=None, env_file=None):
    """Tag IMAGE_NAME:VERSION as REGISTRY/ECR_REPOSITORY:VERSION."""
    with session(
        c,
        version=version,
        versioned=True,
        env_file=env_file,
        repository=repository,
        region=region,
        profile=profile,
    ) as run:
        print(run.tag(run.settings.version))


@task(help=_help(version=VERSION_HELP))
def push(c, version=None, repository=None, region=None, profile=None, env_file=None):
    """Push REGISTRY/ECR_REPOSITORY:VERSION, verify it and print its digest."""
    with (
        session(
            c,
            version=version,
            versioned=True,
            env_file=env_file,
            repository=repository,
            region=region,
            profile=profile,
        ) as run,
        run.locked(),
    ):
        print(run.push(run.settings.version))


@task(help=_help(version=VERSION_HELP, **{"dry-run": "print every step's command, change nothing"}))
def release(
    c, version=None, dry_run=False, repository=None, region=None, profile=None, env_file=None
):
    """Build, ensure-repo, login, tag and push VERSION, then verify it."""
    with session(
        c,
        version=version,
        versioned=True,
        dry_run=dry_run,
        need_build=True,
        env_file=env_file,
        repository=repository,
        region=region,
        profile=profile,
    ) as run:
        print_summary(run.release(run.settings.version))
