"""Masking: which keys are secret, how a value is shown, and secrets scrubbed from text."""

from __future__ import annotations

import dataclasses

import pytest

from ecr_release.model import masking, settings
from ecr_release.model.masking import MASK, is_secret, scrub, shown, without_userinfo


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("AWS_SECRET_ACCESS_KEY", True),
        ("AWS_SESSION_TOKEN", True),
        ("AWS_SECURITY_TOKEN", True),
        ("NPM_PASSWORD", True),
        ("github_token", True),
        ("AWS_ACCESS_KEY_ID", False),
        ("AWS_REGION", False),
        ("SECRET_SCAN_ALLOW", False),  # declared, and not a secret: its name says SECRET
        ("ECR_KMS_KEY", False),
    ],
)
def test_which_keys_are_secret(key: str, secret: bool) -> None:
    assert is_secret(key) is secret


def test_a_setting_declared_secret_is_masked_whatever_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    declared = dict(settings.DECLARED)
    declared["BASE_IMAGE"] = dataclasses.replace(declared["BASE_IMAGE"], secret=True)
    monkeypatch.setattr(masking, "DECLARED", declared)
    assert shown("BASE_IMAGE", "registry.example/base:1") == MASK
    assert shown("IMAGE_NAME", "widget") == "widget"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI", MASK),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLEWXYZ", "***WXYZ"),
        (
            "AWS_ENDPOINT_URL",
            "https://ci:s3cr3t@proxy.example:8443/ecr",
            "https://***@proxy.example:8443/ecr",
        ),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("SECRET_SCAN_ALLOW", "fixtures/*.pem", "fixtures/*.pem"),
        ("ECR_REPOSITORY", None, None),
    ],
)
def test_how_a_value_is_shown(key: str, value: str | None, expected: str | None) -> None:
    assert shown(key, value) == expected


def test_scrub_replaces_every_secret_the_longest_first_and_leaves_short_ones() -> None:
    long, inner = "outer-secret-0123456789", "secret-0123"
    text = f"key {long} and {inner}; short 'abc' stays; {long}"
    assert scrub(text, {inner, long, "abc"}) == "key *** and ***; short 'abc' stays; ***"
    assert scrub("nothing here", []) == "nothing here"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # urllib (and so botocore) splits the user part at the netloc's LAST '@'.
        ("http://user:pa@ss-secret@127.0.0.1:5959", "http://***@127.0.0.1:5959"),
        ("http://user:p:a:ss@host:1/path", "http://***@host:1/path"),
        ("http://user:p%40ss@host/x?q=1", "http://***@host/x?q=1"),
        ("http://user:@host", "http://***@host"),  # an empty password
        ("http://token@host", "http://***@host"),
        ("https://host/path@not-userinfo", "https://host/path@not-userinfo"),
        ("http://[::1", MASK),  # urllib cannot split it: nothing of it is shown
    ],
)
def test_a_url_loses_its_whole_user_part_as_urllib_splits_it(url: str, expected: str) -> None:
    from urllib.parse import urlsplit

    assert without_userinfo(url) == expected
    if expected != MASK:
        parts = urlsplit(url)
        assert not parts.password or parts.password not in without_userinfo(url)
        assert (parts.username or "x@") not in without_userinfo(url).split("//", 1)[1]


@pytest.mark.parametrize(
    "url",
    [
        "https://ci-user:Zx9/kQ2#wP@proxy.corp.example:8443",
        "https://user:p#ss@host",
        "https://user:p?ss@host/x",
    ],
)
def test_a_password_urllib_would_split_early_is_masked_all_the_same(url: str) -> None:
    shown_value = without_userinfo(url)
    assert shown_value.startswith(url.split("://")[0] + "://***@")
    assert not any(part in shown_value for part in ("Zx9", "kQ2", "wP@", "p#ss", "p?ss"))


def test_every_error_message_loses_a_urls_password() -> None:
    from ecr_release.errors import AwsError

    error = AwsError('cannot reach "http://svc:supersecretpw@127.0.0.1:1/" or http://a:b@c:2')
    assert "supersecretpw" not in error.message and ":b@" not in error.message
    assert error.message == 'cannot reach "http://***@127.0.0.1:1/" or http://***@c:2'
