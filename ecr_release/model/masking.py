"""Masking secrets: a setting's value as it may be shown, and messages that may quote one.

Which keys are secret comes from the settings' declaration (``Setting.secret``), then
the standard AWS secret variables, then, for any other key, its name: one that says
SECRET, TOKEN or PASSWORD. ``inv config`` shows values through :func:`shown`; ``inv
doctor`` passes its messages through :func:`scrub`. This module reads no settings and
prints nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from ..errors import mask_urls
from .settings import DECLARED

MASK = "***"
# The standard AWS variables whose values are credentials.
AWS_SECRET_KEYS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
# Shorter values are not scrubbed from messages: they would blank ordinary words.
MIN_SCRUBBED = 8
# What urllib leaves behind: user:password@ with a / ? or # in the password.
_LOOSE_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)(?!\*\*\*@)[^\s@/]*:[^\s]*@")

_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD", re.IGNORECASE)


def is_secret(key: str) -> bool:
    """Whether a key's value is never shown (SECRET_SCAN_ALLOW is declared, and not secret)."""
    setting = DECLARED.get(key)
    if setting is not None:
        return setting.secret
    return key in AWS_SECRET_KEYS or bool(_SECRET_NAME.search(key))


def shown(key: str, value: str | None) -> str | None:
    """A value as it may be shown: a secret as ``***``, an access key id as ``***`` and its
    last four characters, a URL with its user:password as ``***``."""
    if value is None:
        return None
    if is_secret(key):
        return MASK
    if key == "AWS_ACCESS_KEY_ID":  # an identifier, but not one to show in full
        return MASK + value[-4:]
    return without_userinfo(value)


def without_userinfo(value: str) -> str:
    """A URL with its whole user-info part (``user:password@``) shown as ``***@``, split
    where ``urllib.parse`` (and so botocore) splits it: at the netloc's last ``@``. A
    password holding ``/``, ``?`` or ``#`` ends urllib's netloc early; what still looks
    like ``user:password@`` after the scheme is masked too, up to the last ``@``. Any
    other value as it is."""
    if "://" not in value:
        return value
    try:
        netloc = urlsplit(value).netloc
    except ValueError:  # not a URL urllib can split: show no part of what may be one
        return MASK
    if "@" in netloc:
        value = value.replace(f"//{netloc}", f"//{MASK}@{netloc.rpartition('@')[2]}", 1)
    return _LOOSE_USERINFO.sub(rf"\1{MASK}@", value)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret of at least :data:`MIN_SCRUBBED` characters replaced by
    ``***`` (the longest first, so one secret inside another leaves nothing behind)."""
    for secret in sorted({s for s in secrets if len(s) >= MIN_SCRUBBED}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return mask_urls(text)
