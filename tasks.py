"""Release the widget server to AWS ECR: `inv release --version v1`. See README.md."""

from pathlib import Path

from invoke import Collection, task

from ecr_release.cli.session import Flags, flag_help, run_doctor, session, show_config


@task(help=flag_help("version"))
def build(c, version=None, repository=None, region=None, profile=None, env_file=None):
    """Build IMAGE_NAME:VERSION from the Dockerfile, with OCI labels."""
    with session(c, "build", Flags(repository, region, profile, env_file), version=version) as run:
        print(f"built {run.steps.build(version)}")


@task(help=flag_help())
def ensure_repo(c, repository=None, region=None, profile=None, env_file=None):
    """Create the ECR repository if it is missing; print its URI."""
    with session(c, "ensure-repo", Flags(repository, region, profile, env_file)) as run:
        print(run.steps.ensure_repo().uri)


@task(help=flag_help("force"))
def login(c, force=False, repository=None, region=None, profile=None, env_file=None):
    """Log docker in to the ECR registry with a fresh token (password on stdin)."""
    with session(c, "login", Flags(repository, region, profile, env_file)) as run:
        print(f"logged in to {run.steps.login(force=force)}")


@task(help=flag_help("version"))
def tag(c, version=None, repository=None, region=None, profile=None, env_file=None):
    """Tag IMAGE_NAME:VERSION as REGISTRY/ECR_REPOSITORY:VERSION."""
    with session(c, "tag", Flags(repository, region, profile, env_file), version=version) as run:
        print(run.steps.tag(version))


@task(help=flag_help("version", "json"))
def push(c, version=None, json=False, repository=None, region=None, profile=None, env_file=None):
    """Push REGISTRY/ECR_REPOSITORY:VERSION, verify it and print its digest."""
    flags = Flags(repository, region, profile, env_file)
    with session(c, "push", flags, version=version, json=json) as run:
        run.report(run.steps.push(version))


@task(help=flag_help("version", "dry_run", "json", "also_tag", "no_smoke"))
def release(
    c,
    version=None,
    dry_run=False,
    json=False,
    also_tag=None,
    no_smoke=False,
    repository=None,
    region=None,
    profile=None,
    env_file=None,
):
    """Build, smoke-test, ensure-repo, login, tag and push VERSION, then verify it."""
    flags = Flags(repository, region, profile, env_file)
    own = {"ECR_EXTRA_TAGS": also_tag, "SMOKE_TEST": "false" if no_smoke else None}
    options = {"version": version, "dry_run": dry_run, "json": json, "overrides": own}
    with session(c, "release", flags, **options) as run:
        run.report(run.steps.release(version))


@task(help=flag_help("version", "tag"))
def promote(c, version=None, tag=None, repository=None, region=None, profile=None, env_file=None):
    """Point moving tags (latest, prod) at a released VERSION, on the registry side."""
    flags = Flags(repository, region, profile, env_file)
    with session(c, "promote", flags, version=version, overrides={"tags": tag}) as run:
        digest = run.steps.promote(version, run.steps.settings.tags)
        for name in run.steps.settings.tags:
            print(f"{name} -> {version} ({digest})")


@task(help=flag_help("json"))
def config(c, json=False, repository=None, region=None, profile=None, env_file=None):
    """Show every setting, its value and where it comes from (secrets masked)."""
    show_config(c, Flags(repository, region, profile, env_file), json=json)


@task(help=flag_help())
def doctor(c, repository=None, region=None, profile=None, env_file=None):
    """Check Docker, the settings, AWS and the registry, one line each; change nothing."""
    run_doctor(c, Flags(repository, region, profile, env_file))


ns = Collection(build, ensure_repo, login, tag, push, release, promote, config, doctor)
# Settings paths (.env, DOCKERFILE, BUILD_CONTEXT) are relative to this folder, wherever
# inv runs from: invoke finds tasks.py upward, as make finds its Makefile.
ns.configure({"ecr_release": {"root": str(Path(__file__).resolve().parent)}})
