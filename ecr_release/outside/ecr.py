"""The ECR API: only the calls the release needs, over an injected boto3 client.

``connect`` is the one place that makes a boto3 session and client (with explicit
retry settings); ``Ecr`` receives the client, so tests hand it a moto or Stubber
client. ``EcrAccess`` is one run's use of it: the client made on first use, one
login token (checked against ``AWS_ACCOUNT_ID``) and one registry client per
token. A dry run wraps the client in ``PlanningEcr``, which shows what it would
create. Errors from botocore become one-line ``AwsError``/``SettingsError``.
This module never talks to Docker, and never logs or returns the token except
as the ``Authorization.password`` field (hidden from ``repr``).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

from ..errors import (
    AwsError,
    ImageNotFoundError,
    RegistryAuthError,
    ScanNotFoundError,
    SettingsError,
)
from .process import ENVIRON_LOCK

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

    from .registry import Registry

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_ATTEMPTS = 5
# Every ECR action the suite needs, and what for: its boto3 calls, its own registry
# reads, and what `docker push` does. deploy/iam-policy.json and the README list these.
IAM_ACTIONS: Mapping[str, str] = {
    "ecr:GetAuthorizationToken": "the registry login token (on any resource)",
    "ecr:DescribeRepositories": "does the repository exist, with which settings",
    "ecr:CreateRepository": "create the repository when missing",
    "ecr:BatchGetImage": "read a tag's manifest from the registry",
    "ecr:GetDownloadUrlForLayer": "read a released image's config (its fingerprint)",
    "ecr:ListImages": "ask the registry whether the repository exists (saves DescribeRepositories)",
    "ecr:BatchCheckLayerAvailability": "docker push",
    "ecr:InitiateLayerUpload": "docker push",
    "ecr:UploadLayerPart": "docker push",
    "ecr:CompleteLayerUpload": "docker push",
    "ecr:PutImage": "docker push, and promote (a tag put on the registry side)",
    "ecr:PutLifecyclePolicy": "expire untagged images (ECR_EXPIRE_UNTAGGED_DAYS), on create",
    "ecr:GetLifecyclePolicy": "warn when an existing repository's policy differs",
    "ecr:DescribeImageScanFindings": "the scan gate and `inv scan`: the image's scan findings",
    "ecr:GetRegistryScanningConfiguration": (
        "does enhanced (or registry-level) scanning cover the repository (account-level)"
    ),
    "ecr:BatchDeleteImage": "remove a release candidate's tag (by tag only: never an image)",
    "inspector2:ListFindings": (
        "the scan gate under enhanced scanning: ECR reads the findings from Amazon Inspector "
        "as the caller (account-level)"
    ),
}
# The actions IAM cannot scope to a repository: granted on every resource.
ACCOUNT_LEVEL_ACTIONS = frozenset(
    {"ecr:GetAuthorizationToken", "ecr:GetRegistryScanningConfiguration", "inspector2:ListFindings"}
)
NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
    "in .env or the environment (or run `aws configure`)"
)


# The suite's candidate tags (a release pushes its image under one before the version
# tag appears): the lifecycle policy expires those a failed gate left behind.
CANDIDATE_PREFIX = "ecr-release-candidate-"


def lifecycle_policy(days: int) -> str:
    """ECR's lifecycle policy: images still tagged only as a candidate of this suite, and
    untagged images, both pushed more than ``days`` ago, expire.

    A rule expires images, not tags: an image that also carries its version would go with
    the candidate rule. A release therefore removes the candidate tag right after the
    version is verified, and says so loudly when it cannot (a rerun removes it)."""
    candidates = {
        "rulePriority": 1,
        "description": f"Expire candidates (failed gates) pushed more than {days} days ago",
        "selection": {
            "tagStatus": "tagged",
            "tagPrefixList": [CANDIDATE_PREFIX],
            "countType": "sinceImagePushed",
            "countUnit": "days",
            "countNumber": days,
        },
        "action": {"type": "expire"},
    }
    untagged = {
        "rulePriority": 2,
        "description": f"Expire untagged images pushed more than {days} days ago",
        "selection": {
            "tagStatus": "untagged",
            "countType": "sinceImagePushed",
            "countUnit": "days",
            "countNumber": days,
        },
        "action": {"type": "expire"},
    }
    return json.dumps({"rules": [candidates, untagged]})


def lifecycle_drift(found: str | None, days: int) -> str | None:
    """How a lifecycle policy's text (None: the repository has none) differs from
    ``days``; None when it does not."""
    if found is None:
        return f"has no lifecycle policy, configured ECR_EXPIRE_UNTAGGED_DAYS={days}"
    try:
        same = json.loads(found).get("rules") == json.loads(lifecycle_policy(days))["rules"]
    except (ValueError, AttributeError):
        same = False
    if same:
        return None
    return f"has another lifecycle policy than ECR_EXPIRE_UNTAGGED_DAYS={days}"


def tag_is_mutable(mutability: str, exclusions: Sequence[str], tag: str) -> bool:
    """May this tag move to another image? ``*_WITH_EXCLUSION`` filters (``*`` wildcards)
    name the tags that behave the other way."""
    excluded = any(re.fullmatch(".*".join(map(re.escape, f.split("*"))), tag) for f in exclusions)
    if mutability == "MUTABLE":
        return True
    if mutability == "MUTABLE_WITH_EXCLUSION":
        return not excluded
    if mutability == "IMMUTABLE_WITH_EXCLUSION":
        return excluded
    return False


@dataclass(frozen=True)
class RepositoryConfig:
    """The settings a new repository is created with."""

    scan_on_push: bool
    tag_mutability: str
    encryption: str
    kms_key: str | None = None
    exclusions: tuple[str, ...] = ()
    expire_untagged_days: int | None = None

    def words(self) -> str:
        """In a few words: mutability, scanning, encryption, lifecycle."""
        words = [self.tag_mutability, "scan on push" if self.scan_on_push else "no scan on push"]
        words.append(self.encryption)
        if self.expire_untagged_days is not None:
            words.append(f"untagged expire after {self.expire_untagged_days} days")
        return ", ".join(words)

    def create_kwargs(self, name: str) -> dict[str, Any]:
        encryption: dict[str, str] = {"encryptionType": self.encryption}
        if self.kms_key:
            encryption["kmsKey"] = self.kms_key
        kwargs: dict[str, Any] = {
            "repositoryName": name,
            "imageScanningConfiguration": {"scanOnPush": self.scan_on_push},
            "imageTagMutability": self.tag_mutability,
            "encryptionConfiguration": encryption,
        }
        if self.exclusions:
            kwargs["imageTagMutabilityExclusionFilters"] = [
                {"filterType": "WILDCARD", "filter": tag} for tag in self.exclusions
            ]
        return kwargs


@dataclass(frozen=True)
class Repository:
    name: str
    uri: str
    scan_on_push: bool
    tag_mutability: str
    encryption: str
    kms_key: str | None
    exclusions: tuple[str, ...] = ()

    def tag_is_mutable(self, tag: str) -> bool:
        return tag_is_mutable(self.tag_mutability, self.exclusions, tag)

    @property
    def host(self) -> str:
        return self.uri.split("/", 1)[0]

    def drift(self, wanted: RepositoryConfig) -> list[str]:
        """Human lines for each setting that differs from the configured one."""
        found = []
        if self.scan_on_push != wanted.scan_on_push:
            found.append(f"scanOnPush is {self.scan_on_push}, configured {wanted.scan_on_push}")
        if self.tag_mutability != wanted.tag_mutability:
            found.append(
                f"imageTagMutability is {self.tag_mutability}, configured {wanted.tag_mutability}"
            )
        elif set(self.exclusions) != set(wanted.exclusions):
            found.append(
                f"mutability exclusions are {','.join(self.exclusions) or 'none'}, configured "
                f"{','.join(wanted.exclusions) or 'none'}"
            )
        if self.encryption != wanted.encryption:
            found.append(f"encryption is {self.encryption}, configured {wanted.encryption}")
        elif wanted.kms_key and self.kms_key and not self.kms_key.endswith(wanted.kms_key):
            found.append(f"KMS key is {self.kms_key}, configured {wanted.kms_key}")
        return found


@dataclass(frozen=True)
class Authorization:
    """A registry login from ``GetAuthorizationToken``. The password never shows in repr."""

    host: str
    username: str
    password: str = field(repr=False)
    expires_at: datetime | None = None


@dataclass(frozen=True)
class ScanFindings:
    """``DescribeImageScanFindings``' answer, every page joined: ECR's scan status and its
    description, basic findings (``imageScanFindings.findings``), enhanced ones
    (``enhancedFindings``) and ``findingSeverityCounts``, as ECR gives them."""

    status: str
    description: str
    digest: str | None
    findings: tuple[Mapping[str, Any], ...] = ()
    enhanced: tuple[Mapping[str, Any], ...] = ()
    severity_counts: Mapping[str, int] = field(default_factory=dict)
    completed_at: datetime | None = None

    @property
    def empty(self) -> bool:
        """Nothing at all beside the status: no finding, no count, no completion time (what
        an enhanced scan may answer before its findings arrive: aws/aws-sdk#289)."""
        return not (self.findings or self.enhanced or self.severity_counts or self.completed_at)


@dataclass(frozen=True)
class RegistryScanning:
    """What the registry's scanning configuration says of one repository: its scan type
    (``BASIC``, ``ENHANCED``; None when it could not be read) and the frequency of the
    first rule whose filters match the repository (None: no rule does)."""

    scan_type: str | None
    frequency: str | None = None
    problem: str | None = None  # why it could not be read: then taken as not configured

    @property
    def scans_images(self) -> bool:
        """Does a registry rule scan the repository's new images (on push, or continuously)?"""
        return self.frequency in ("SCAN_ON_PUSH", "CONTINUOUS_SCAN")

    @property
    def enhanced(self) -> bool:
        return self.scan_type == "ENHANCED" and self.scans_images


def filter_matches(pattern: str, name: str) -> bool:
    """A ``WILDCARD`` repository filter of a registry scanning rule (``*`` any characters)."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), name) is not None


class Ecr:
    """The ECR calls the release makes."""

    def __init__(self, client: ECRClient, budget: Budget | None = None) -> None:
        self._client = client
        self.budget = budget  # the time a release step may spend on AWS, when bounded

    def new_step(self) -> None:
        """What follows is a step of its own: its AWS calls get a budget of their own."""
        if self.budget is not None:
            self.budget.new_step()

    def describe_repository(self, name: str) -> Repository | None:
        with aws_errors():
            try:
                answer = self._client.describe_repositories(repositoryNames=[name])
            except self._client.exceptions.RepositoryNotFoundException:
                return None
        return _repository(answer["repositories"][0])

    def ensure_repository(self, name: str, config: RepositoryConfig) -> tuple[Repository, bool]:
        """Describe the repository, creating it when missing. Returns (repository, created)."""
        found = self.describe_repository(name)
        if found is not None:
            return found, False
        with aws_errors():
            try:
                answer = self._client.create_repository(**config.create_kwargs(name))
            except self._client.exceptions.RepositoryAlreadyExistsException:
                # Created by someone else since we looked: theirs is the one that counts.
                log.info("repository %s appeared meanwhile; using it", name)
                again = self.describe_repository(name)
                if again is None:
                    raise AwsError(
                        f"repository {name} was reported to exist but cannot be described"
                    ) from None
                return again, False
        if config.expire_untagged_days is not None:
            self.put_lifecycle_policy(name, lifecycle_policy(config.expire_untagged_days))
        return _repository(answer["repository"]), True

    def put_lifecycle_policy(self, name: str, text: str) -> None:
        with aws_errors():
            self._client.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=text)

    def lifecycle_policy(self, name: str) -> str | None:
        """The repository's lifecycle policy text; None when it has none."""
        with aws_errors():
            try:
                answer = self._client.get_lifecycle_policy(repositoryName=name)
            except self._client.exceptions.LifecyclePolicyNotFoundException:
                return None
        return answer.get("lifecyclePolicyText")

    def lifecycle_drift(self, name: str, days: int) -> str | None:
        """How the repository's lifecycle policy differs from ``days`` (None: it does not)."""
        return lifecycle_drift(self.lifecycle_policy(name), days)

    def image_scan_findings(self, name: str, digest_or_tag: str) -> ScanFindings:
        """The image's scan (``DescribeImageScanFindings``, every page), by digest
        (``sha256:...``) or tag. Raises ``ScanNotFoundError`` when ECR has no scan of it,
        ``ImageNotFoundError`` when the API does not know the image or the repository."""
        image_id = (
            {"imageDigest": digest_or_tag}
            if digest_or_tag.startswith("sha256:")
            else {"imageTag": digest_or_tag}
        )
        pages: list[Mapping[str, Any]] = []
        token: str | None = None
        exceptions = self._client.exceptions
        with aws_errors():
            while True:
                kwargs: dict[str, Any] = {"repositoryName": name, "imageId": image_id}
                if token:
                    kwargs["nextToken"] = token
                try:
                    page = self._client.describe_image_scan_findings(**kwargs)
                except exceptions.ScanNotFoundException as exc:
                    raise ScanNotFoundError(
                        f"ECR has no scan of {name}:{digest_or_tag}: {_aws_message(exc)}"
                    ) from exc
                except exceptions.ImageNotFoundException as exc:
                    raise ImageNotFoundError(
                        f"the ECR API does not know {name}:{digest_or_tag}: {_aws_message(exc)}"
                    ) from exc
                except exceptions.RepositoryNotFoundException as exc:
                    raise ImageNotFoundError(
                        f"the ECR API does not know {name}:{digest_or_tag}: repository {name} "
                        "does not exist"
                    ) from exc
                pages.append(page)
                token = page.get("nextToken")
                if not token:
                    break
        first = pages[0]
        status = first.get("imageScanStatus") or {}
        found = first.get("imageScanFindings") or {}
        return ScanFindings(
            status=str(status.get("status") or ""),
            description=str(status.get("description") or ""),
            digest=(first.get("imageId") or {}).get("imageDigest"),
            findings=tuple(
                f
                for page in pages
                for f in (page.get("imageScanFindings") or {}).get("findings") or []
            ),
            enhanced=tuple(
                f
                for page in pages
                for f in (page.get("imageScanFindings") or {}).get("enhancedFindings") or []
            ),
            severity_counts=dict(found.get("findingSeverityCounts") or {}),
            completed_at=found.get("imageScanCompletedAt"),
        )

    def registry_scanning(self, name: str) -> RegistryScanning:
        """Does the registry's scanning configuration (``GetRegistryScanningConfiguration``)
        scan the repository's images? A refusal (no ``ecr:GetRegistryScanningConfiguration``)
        is an answer too: unknown, taken as not configured, with the reason in ``problem``."""
        from botocore.exceptions import ClientError

        with aws_errors():
            try:
                answer = self._client.get_registry_scanning_configuration()
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in ("AccessDeniedException", "AccessDenied"):
                    raise
                return RegistryScanning(
                    None,
                    problem="AWS denied ecr:GetRegistryScanningConfiguration: whether the "
                    "registry scans the repository is unknown, taken as not configured",
                )
        config = answer.get("scanningConfiguration") or {}
        for rule in config.get("rules") or []:
            filters = rule.get("repositoryFilters") or []
            if any(filter_matches(str(f.get("filter", "")), name) for f in filters):
                return RegistryScanning(config.get("scanType"), rule.get("scanFrequency"))
        return RegistryScanning(config.get("scanType"))

    def delete_tag(self, name: str, tag: str) -> bool:
        """Remove a tag, not the image under its other tags (``BatchDeleteImage`` by tag);
        False when there was no such tag. Any other refusal is an ``AwsError`` line."""
        with aws_errors():
            answer = self._client.batch_delete_image(
                repositoryName=name, imageIds=[{"imageTag": tag}]
            )
        for failure in answer.get("failures", []):
            code = failure.get("failureCode", "")
            if code in ("ImageNotFound", "ImageTagDoesNotMatchDigest"):
                return False
            raise AwsError(
                f"ecr:BatchDeleteImage refused to remove tag {tag} of {name} ({code}): "
                f"{failure.get('failureReason', '')}"
            )
        return True

    def authorization(self) -> Authorization:
        """A fresh registry login. The host comes from ``proxyEndpoint``, never a template."""
        with aws_errors():
            answer = self._client.get_authorization_token()
        data = answer["authorizationData"][0]
        try:
            decoded = base64.b64decode(data["authorizationToken"]).decode()
            username, password = decoded.split(":", 1)
        except (ValueError, UnicodeDecodeError) as exc:
            raise AwsError("ECR returned an authorization token that is not user:password") from exc
        host = registry_host(data["proxyEndpoint"])
        return Authorization(host, username, password, data.get("expiresAt"))


class PlanningEcr(Ecr):
    """A dry run's ECR: it reads for real and shows the repository (and policy) it would
    create, and the tag it would delete."""

    def put_lifecycle_policy(self, name: str, text: str) -> None:
        log.info("[dry-run] ensure-repo: ecr:PutLifecyclePolicy(%s, %s)", name, text)

    def delete_tag(self, name: str, tag: str) -> bool:
        log.info("[dry-run] candidate: ecr:BatchDeleteImage(%s, imageTag=%s)", name, tag)
        return True

    def __init__(self, client: ECRClient, budget: Budget | None = None) -> None:
        super().__init__(client, budget)
        self._token: Authorization | None = None

    def authorization(self) -> Authorization:
        """One token per dry run: the plan's repository URI and its login share it."""
        if self._token is None:
            self._token = super().authorization()
        return self._token

    def ensure_repository(self, name: str, config: RepositoryConfig) -> tuple[Repository, bool]:
        found = self.describe_repository(name)
        if found is not None:
            log.info("[dry-run] ensure-repo: repository exists: %s (nothing to create)", found.uri)
            return found, False
        log.info("[dry-run] ensure-repo: ecr:CreateRepository(%s)", config.create_kwargs(name))
        if config.expire_untagged_days is not None:
            self.put_lifecycle_policy(name, lifecycle_policy(config.expire_untagged_days))
        # What the repository will be: its host is the registry the token names.
        would_be = Repository(
            name=name,
            uri=f"{self.authorization().host}/{name}",
            scan_on_push=config.scan_on_push,
            tag_mutability=config.tag_mutability,
            encryption=config.encryption,
            kms_key=config.kms_key,
            exclusions=config.exclusions,
        )
        return would_be, False


class KnownLogin(Protocol):
    """What this machine knows about the registry without asking AWS (see localstate)."""

    def host(self) -> str | None:
        """The registry host this identity's last token named, while it is valid."""

    def credential(self, host: str) -> tuple[str, str] | None:
        """The (user, password) docker holds for the host, if any."""

    def remember(self, auth: Authorization) -> None:
        """A token was fetched: remember its host and expiry (never its password)."""

    def refused(self, host: str) -> None:
        """The registry refused docker's stored login: do not reuse it."""

    def forget_registry(self) -> None:
        """The recorded host is not this identity's registry (any more): forget it."""


class EcrAccess:
    """One run's ECR: the client made on first use, its login token, a registry client.

    The registry is read with docker's own stored login when this machine knows which
    registry the identity's last token named: then a rerun asks AWS nothing at all, and
    boto3 is not even imported. A refused login (401/403) falls back to a fresh token
    without a word. The token, or the recorded host, is checked against
    ``AWS_ACCOUNT_ID`` before anything uses it.
    """

    def __init__(
        self,
        connect: Callable[[], Ecr],
        registry_for: Callable[[Authorization], Registry],
        *,
        account_id: str | None = None,
        known: KnownLogin | None = None,
    ) -> None:
        self._connect = connect
        self._registry_for = registry_for
        self._account_id = account_id
        self._known = known
        self._token: Authorization | None = None
        self._registry: tuple[Authorization, Registry] | None = None
        self._stored: Authorization | None = None  # docker's login, while the registry takes it
        self._used_host: str | None = None  # the recorded host this run has relied on

    @functools.cached_property
    def api(self) -> Ecr:
        return self._connect()

    @property
    def connected(self) -> bool:
        """Has this run made an ECR client (and so imported boto3)?"""
        return "api" in self.__dict__

    def new_step(self) -> None:
        """A release step starts: its AWS calls get a budget of their own."""
        if self.connected:
            self.api.new_step()

    def token(self, *, fresh: bool = False) -> Authorization:
        """The registry login (``GetAuthorizationToken``) for the expected account."""
        if self._token is None or fresh:
            auth = self.api.authorization()
            self._check_account(auth.host)
            if self._used_host is not None and auth.host != self._used_host:
                # The recorded registry was not these credentials' one: stop before anything
                # is pushed to a registry whose version tag this run never checked.
                if self._known is not None:
                    self._known.refused(self._used_host)
                    self._known.forget_registry()
                raise AwsError(
                    f"this run checked registry {self._used_host}, but the credentials' token "
                    f"is for {auth.host}: the AWS credentials changed since the last release "
                    "recorded it; run the release again"
                )
            self._token = auth
            self._stored = None  # a fresh token replaces docker's stored login from here on
            if self._known is not None:
                self._known.remember(auth)
        return self._token

    def host(self) -> str:
        """The registry host: the token's, else the one recorded for this identity."""
        if self._token is None and (known := self._known_host()):
            self._used_host = known
            return known
        return self.token().host

    def require_account(self) -> None:
        """With AWS_ACCOUNT_ID set, fail before touching a repository in another account."""
        if self._account_id:
            self.token()

    def stored_login(self) -> bool:
        """Will the registry be asked with docker's stored login (no AWS call before it)?"""
        if self._token is None and self._stored is None and (host := self._known_host()):
            assert self._known is not None
            stored = self._known.credential(host)
            if stored is not None:
                self._stored = Authorization(host, *stored)
                self._used_host = host
        return self._stored is not None

    def registry(self) -> Registry:
        """The registry client: with docker's stored login when usable, else the token's."""
        self.stored_login()
        auth = self._stored or self.token()
        if self._registry is None or self._registry[0] is not auth:
            self._registry = (auth, self._registry_for(auth))
        return self._registry[1]

    def read(self, request: Callable[[Registry], T]) -> T:
        """Ask the registry; if it refuses docker's stored login, fetch a token and ask again."""
        registry, stored = self.registry(), self._stored
        try:
            return request(registry)
        except RegistryAuthError:
            if stored is None or self._known is None:
                raise
            log.info("docker's stored login to %s was refused: getting a fresh token", stored.host)
            self._known.refused(stored.host)
            self._stored = None
            self._known = None
            return request(self.registry())

    def _known_host(self) -> str | None:
        host = self._known.host() if self._known is not None else None
        if host:
            self._check_account(host)
        return host

    def _check_account(self, host: str) -> None:
        if self._account_id and host.split(".", 1)[0] != self._account_id:
            raise AwsError(
                f"the login token is for registry {host}, not account {self._account_id} "
                "(AWS_ACCOUNT_ID): use credentials of that account or fix AWS_ACCOUNT_ID"
            )


class AwsTarget(Protocol):
    """What this module needs of the settings: where AWS is, and .env's AWS variables."""

    @property
    def region(self) -> str | None: ...
    @property
    def profile(self) -> str | None: ...
    @property
    def aws_env(self) -> Mapping[str, str]: ...


def aws_identity(settings: AwsTarget, environ: Mapping[str, str]) -> str:
    """A name for "these AWS credentials, in this region, at this endpoint", with no secret
    in it: what a recorded registry host is filed under. Any change to the AWS config or
    credentials files makes a new identity, so a profile pointed elsewhere is never
    mistaken for the old one."""
    env = {**environ, **settings.aws_env}  # as botocore sees it while connect makes a client
    parts = [
        settings.region or "",
        settings.profile or env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE", ""),
        env.get("AWS_ACCESS_KEY_ID", ""),  # an identifier, not a secret; hashed anyway
        env.get("AWS_ROLE_ARN", ""),
        env.get("AWS_ENDPOINT_URL_ECR") or env.get("AWS_ENDPOINT_URL", ""),
        # Container (ECS) and pod credentials name their endpoint here.
        env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI", ""),
        env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", ""),
    ]
    for key, default in (
        ("AWS_CONFIG_FILE", "~/.aws/config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
    ):
        try:
            parts.append(
                hashlib.sha256(Path(env.get(key) or default).expanduser().read_bytes()).hexdigest()
            )
        except OSError:
            parts.append("")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def registry_host(endpoint: str) -> str:
    """``https://123.dkr.ecr.r.amazonaws.com`` -> ``123.dkr.ecr.r.amazonaws.com``.

    Docker keys credentials by bare host: logging in to the URL and pushing to
    the host is a classic cause of ``no basic auth credentials``.
    """
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    return parts.netloc.rstrip("/")


def _repository(data: Mapping[str, Any]) -> Repository:
    encryption = data.get("encryptionConfiguration") or {}
    filters = data.get("imageTagMutabilityExclusionFilters") or []
    return Repository(
        name=data["repositoryName"],
        uri=data["repositoryUri"],
        scan_on_push=bool((data.get("imageScanningConfiguration") or {}).get("scanOnPush", False)),
        tag_mutability=data.get("imageTagMutability", "MUTABLE"),
        encryption=encryption.get("encryptionType", "AES256"),
        kms_key=encryption.get("kmsKey"),
        exclusions=tuple(str(f.get("filter", "")) for f in filters if isinstance(f, dict)),
    )


@contextlib.contextmanager
def aws_errors() -> Iterator[None]:
    """Turn botocore's failures into one actionable line."""
    from botocore import exceptions as bx

    try:
        yield
    except bx.NoCredentialsError as exc:
        raise AwsError(NO_CREDENTIALS) from exc
    except bx.NoRegionError as exc:
        raise SettingsError(
            "no AWS region: set AWS_REGION in .env (e.g. AWS_REGION=eu-west-1)"
        ) from exc
    except bx.ProfileNotFound as exc:
        raise SettingsError(f"{exc}: fix AWS_PROFILE or the AWS config file") from exc
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError) as exc:
        raise AwsError(
            f"cannot reach the ECR API: {exc}; check the network and AWS_ENDPOINT_URL"
        ) from exc
    except bx.ClientError as exc:
        raise _client_error(exc) from exc
    except bx.BotoCoreError as exc:
        raise AwsError(f"AWS call failed: {exc}") from exc


def _aws_message(exc: Any) -> str:
    error = exc.response.get("Error", {})
    return str(error.get("Message") or error.get("Code") or exc)


def _client_error(exc: Any) -> AwsError:
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    message = error.get("Message", "") or str(exc)
    action = f"ecr:{exc.operation_name}"
    if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation"):
        return AwsError(
            f"AWS denied {action}: {message}; "
            f"grant {action} to this identity or use another profile"
        )
    if code in (
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
    ):
        return AwsError(
            f"AWS rejected the credentials for {action} ({code}): {message}; "
            "refresh or fix the AWS credentials"
        )
    if code == "KmsException":
        return AwsError(f"{action} failed: {message}; check ECR_KMS_KEY and its key policy")
    return AwsError(f"{action} failed ({code}): {message}")


# -- wiring: the one place a boto3 client is made -------------------------------


@contextlib.contextmanager
def _overlay_environ(extra: Mapping[str, str]) -> Iterator[None]:
    """Let botocore read .env's AWS_* variables as it reads the environment, then restore.

    botocore resolves endpoint, credentials and config-file variables from
    ``os.environ`` while the session and client are made; overlaying just for
    that keeps every variable's meaning exactly boto3's own. A variable the
    environment sets empty (``AWS_ENDPOINT_URL=`` exported) counts as unset, as
    the settings take it: .env's value replaces it meanwhile, and the empty value
    is put back after.
    """
    with ENVIRON_LOCK:  # no command of ours starts meanwhile, on any thread
        before = {key: os.environ.get(key) for key in extra if not os.environ.get(key, "").strip()}
        os.environ.update({key: extra[key] for key in before})
        try:
            yield
        finally:
            for key, value in before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@dataclass(frozen=True)
class Limits:
    """How long AWS may take: botocore's connect and read timeouts (seconds) bound one
    attempt, ``attempts`` the attempts of one call (retries ``standard``: throttling and
    transient errors are retried), and ``budget`` (when set) the seconds all the calls of
    one release step may spend, retries included: no retry starts that could end past it."""

    connect_timeout: float
    read_timeout: float
    attempts: int
    budget: float | None = None


# A release's calls: an endpoint that accepts and never answers fails a step in about
# 21 s (two attempts of 10 s). The doctor's, which must answer in seconds whatever AWS does.
RELEASE_LIMITS = Limits(connect_timeout=5, read_timeout=10, attempts=MAX_ATTEMPTS, budget=25)
PROBE_LIMITS = Limits(connect_timeout=5, read_timeout=5, attempts=2)


class Budget:
    """The AWS time of one release step, kept through botocore's events: each call's time
    (its retries included) is added up, and a retry that could end past the step's budget
    is not made (botocore then raises the last error, which names the endpoint)."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = limits.budget
        self._attempt = limits.read_timeout + limits.connect_timeout
        self._clock = clock
        self._spent = 0.0
        self._call_started: float | None = None
        self._endpoint = "?"

    def new_step(self) -> None:
        self._spent = 0.0

    def attach(self, client: Any) -> None:
        self._endpoint = client.meta.endpoint_url
        events = client.meta.events
        events.register("before-call.ecr", self._started)
        events.register_first("needs-retry.ecr", self._may_retry)
        events.register("after-call.ecr", self._ended)
        events.register("after-call-error.ecr", self._ended)

    def _started(self, **_: Any) -> None:
        """A call starts: refused when even its first attempt could end past the budget."""
        if self._seconds is not None and self._spent + self._attempt > self._seconds:
            raise AwsError(
                f"AWS calls of this step took {self._spent:.0f} s of their {self._seconds:.0f} s: "
                f"the ECR API at {self._endpoint} is too slow to answer; check the network"
            )
        self._call_started = self._clock()

    def _ended(self, **_: Any) -> None:
        if self._call_started is not None:
            self._spent += self._clock() - self._call_started
            self._call_started = None

    def _may_retry(self, **_: Any) -> bool | None:
        """False (no retry: botocore's own handler is not asked) when one more attempt could
        end past the budget; None (botocore decides) otherwise."""
        if self._seconds is None or self._call_started is None:
            return None
        spent = self._spent + self._clock() - self._call_started
        return False if spent + self._attempt > self._seconds else None


@dataclass(frozen=True)
class SandboxApi:
    """The local sandbox's ECR API: its URL, and the one access key id it answers."""

    url: str
    access_key: str = field(repr=False)


@dataclass(frozen=True)
class AwsSession:
    """A boto3 session's clients and the credentials it found (None: none anywhere; their
    ``.method`` says where they came from)."""

    credentials: Any | None  # botocore.credentials.Credentials
    clients: Mapping[str, Any]


def open_session(
    region: str | None,
    profile: str | None,
    aws_env: Mapping[str, str],
    services: Sequence[str],
    limits: Limits,
    *,
    sandbox: SandboxApi | None = None,
) -> AwsSession:
    """The one place a boto3 session and its clients are made: ``.env``'s AWS_* variables
    visible to botocore meanwhile, every call bounded by ``limits``. The credentials are
    resolved here, while those variables are visible (an SSO login or a
    ``credential_process`` may fail now, as one line).

    With ``sandbox`` (the local sandbox's API) nothing of the user's AWS set-up is read or
    sent: no AWS_* variable, config or credentials file, no instance metadata, no proxy;
    the sandbox's own key and its endpoint are given explicitly."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "total_max_attempts": limits.attempts},
        connect_timeout=limits.connect_timeout,
        read_timeout=limits.read_timeout,
    )
    environ = _isolated_environ() if sandbox else _overlay_environ(aws_env)
    key = sandbox.access_key if sandbox else None  # the sandbox's own key: never the user's
    with environ, aws_errors():
        session = boto3.Session(
            aws_access_key_id=key,
            aws_secret_access_key="sandbox" if sandbox else None,
            profile_name=None if sandbox else profile,
            region_name=region,
        )
        try:
            make: Callable[..., Any] = session.client  # typed per literal service name
            url = sandbox.url if sandbox else None
            clients = {name: make(name, config=config, endpoint_url=url) for name in services}
        except ValueError as exc:  # botocore's word for a malformed endpoint URL
            raise SettingsError(f"{exc}: check AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_ECR") from exc
        credentials = session.get_credentials()
        if credentials is not None:
            credentials.get_frozen_credentials()
    return AwsSession(credentials, clients)


@contextlib.contextmanager
def _isolated_environ() -> Iterator[None]:
    """botocore sees none of the user's AWS set-up while a sandbox session is made: every
    AWS_* variable is hidden, the config and credentials files are empty, and instance
    metadata is off; the environment is restored after."""
    with ENVIRON_LOCK:  # no command of ours starts meanwhile, on any thread
        saved = {key: value for key, value in os.environ.items() if key.startswith("AWS_")}
        for key in saved:
            del os.environ[key]
        proxies = {key: value for key, value in os.environ.items() if _is_proxy_variable(key)}
        for key in proxies:
            del os.environ[key]
        os.environ.update(
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            AWS_EC2_METADATA_DISABLED="true",
            NO_PROXY="*",  # botocore settles a client's proxies when it makes it: none here
        )
        try:
            yield
        finally:
            gone = [key for key in os.environ if key.startswith("AWS_") or _is_proxy_variable(key)]
            for key in gone:
                del os.environ[key]
            os.environ.update(saved)
            os.environ.update(proxies)


def _is_proxy_variable(key: str) -> bool:
    return key.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def connect(
    settings: AwsTarget,
    kind: type[Ecr] = Ecr,
    limits: Limits = RELEASE_LIMITS,
    *,
    sandbox: SandboxApi | None = None,
) -> Ecr:
    """The run's one ECR client (``kind`` is ``Ecr``, or ``PlanningEcr`` for a dry run), of
    AWS or, with ``sandbox`` (its API URL), of the local sandbox. No credentials anywhere
    is an error here, before anything runs."""
    session = open_session(
        settings.region, settings.profile, settings.aws_env, ["ecr"], limits, sandbox=sandbox
    )
    if session.credentials is None:
        raise AwsError(NO_CREDENTIALS)
    budget = Budget(limits)
    budget.attach(session.clients["ecr"])
    return kind(session.clients["ecr"], budget)


# botocore's Credentials.method, in words.
CREDENTIAL_SOURCES: Mapping[str, str] = {
    "env": "environment variables (AWS_ACCESS_KEY_ID)",
    "shared-credentials-file": "the shared credentials file",
    "config-file": "the AWS config file",
    "sso": "IAM Identity Center (SSO)",
    "login": "an `aws login` session",
    "assume-role": "a role assumed from the profile (role_arn)",
    "assume-role-with-web-identity": "a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE)",
    "custom-process": "the profile's credential_process",
    "iam-role": "the EC2 instance role (instance metadata)",
    "container-role": "the container role (ECS/EKS credentials endpoint)",
    "ec2-credentials-file": "the EC2 credentials file",
    "boto-config": "a boto config file",
    "explicit": "keys given to the session",
}
_PROFILE_METHODS = ("shared-credentials-file", "config-file", "sso", "login", "assume-role")


def credential_source(credentials: Any, profile: str | None, dotenv_keys: str | None) -> str:
    """Where botocore found the credentials, in words: ``dotenv_keys`` names the settings
    file when the keys came from it; ``profile`` is the profile in effect, if any."""
    method = str(getattr(credentials, "method", "") or "")
    words = CREDENTIAL_SOURCES.get(method, f"botocore's {method or 'unnamed'} provider")
    if method == "env":
        return f"AWS_ACCESS_KEY_ID in {dotenv_keys}" if dotenv_keys else words
    if method in (*_PROFILE_METHODS, "custom-process"):
        return f"{words}, profile {profile or 'default'}"
    return words


@dataclass(frozen=True)
class CallerIdentity:
    """STS's answer to GetCallerIdentity: the identity, or one line saying why not; and
    AWS's clock (the answer's HTTP Date, a refusal's too) with the local time it came."""

    identity: Mapping[str, Any] | None
    error: str | None
    aws_date: datetime | None
    local_date: datetime | None  # None: AWS gave no answer at all


def caller_identity(sts: Any, now: Callable[[], datetime]) -> CallerIdentity:
    """``sts:GetCallerIdentity``, bounded by the client's limits, as a value."""
    from botocore import exceptions as bx

    unreachable = (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError)
    try:
        with aws_errors():
            try:
                answer = sts.get_caller_identity()
            except unreachable as exc:
                raise AwsError(f"cannot reach AWS STS: {exc}") from exc
            except bx.ClientError as exc:
                error = exc.response.get("Error", {})
                code, message = error.get("Code", ""), error.get("Message", "") or str(exc)
                refused = f"AWS refused sts:GetCallerIdentity ({code}): {message}"
                return CallerIdentity(None, refused, http_date(exc.response), now())
    except AwsError as exc:
        return CallerIdentity(None, exc.message, None, None)
    return CallerIdentity(answer, None, http_date(answer), now())


def http_date(response: Mapping[str, Any]) -> datetime | None:
    """The HTTP ``Date`` header of an AWS answer (AWS's clock), when it has one."""
    from email.utils import parsedate_to_datetime

    headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    date = headers.get("date")
    try:
        parsed = parsedate_to_datetime(date) if isinstance(date, str) else None
    except (TypeError, ValueError):
        return None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


@dataclass(frozen=True)
class AwsProbe:
    """A read-only look at AWS, for ``inv doctor``: the credentials botocore found (None
    when it found none; ``.method`` says where), the ECR calls, and an STS client."""

    credentials: Any | None  # botocore.credentials.Credentials
    ecr: Ecr
    sts: Any  # an STS client: GetCallerIdentity only


def connect_probe(
    region: str,
    profile: str | None,
    aws_env: Mapping[str, str],
    *,
    timeout: float = PROBE_LIMITS.read_timeout,
    attempts: int = PROBE_LIMITS.attempts,
    sandbox: SandboxApi | None = None,
) -> AwsProbe:
    """ECR and STS clients from :func:`open_session`, every call bounded by ``timeout``
    seconds and ``attempts``. Finding no credentials is not an error: the probe says so."""
    limits = Limits(timeout, timeout, attempts)
    session = open_session(region, profile, aws_env, ["ecr", "sts"], limits, sandbox=sandbox)
    return AwsProbe(session.credentials, Ecr(session.clients["ecr"]), session.clients["sts"])
