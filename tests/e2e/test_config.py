"""`inv config` in a real project: every source named, secrets masked, nothing changed."""

from __future__ import annotations

from .project import Project
from .stack import Stack


def _rows(stdout: str) -> dict[str, list[str]]:
    """KEY -> [value, (source)]: the source may hold spaces, as in "(AWS config)"."""
    rows = {}
    for line in stdout.splitlines():
        key, _, rest = line.strip().partition(" ")
        value, _, source = rest.strip().partition("  ")
        rows[key] = [value, source.strip()]
    return rows


def test_config_names_each_source_and_masks_secrets(project: Project, stack: Stack) -> None:
    done = project.inv("config", "--repository", "from-a-flag", env={"IMAGE_NAME": "from-env"})
    assert done.returncode == 0, done.stderr  # Project.inv: the secret never shows
    rows = _rows(done.stdout)
    assert rows["ECR_REPOSITORY"] == ["from-a-flag", "(flag)"]
    assert rows["IMAGE_NAME"] == ["from-env", "(environment)"]
    assert rows["BASE_IMAGE"] == [stack.info.base_image, "(.env)"]
    assert rows["SMOKE_TIMEOUT"] == ["60", "(default)"]
    assert rows["AWS_SECRET_ACCESS_KEY"] == ["***", "(.env)"]
    assert done.stdout.splitlines()[-1] == "settings: valid"

    project.write_env(AWS_REGION="")
    from_aws_config = project.inv("config", env={"AWS_DEFAULT_REGION": stack.info.region})
    assert _rows(from_aws_config.stdout)["AWS_REGION"] == [stack.info.region, "(AWS config)"]
    names = [r["repositoryName"] for r in project.ecr().describe_repositories()["repositories"]]
    assert project.repository not in names  # it only reads
