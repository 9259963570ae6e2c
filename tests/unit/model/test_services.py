"""The services' declaration in pyproject.toml: read, checked, and turned into each
service's settings (its values above the environment and .env, below a flag)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecr_release.errors import SettingsError
from ecr_release.model.services import Services, read_services
from ecr_release.model.settings import Sources, load_settings


def project(tmp_path: Path, declaration: str, *contexts: str) -> Path:
    for context in contexts or ("services/api", "services/worker"):
        (tmp_path / context).mkdir(parents=True, exist_ok=True)
        (tmp_path / context / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\n\n' + declaration)
    return tmp_path


TWO = """
[tool.ecr-release.services.api]
context = "services/api"
repository = "shop/api"
build-args = { PYTHON = "3.12", WORKERS = 4, DEBUG = false, BASE_IMAGE = "local/base:1" }
smoke-timeout = 30

[tool.ecr-release.services.worker]
context = "services/worker"
dockerfile = "../api/Dockerfile"
smoke-test = false
"""


def test_no_file_no_table_or_no_mention_means_no_services(tmp_path: Path) -> None:
    assert not read_services(tmp_path)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "p"\n[tool.ruff]\nline-length = 1\n'
    )
    assert read_services(tmp_path) == Services()
    (tmp_path / "pyproject.toml").write_text('[tool.other]\nname = "ecr-release"\n')
    assert read_services(tmp_path) == Services()


def test_a_declaration_gives_each_service_its_values_with_compose_defaults(tmp_path: Path) -> None:
    api, worker = read_services(project(tmp_path, TWO)).declared

    assert api.name == "api"
    assert api.values == {
        "ECR_REPOSITORY": "shop/api",
        "IMAGE_NAME": "shop/api",  # the repository, unless image-name says
        "BUILD_CONTEXT": "services/api",
        "DOCKERFILE": "services/api/Dockerfile",  # from the context, as compose takes it
        "SMOKE_TIMEOUT": "30",
        "BASE_IMAGE": "local/base:1",  # the BASE_IMAGE setting, not a plain argument
    }
    assert api.build_args == {"PYTHON": "3.12", "WORKERS": "4", "DEBUG": "false"}
    assert worker.repository == "worker"  # the service's name
    assert worker.values["DOCKERFILE"] == "services/api/Dockerfile"
    assert worker.values["SMOKE_TEST"] == "false"
    assert worker.origin == "pyproject.toml [tool.ecr-release.services.worker]"


def test_select_names_some_services_in_declaration_order_and_refuses_unknown(
    tmp_path: Path,
) -> None:
    services = read_services(project(tmp_path, TWO))

    assert [s.name for s in services.select(None)] == ["api", "worker"]
    assert [s.name for s in services.select("worker, api")] == ["api", "worker"]
    for blank in ("", " , "):  # an empty `--service "$SVC"` never releases them all
        with pytest.raises(SettingsError, match="names no service: leave it out"):
            services.select(blank)
    assert Services().select("") == ()  # no declaration: the one service (the workflow)
    with pytest.raises(SettingsError, match=r"--service 'web' is not declared.*api, worker"):
        services.select("api,web")
    with pytest.raises(SettingsError, match="no services are declared"):
        Services().select("api")


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        (
            '[tool.ecr-release.services.api]\ncontext = "services/api"\ndockerfil = "x"\n',
            "[tool.ecr-release.services.api] in pyproject.toml: unknown key 'dockerfil' "
            "(did you mean 'dockerfile'?)",
        ),
        (
            '[tool.ecr-release.services.api]\ncontext = "nowhere"\n',
            "services.api] in pyproject.toml: context 'nowhere' is not a directory",
        ),
        (
            '[tool.ecr-release.services.api]\ncontext = "services/api"\ndockerfile = "Other"\n',
            "dockerfile: 'services/api/Other' does not exist",
        ),
        (
            '[tool.ecr-release.services.API]\ncontext = "services/api"\n',
            "the service name 'API' must be",
        ),
        (
            '[tool.ecr-release.services.api]\ncontext = "services/api"\nrepository = "Shop"\n',
            "services.api] in pyproject.toml: repository 'Shop' is not an ECR repository name",
        ),
        (
            '[tool.ecr-release.services.api]\ncontext = "services/api"\nsmoke-test = "yes"\n',
            "smoke-test must be true or false",
        ),
        (
            '[tool.ecr-release.services.api]\ncontext = "services/api"\nsmoke-timeout = 0\n',
            "smoke-timeout must be a whole number of seconds from 1 to 3600",
        ),
        (
            '[tool.ecr-release.services.api]\ncontext = "services/api"\n'
            "build-args = { APP_VERSION = 'x' }\n",
            "build-args APP_VERSION: the suite sets it itself",
        ),
        (
            '[tool.ecr-release.services.api]\ncontext = "services/api"\nbuild-args = "A=1"\n',
            "build-args must be a table",
        ),
        (
            "[tool.ecr-release]\njobs = 2\n",
            "[tool.ecr-release] in pyproject.toml: unknown key 'jobs'",
        ),
        ("[tool.ecr-release]\nservices = 1\n", "must hold one table per service"),
        ("[tool.ecr-release.services]\napi = 1\n", "one table per service ([tool.ecr-release"),
        ("[tool.ecr-release.services]\napi = 1\n", ": 'api' is not a table"),
        (
            '[tool.ecr-release.services.api]\ncontext = "services/api"\n'
            '[tool.ecr-release.services.worker]\ncontext = "services/worker"\nrepository = "api"\n',
            "services 'api' and 'worker' have the same repository 'api': give each service its own",
        ),
        ("[tool.ecr-release.services.api\n", "pyproject.toml is not valid TOML"),
    ],
)
def test_a_bad_declaration_is_one_line_naming_the_service_and_the_key(
    tmp_path: Path, declaration: str, message: str
) -> None:
    with pytest.raises(SettingsError) as info:
        read_services(project(tmp_path, declaration))

    assert message in info.value.message
    assert "\n" not in info.value.message


def test_a_services_values_stand_above_the_environment_and_env_below_a_flag(
    tmp_path: Path,
) -> None:
    root = project(tmp_path, TWO)
    (root / ".env").write_text("ECR_REPOSITORY=from-dotenv\nSMOKE_TIMEOUT=90\n")
    api, worker = read_services(root).declared
    environ = {"AWS_REGION": "eu-west-1", "ECR_REPOSITORY": "from-ci", "IMAGE_NAME": "ci"}

    v1 = {"version": "v1"}
    found = load_settings(v1, task="release", environ=environ, root=root, service=api)
    assert (found.repository, found.image_name, found.smoke_timeout) == ("shop/api", "shop/api", 30)
    assert found.dockerfile == root / "services/api/Dockerfile"
    assert found.build_context == root / "services/api"
    assert found.base_image == "local/base:1"
    assert found.service == "api"
    assert found.build_args == {"PYTHON": "3.12", "WORKERS": "4", "DEBUG": "false"}

    other = load_settings(v1, task="release", environ=environ, root=root, service=worker)
    assert (other.repository, other.smoke_test, other.smoke_timeout) == ("worker", False, 90.0)

    flagged = load_settings(
        {**v1, "ECR_REPOSITORY": "by-flag"}, task="release", environ=environ, root=root, service=api
    )
    assert flagged.repository == "by-flag"
    src = Sources.read({}, environ, Path(".env"), root, service=api)
    assert src.lookup("ECR_REPOSITORY") == ("shop/api", api.origin)
    assert src.lookup("AWS_REGION") == ("eu-west-1", "environment")


def test_a_services_settings_problem_names_the_service(tmp_path: Path) -> None:
    root = project(tmp_path, TWO)
    api = read_services(root).declared[0]

    with pytest.raises(SettingsError, match=r"^service api: AWS_REGION is not set"):
        load_settings({"version": "v1"}, task="release", environ={}, root=root, service=api)


def test_a_services_build_args_reach_the_build_and_the_fingerprint(tmp_path: Path) -> None:
    from ecr_release.model.inputs import build_metadata
    from ecr_release.outside.git import Revision

    args, _ = build_metadata("v1", "now", Revision(None, None), None, None, {"PYTHON": "3.12"})
    assert args["PYTHON"] == "3.12"
    assert args["APP_VERSION"] == "v1"
    # A changed service argument is a changed input: the fingerprint's build-args part moves.
    from ecr_release.model.fingerprint import build_args_digest

    other, _ = build_metadata("v1", "now", Revision(None, None), None, None, {"PYTHON": "3.13"})
    assert build_args_digest(args) != build_args_digest(other)


def test_a_tool_key_that_is_not_a_table_declares_nothing(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('tool = "ecr-release"\n')
    assert read_services(tmp_path) == Services()


def test_a_pyproject_that_only_names_the_suite_is_not_parsed(tmp_path: Path) -> None:
    # Invalid TOML: a parse would fail. Naming the suite as the project or a dependency
    # declares nothing, so nothing is parsed (a rerun stays fast).
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "ecr-release"\ndependencies = ["ecr-release @ git+https://x/y"]\n[[['
    )
    assert read_services(tmp_path) == Services()
    for header in ('[tool."ecr-release".services.api]\n', "[tool]\necr-release = 1\n"):
        (tmp_path / "pyproject.toml").write_text(header + "[[[")
        with pytest.raises(SettingsError, match="not valid TOML"):
            read_services(tmp_path)
