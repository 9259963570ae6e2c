"""``.dockerignore`` matching with Docker's rules, and the secret check before a build."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecr_release.buildcontext import DockerIgnore, check_no_secrets, unignored_secrets
from ecr_release.errors import SettingsError

# -- Docker's matching rules -------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        # A plain name is anchored at the context root.
        (".env", ".env", True),
        (".env", "sub/.env", False),
        (".env", ".env.local", False),
        (".env.*", ".env.local", True),
        (".env.*", ".env", False),
        # '*' and '?' never cross '/'.
        ("*.log", "app.log", True),
        ("*.log", "logs/app.log", False),
        ("*/*.log", "logs/app.log", True),
        ("*/*.log", "a/b/app.log", False),
        ("file?.txt", "file1.txt", True),
        ("file?.txt", "file10.txt", False),
        ("file?.txt", "file/.txt", False),
        ("[ab].txt", "a.txt", True),
        ("[ab].txt", "c.txt", False),
        ("log[0-9].txt", "log7.txt", True),
        # '**' spans any number of directories, including none.
        ("**/.env", ".env", True),
        ("**/.env", "sub/.env", True),
        ("**/.env", "a/b/c/.env", True),
        ("**/.env", "a/b/c/x.env", False),
        ("**/*.pyc", "a/b/mod.pyc", True),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("a/**/b", "c/x/b", False),
        ("docs/**", "docs/a/b.md", True),
        # A pattern matching a directory covers everything below it.
        ("build", "build", True),
        ("build", "build/out/app.bin", True),
        ("build", "builder", False),
        ("build/", "build/x", True),
        ("*", "widget_server/app.py", True),
        # A leading '/' and './' are ignored, the pattern is cleaned.
        ("/secrets", "secrets/key.pem", True),
        ("/secrets", "sub/secrets", False),
        ("./.env", ".env", True),
        ("docs/../.env", ".env", True),
        ("  .env  ", ".env", True),
        # Comments and blank lines are not patterns; a backslash escapes.
        ("# .env", ".env", False),
        ("\n\n   \n", ".env", False),
        ("\\#notes", "#notes", True),
        ("a\\*b", "a*b", True),
        ("a\\*b", "axb", False),
        # '!' re-includes and the last matching pattern wins.
        ("*.md\n!README.md", "README.md", False),
        ("*.md\n!README.md", "CHANGES.md", True),
        ("!README.md\n*.md", "README.md", True),
        ("*\n!widget_server/", "widget_server/app.py", False),
        ("*\n!widget_server/", "tasks.py", True),
        ("data\n!data/keep", "data/keep/x", False),
        ("data\n!data/keep", "data/other", True),
        ("! .env.example\n.env*", ".env.example", True),
        (".env*\n! .env.example", ".env.example", False),
        ("", "anything", False),
    ],
)
def test_dockerignore_excludes(patterns: str, path: str, excluded: bool) -> None:
    assert DockerIgnore(patterns).excludes(path) is excluded


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [("", False), (".env\n*.log", False), ("*\n!app/", True), ("# !not-a-rule\n.env", False)],
)
def test_has_exceptions(patterns: str, expected: bool) -> None:
    assert DockerIgnore(patterns).has_exceptions is expected


def test_for_context_reads_the_dockerignore(tmp_path: Path) -> None:
    assert DockerIgnore.for_context(tmp_path).excludes(".env") is False
    (tmp_path / ".dockerignore").write_text(".env\n")
    assert DockerIgnore.for_context(tmp_path).excludes(".env") is True


# -- the secret check -----------------------------------------------------------------------


def _tree(root: Path, *files: str, dockerignore: str | None = None) -> Path:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI\n")
    (root / "app.py").write_text("print('hi')\n")
    if dockerignore is not None:
        (root / ".dockerignore").write_text(dockerignore)
    return root


SECRETS = (".env", ".env.local", ".env.production", ".aws/credentials", "sub/.env")
GOOD_IGNORE = "# secrets\n.env\n.env.*\n!.env.example\n.aws/\n"


def test_every_kind_of_secret_is_reported_without_dockerignore(tmp_path: Path) -> None:
    _tree(tmp_path, *SECRETS, ".env.example", "sub/.env.example")
    assert unignored_secrets(tmp_path) == [
        ".aws/",
        ".env",
        ".env.local",
        ".env.production",
        "sub/.env",
    ]


@pytest.mark.parametrize("secret", SECRETS)
def test_each_secret_alone_is_reported(tmp_path: Path, secret: str) -> None:
    _tree(tmp_path, secret)
    expected = ".aws/" if secret.startswith(".aws/") else secret
    assert unignored_secrets(tmp_path) == [expected]


@pytest.mark.parametrize("dockerignore", [None, "", "*.log\n"])
def test_env_example_is_never_a_secret(tmp_path: Path, dockerignore: str | None) -> None:
    _tree(tmp_path, ".env.example", "sub/.env.example", dockerignore=dockerignore)
    assert unignored_secrets(tmp_path) == []
    check_no_secrets(tmp_path)  # does not raise


def test_a_good_dockerignore_passes(tmp_path: Path) -> None:
    _tree(tmp_path, ".env", ".env.local", ".env.production", ".aws/credentials", ".env.example")
    (tmp_path / ".dockerignore").write_text(GOOD_IGNORE)
    assert unignored_secrets(tmp_path) == []
    check_no_secrets(tmp_path)  # does not raise


def test_root_patterns_do_not_cover_a_nested_env(tmp_path: Path) -> None:
    _tree(tmp_path, ".env", "sub/.env", "sub/.aws/config", dockerignore=GOOD_IGNORE)
    assert unignored_secrets(tmp_path) == ["sub/.aws/", "sub/.env"]


def test_double_star_patterns_cover_nested_secrets(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        ".env",
        "sub/.env",
        "a/b/.env.local",
        "a/.aws/credentials",
        dockerignore="**/.env\n**/.env.*\n**/.aws\n",
    )
    assert unignored_secrets(tmp_path) == []


def test_partly_ignored_secrets_report_only_the_rest(tmp_path: Path) -> None:
    _tree(tmp_path, ".env", ".env.local", ".aws/credentials", dockerignore=".env\n")
    assert unignored_secrets(tmp_path) == [".aws/", ".env.local"]


def test_re_included_env_is_reported(tmp_path: Path) -> None:
    _tree(tmp_path, ".env", ".env.production", dockerignore=".env*\n!.env.production\n")
    assert unignored_secrets(tmp_path) == [".env.production"]


def test_allow_list_dockerignore(tmp_path: Path) -> None:
    _tree(tmp_path, ".env", ".aws/credentials", "widget_server/main.py")
    (tmp_path / ".dockerignore").write_text("*\n!widget_server/\n")
    assert unignored_secrets(tmp_path) == []
    (tmp_path / "widget_server" / ".env").write_text("TOKEN=x\n")
    (tmp_path / "widget_server" / ".env.example").write_text("TOKEN=\n")
    assert unignored_secrets(tmp_path) == ["widget_server/.env"]


def test_secrets_below_an_ignored_directory_are_not_reported(tmp_path: Path) -> None:
    _tree(tmp_path, "build/.env", "build/deep/.env.local", dockerignore="build/\n")
    assert unignored_secrets(tmp_path) == []


def test_re_included_subdirectory_of_an_ignored_directory_is_walked(tmp_path: Path) -> None:
    _tree(tmp_path, "data/.env", "data/keep/.env", dockerignore="data\n!data/keep\n")
    assert unignored_secrets(tmp_path) == ["data/keep/.env"]


def test_a_directory_named_env_is_not_a_secret_file(tmp_path: Path) -> None:
    # A virtualenv called ".env" is a directory; only files named .env are secrets.
    _tree(tmp_path, ".env/bin/python")
    assert unignored_secrets(tmp_path) == []


def test_check_no_secrets_names_the_files_and_the_fix(tmp_path: Path) -> None:
    _tree(tmp_path, ".env", "widget_server/.env", ".aws/credentials")
    with pytest.raises(SettingsError) as info:
        check_no_secrets(tmp_path)
    message = info.value.message
    assert ".aws/, .env, widget_server/.env" in message
    assert repr(str(tmp_path)) in message
    assert "add it to .dockerignore" in message
    assert "wJalrXUtnFEMI" not in message
    assert info.value.exit_code == 2
