"""Release the widget server to AWS ECR: `inv release --version v1`. See README.md.

The tasks live in the package (``ecr_release/cli/tasks.py``), so another project's
``tasks.py`` can be these same two lines."""

from ecr_release.cli.tasks import namespace

ns = namespace(__file__)
