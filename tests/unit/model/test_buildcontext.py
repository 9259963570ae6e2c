"""``.dockerignore`` matching with Docker's rules, and the secret check before a build."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from ecr_release.errors import SettingsError
from ecr_release.model import buildcontext
from ecr_release.model.buildcontext import (
    MAX_SCAN_BYTES,
    DockerIgnore,
    check_no_secrets,
    find_secrets,
    needed,
    scan_context,
    unignored_secrets,
    walk_context,
)

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


def test_for_build_reads_the_dockerignore(tmp_path: Path) -> None:
    assert DockerIgnore.for_build(tmp_path).excludes(".env") is False
    (tmp_path / ".dockerignore").write_text(".env\n")
    assert DockerIgnore.for_build(tmp_path).excludes(".env") is True


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


# -- Docker's rules that a plain glob gets wrong ------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        # A pattern excludes a path when it matches any directory above it (moby's
        # MatchesOrParentMatches), at any depth.
        ("**/cache", "a/cache/x/y", True),
        ("*/cache", "a/cache/x", True),
        # '[' keeps its regexp meaning: '!' inside a class is a literal, '^' negates.
        ("[!a].txt", "!.txt", True),
        ("[!a].txt", "b.txt", False),
        ("[^a].txt", "b.txt", True),
        # Regexp metacharacters are literals in a pattern.
        ("a+b.(x)", "a+b.(x)", True),
        ("a+b.(x)", "aab.(x)", False),
        # Only a leading '#' makes a comment; '.' alone is ignored.
        (" # notes", "# notes", True),
        (".", "anything", False),
        ("\ufeff.env", ".env", True),
    ],
)
def test_dockerignore_follows_moby(patterns: str, path: str, excluded: bool) -> None:
    assert DockerIgnore(patterns).excludes(path) is excluded


@pytest.mark.parametrize("patterns", ["[", "a[b", "!", "ok\n  !  "])
def test_a_pattern_docker_refuses_is_one_line(patterns: str) -> None:
    with pytest.raises(SettingsError) as info:
        DockerIgnore(patterns)
    assert "line" in info.value.message and "\n" not in info.value.message


def _walked(context: Path, dockerfile: Path | None = None) -> list[str]:
    return [e.relpath for e in walk_context(context, DockerIgnore.for_build(context, dockerfile))]


def _files(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)


def test_walk_skips_excluded_directories_without_entering_them(tmp_path: Path) -> None:
    _files(tmp_path, "app/main.py", "build/out.bin", "build/deep/x", "README.md")
    (tmp_path / ".dockerignore").write_text("build\n*.md\n")
    assert _walked(tmp_path) == [".dockerignore", "app", "app/main.py"]


def test_walk_enters_an_excluded_directory_only_for_an_exception_inside_it(
    tmp_path: Path,
) -> None:
    _files(tmp_path, "data/keep/a", "data/other", "logs/keep")
    # '!data/keep' lies inside data/: walked. '!**/keep' does not start with logs/: Docker
    # never looks inside logs/, so logs/keep stays out.
    (tmp_path / ".dockerignore").write_text("data\nlogs\n!data/keep\n!**/keep\n")
    assert _walked(tmp_path) == [".dockerignore", "data/keep", "data/keep/a"]


def test_walk_keeps_the_dockerfile_and_dockerignore_even_when_ignored(tmp_path: Path) -> None:
    _files(tmp_path, "Dockerfile", "app.py", "sub/Dockerfile.prod")
    (tmp_path / ".dockerignore").write_text("*\n")
    assert _walked(tmp_path, tmp_path / "Dockerfile") == [".dockerignore", "Dockerfile"]
    assert _walked(tmp_path, tmp_path / "sub" / "Dockerfile.prod") == [
        ".dockerignore",
        "sub/Dockerfile.prod",
    ]


def test_walk_does_not_follow_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _files(outside, "secret.txt")
    context = tmp_path / "ctx"
    _files(context, "app.py")
    (context / "linked").symlink_to(outside, target_is_directory=True)
    entries = list(walk_context(context, DockerIgnore("")))
    assert [e.relpath for e in entries] == ["app.py", "linked"]
    assert entries[1].is_symlink and not entries[1].is_dir


# -- every kind of secret ---------------------------------------------------------------

PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END"
CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
# Built at run time, so no key-shaped literal sits in the repository.
ACCESS_KEY_ID = "AKIA" + "Z7Q2" * 4
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCY" + "EXAMPLEKEY"


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("id_rsa", "anything", ""),
        (".ssh/id_ed25519", "anything", ""),
        (".netrc", "machine x login y password z\n", ""),
        (".git-credentials", "https://u:p@github.com\n", ""),
        (".pypirc", "[pypi]\npassword = x\n", ""),
        (".docker/config.json", '{"auths": {}}', ""),
        ("certs/client.p12", "binary", ""),
        ("certs/server.pem", PRIVATE_KEY, "a private key"),
        ("deploy/key.txt", "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n", "a private key"),
        (
            "gcp-sa.json",
            '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIE"}',
            "a private key",
        ),
        (".npmrc", "//registry.npmjs.org/:_authToken=npm_abc\n", "an npm auth token"),
        ("conf/settings.ini", f"aws_secret_access_key = {SECRET_KEY}\n", ""),
        ("conf/app.yaml", f"key_id: {ACCESS_KEY_ID}\n", "an AWS access key id"),
    ],
)
def test_each_kind_of_secret_is_refused(tmp_path: Path, name: str, content: str, why: str) -> None:
    _files(tmp_path, "app.py")
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(content)
    found = find_secrets(tmp_path)
    expected = ".ssh/" if name.startswith(".ssh/") else name
    assert [f.relpath for f in found] == [expected]
    if name == "conf/settings.ini":
        why = "an AWS secret access key"
    assert found[0].why == why
    with pytest.raises(SettingsError) as info:
        check_no_secrets(tmp_path)
    assert expected in info.value.message
    assert content not in info.value.message and SECRET_KEY not in info.value.message


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("certs/ca.pem", CERTIFICATE),
        (".npmrc", "registry=https://registry.npmjs.org/\n"),
        ("id_rsa.pub", "ssh-ed25519 AAAAC3Nza user@host\n"),
        ("docs/aws.md", "set AWS_SECRET_ACCESS_KEY in your environment\n"),
    ],
)
def test_look_alikes_that_are_not_secrets_build(tmp_path: Path, name: str, content: str) -> None:
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(content)
    assert find_secrets(tmp_path) == []


def test_binary_and_oversized_files_are_not_read(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"\0\1\2" + PRIVATE_KEY.encode())
    big = tmp_path / "big.log"
    big.write_bytes(b"x" * MAX_SCAN_BYTES + PRIVATE_KEY.encode())
    assert find_secrets(tmp_path) == []


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files the scan opens; a file named 'locked' cannot be opened."""
    seen: list[str] = []

    def fake_open(path: Path, mode: str = "r") -> IO[Any]:
        seen.append(Path(path).name)
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return open(path, mode)

    monkeypatch.setattr(buildcontext, "open", fake_open, raising=False)
    return seen


def test_ignored_files_are_not_read_at_all(tmp_path: Path, reads: list[str]) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "server.pem").write_text(PRIVATE_KEY)
    (tmp_path / "app.py").write_text("x")
    (tmp_path / ".dockerignore").write_text("keys/\n")
    assert find_secrets(tmp_path) == []
    assert sorted(reads) == [".dockerignore", "app.py"]


def test_the_allow_list_lets_a_file_through(tmp_path: Path) -> None:
    (tmp_path / "fixtures").mkdir()
    (tmp_path / "fixtures" / "test-key.pem").write_text(PRIVATE_KEY)
    (tmp_path / "id_rsa").write_text("x")
    assert [f.relpath for f in find_secrets(tmp_path, allow=["fixtures/*.pem"])] == ["id_rsa"]
    check_no_secrets(tmp_path, allow=["fixtures/", "id_rsa"])  # does not raise


def test_a_long_list_of_findings_is_shortened(tmp_path: Path) -> None:
    for i in range(12):
        (tmp_path / f".env.{i:02d}").write_text("X=1\n")
    with pytest.raises(SettingsError, match=r"\.env\.07 and 4 more and \.dockerignore"):
        check_no_secrets(tmp_path)


def test_an_unreadable_file_is_named(tmp_path: Path, reads: list[str]) -> None:
    (tmp_path / "locked").write_text("x")
    with pytest.raises(SettingsError, match=r"cannot read locked in the build context"):
        check_no_secrets(tmp_path)


SHIPPED = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "path",
    [
        "id_rsa",
        "deploy/id_ed25519",
        ".ssh/config",
        "home/.ssh/id_ecdsa",
        "certs/server.pem",
        "certs/client.p12",
        ".netrc",
        ".git-credentials",
        ".npmrc",
        ".pypirc",
        ".docker/config.json",
        "ci/.docker/config.json",
    ],
)
def test_the_shipped_dockerignore_keeps_every_known_credential_file_out(path: str) -> None:
    ignore = DockerIgnore.for_build(SHIPPED, SHIPPED / "Dockerfile")
    assert ignore.excludes(path)


def test_the_shipped_context_passes_the_secret_check() -> None:
    assert find_secrets(SHIPPED, SHIPPED / "Dockerfile") == []


@pytest.mark.parametrize("name", ["prod.env", "config/release.env"])
def test_any_dot_env_file_is_a_secret(tmp_path: Path, name: str) -> None:
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text("GITHUB_TOKEN=x\n")
    assert [f.relpath for f in find_secrets(tmp_path)] == [name]


def test_the_settings_file_in_use_is_a_secret_whatever_its_name(tmp_path: Path) -> None:
    (tmp_path / "deploy-settings").write_text("DB=x\n")
    assert scan_context(tmp_path).secrets == []
    found = scan_context(tmp_path, also=[tmp_path / "deploy-settings"]).secrets
    assert [f.relpath for f in found] == ["deploy-settings"]


def test_an_unreadable_directory_entry_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "locked").write_text("x")
    real = os.scandir

    class Entry:  # os.DirEntry, whose lstat is refused for "locked"
        def __init__(self, entry: os.DirEntry[str]) -> None:
            self.name, self.path, self._entry = entry.name, entry.path, entry
            self.is_dir, self.is_file = entry.is_dir, entry.is_file
            self.is_symlink = entry.is_symlink

        def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
            if self.name == "locked":
                raise PermissionError(13, "Permission denied")
            return self._entry.stat(follow_symlinks=follow_symlinks)

    @contextlib.contextmanager
    def scandir(path: str) -> Iterator[list[Entry]]:
        with real(path) as listing:
            yield [Entry(entry) for entry in listing]

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(SettingsError, match="cannot read locked in the build context"):
        find_secrets(tmp_path)


# -- what a build needs sent ---------------------------------------------------------------


def test_the_scan_lists_what_is_sent_in_walk_order(tmp_path: Path) -> None:
    _files(tmp_path, "app/main.py", "app/lib/x.py", "build/out.bin", "README.md")
    (tmp_path / ".dockerignore").write_text("build\n")
    entries = scan_context(tmp_path).entries
    assert entries == (
        ".dockerignore",
        "README.md",
        "app",
        "app/lib",
        "app/lib/x.py",
        "app/main.py",
    )


def test_needed_is_each_source_and_all_below_it_with_the_dockerignore() -> None:
    entries = (".dockerignore", "Dockerfile", "app", "app/a.py", "apple", "assets", "assets/x")
    assert needed(entries, ["app"]) == (".dockerignore", "app", "app/a.py")  # not "apple"
    assert needed(entries, ["app/a.py", "assets"]) == (
        ".dockerignore",
        "app/a.py",
        "assets",
        "assets/x",
    )
    assert needed(entries, []) == (".dockerignore",)


def test_needed_is_unknown_when_a_source_is_not_sent() -> None:
    """Missing, or excluded by .dockerignore: Docker's own error names it, from the whole."""
    assert needed(("app", "app/a.py"), ["app", "missing"]) is None
