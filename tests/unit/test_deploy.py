"""deploy/ and .github/workflows/: the AWS policies and the workflows keep their shape.

The role's policy grants exactly the ECR actions the suite uses, on one repository
(the login token excepted); the trust policy lets only a repository's ``v*`` tags
assume the role; the workflows pin every action by commit and never expand an
expression inside a script; the release workflow plans (``inv plan``), releases each
planned service in a matrix leg of its own (``inv release --service``) and then moves
the moving tags of every service at once (``inv promote``).
These are file checks: nothing here talks to AWS or GitHub (moto stands in for
IAM's policy syntax check).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from ecr_release.model.settings import SETTINGS
from ecr_release.outside.ecr import ACCOUNT_LEVEL_ACTIONS, IAM_ACTIONS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
WORKFLOWS = ROOT / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yml"
CI = WORKFLOWS / "ci.yml"

# Every ECR action the suite needs: the library is the source of truth.
SUITE_ECR_ACTIONS = frozenset(IAM_ACTIONS)
# IAM cannot scope these to a repository: the login token, the registry's scanning rules.
LOGIN_ACTION = "ecr:GetAuthorizationToken"
assert LOGIN_ACTION in ACCOUNT_LEVEL_ACTIONS <= SUITE_ECR_ACTIONS
REPOSITORY_ARN = "arn:aws:ecr:REGION:ACCOUNT:repository/REPOSITORY"

OIDC_HOST = "token.actions.githubusercontent.com"
TRUST_PRINCIPAL = {"Federated": f"arn:aws:iam::ACCOUNT:oidc-provider/{OIDC_HOST}"}
TRUST_CONDITION = {
    "StringEquals": {f"{OIDC_HOST}:aud": "sts.amazonaws.com"},
    "StringLike": {f"{OIDC_HOST}:sub": "repo:ORG/REPO:ref:refs/tags/v*"},
}

# `uses: owner/repo[/path]@<commit> # v1.2.3`
PINNED_USES = re.compile(r"uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(?:\.\d+)*\s*$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses\s*:")
VERSION_EXPR = "${{ inputs.version || github.ref_name }}"
SERVICE_EXPR = "${{ matrix.service }}"
MATRIX_EXPR = "${{ fromJSON(needs.plan.outputs.matrix) }}"
MOVING_TAGS_EXPR = "${{ vars.RELEASE_MOVING_TAGS }}"
# The release legs run when the plan found something to release; the tags move after
# every leg succeeded, or when none ran because nothing needed releasing.
RELEASE_IF = "needs.plan.outputs.count != '0'"
PROMOTE_IF = (
    "always() && vars.RELEASE_MOVING_TAGS != '' && needs.plan.result == 'success'"
    " && (needs.release.result == 'success' || needs.release.result == 'skipped')"
)
# What runs the suite in a workflow step.
SUITE = "uv run --no-dev inv "


# ------------------------------------------------------------------ helpers


def load_json(name: str) -> dict[str, Any]:
    data = json.loads((DEPLOY / name).read_text())
    assert isinstance(data, dict), f"{name} is not a JSON object"
    return data


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    found = policy["Statement"]
    return [found] if isinstance(found, dict) else list(found)


def actions(statement: dict[str, Any]) -> list[str]:
    return as_list(statement["Action"])


def load_workflow(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name} is not a YAML mapping"
    # YAML 1.1 reads the key `on` as the boolean true.
    if True in data:
        data["on"] = data.pop(True)
    return data


def jobs(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = workflow["jobs"]
    assert isinstance(found, dict) and found
    return found


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in jobs(workflow).values() for step in job.get("steps", [])]


def uses_of(workflow: dict[str, Any]) -> list[str]:
    reusable = [job["uses"] for job in jobs(workflow).values() if "uses" in job]
    return reusable + [step["uses"] for step in steps(workflow) if "uses" in step]


def steps_using(workflow: dict[str, Any], action: str) -> list[dict[str, Any]]:
    """Each job's one step using ACTION (every job of the workflow has one)."""
    found = []
    for name, job in jobs(workflow).items():
        using = [s for s in job.get("steps", []) if s.get("uses", "").startswith(f"{action}@")]
        assert len(using) == 1, f"{name}: expected one {action} step, found {len(using)}"
        found += using
    return found


def job_running(workflow: dict[str, Any], task: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The one job (its id and itself) with a step running ``inv TASK``, and that step."""
    found = [
        (name, job, step)
        for name, job in jobs(workflow).items()
        for step in job.get("steps", [])
        if f"{SUITE}{task} " in step.get("run", "")
    ]
    assert len(found) == 1, f"expected one step running inv {task}, found {len(found)}"
    return found[0]


def env_var(run: str, flag: str) -> str:
    """The variable a script passes as ``--FLAG "$VAR"``."""
    match = re.search(rf'{flag} "\$(\w+)"', run)
    assert match, f'{flag} "$VAR" not in {run}'
    return match.group(1)


def condition(job: dict[str, Any]) -> str:
    """A job's ``if:``, without its optional ``${{ }}`` and with single spaces."""
    text = " ".join(str(job["if"]).split())
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2].strip()
    return text


def needs(job: dict[str, Any]) -> set[str]:
    return set(as_list(job.get("needs", [])))


def filled(text: str) -> str:
    """A policy with its placeholders filled as deploy/README.md shows."""
    for placeholder, value in (
        ("REGION", "eu-west-1"),
        ("ACCOUNT", "123456789012"),
        ("REPOSITORY", "widget-server"),
        ("ORG/REPO", "my-org/ecr-release"),
    ):
        text = text.replace(placeholder, value)
    return text


WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))
WORKFLOW_IDS = [path.name for path in WORKFLOW_FILES]


# ------------------------------------------------------------------ deploy/


@pytest.mark.parametrize("name", ["iam-policy.json", "trust-policy.json"])
def test_policies_are_iam_documents_that_only_allow(name: str) -> None:
    policy = load_json(name)

    assert policy["Version"] == "2012-10-17"
    assert statements(policy)
    for statement in statements(policy):
        assert statement["Effect"] == "Allow"
        assert not {"NotAction", "NotResource", "NotPrincipal"} & statement.keys()


def test_policy_lists_exactly_the_actions_the_suite_uses() -> None:
    listed = [action for s in statements(load_json("iam-policy.json")) for action in actions(s)]

    assert len(listed) == len(set(listed)), f"listed twice: {listed}"
    assert set(listed) - SUITE_ECR_ACTIONS == set(), "the suite does not use these"
    assert SUITE_ECR_ACTIONS - set(listed) == set(), "the suite needs these too"


def test_policy_grants_no_wildcard_action() -> None:
    for statement in statements(load_json("iam-policy.json")):
        for action in actions(statement):
            assert "*" not in action and "?" not in action, action


def test_only_the_account_level_actions_are_granted_on_every_resource() -> None:
    account: list[dict[str, Any]] = []
    scoped: list[dict[str, Any]] = []
    for statement in statements(load_json("iam-policy.json")):
        (account if set(actions(statement)) & ACCOUNT_LEVEL_ACTIONS else scoped).append(statement)

    # One statement each: nothing else may share their Resource '*'.
    assert sorted(a for s in account for a in actions(s)) == sorted(ACCOUNT_LEVEL_ACTIONS)
    for statement in account:
        assert len(actions(statement)) == 1
        assert statement["Resource"] == "*"
        assert "Condition" not in statement
    assert scoped
    for statement in scoped:
        assert as_list(statement["Resource"]) == [REPOSITORY_ARN]
        assert "Condition" not in statement


def test_policy_passes_iam_syntax_checks_once_filled() -> None:
    text = (DEPLOY / "iam-policy.json").read_text()
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        iam.create_policy(PolicyName="ecr-release", PolicyDocument=filled(text))
        # The check is real: a misspelt key is refused.
        broken = filled(text).replace('"Resource"', '"Resources"')
        with pytest.raises(iam.exceptions.MalformedPolicyDocumentException):
            iam.create_policy(PolicyName="broken", PolicyDocument=broken)


def test_trust_policy_lets_only_release_tags_of_one_repository_assume_the_role() -> None:
    (statement,) = statements(load_json("trust-policy.json"))

    assert statement["Principal"] == TRUST_PRINCIPAL
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == TRUST_CONDITION


def test_filling_the_placeholders_leaves_none_and_keeps_json() -> None:
    for name in ("iam-policy.json", "trust-policy.json"):
        text = filled((DEPLOY / name).read_text())
        json.loads(text)
        assert not re.search(r"REGION|ACCOUNT|REPOSITORY|ORG/REPO", text), name


def test_deploy_readme_explains_every_action() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for action in SUITE_ECR_ACTIONS:
        assert f"| `{action}` |" in readme, f"{action} has no row in deploy/README.md"


def test_the_readme_prerequisites_name_every_action() -> None:
    readme = (ROOT / "README.md").read_text()
    prerequisites = readme.split("## Prerequisites", 1)[1].split("\n## ", 1)[0]
    for action in SUITE_ECR_ACTIONS:
        assert f"`{action}`" in prerequisites, f"README Prerequisites do not name {action}"


# ------------------------------------------------------------------ workflows


def test_both_workflows_exist() -> None:
    assert {"release.yml", "ci.yml"} <= set(WORKFLOW_IDS)


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=WORKFLOW_IDS)
def test_every_action_is_pinned_by_commit_with_its_version(path: Path) -> None:
    lines = [line for line in path.read_text().splitlines() if USES_LINE.match(line)]

    assert len(lines) == len(uses_of(load_workflow(path))), "a uses: the YAML parse missed"
    for line in lines:
        assert PINNED_USES.search(line), f"not pinned to a commit with '# vX.Y.Z': {line.strip()}"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=WORKFLOW_IDS)
def test_no_expression_is_expanded_inside_a_script(path: Path) -> None:
    for step in steps(load_workflow(path)):
        if "run" in step:
            assert "${{" not in step["run"], f"pass it through env: {step['run']}"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=WORKFLOW_IDS)
def test_checkout_keeps_no_credentials_and_every_job_has_a_timeout(path: Path) -> None:
    workflow = load_workflow(path)

    for checkout in steps_using(workflow, "actions/checkout"):
        assert checkout["with"]["persist-credentials"] is False
    for job in jobs(workflow).values():
        assert isinstance(job["timeout-minutes"], int)


def test_release_runs_on_v_tags_and_by_hand_with_a_version() -> None:
    on = load_workflow(RELEASE)["on"]

    assert on["push"] == {"tags": ["v*"]}
    version = on["workflow_dispatch"]["inputs"]["version"]
    assert version["required"] is True
    assert version["type"] == "string"


def test_release_job_may_mint_an_oidc_token_and_read_the_code_only() -> None:
    workflow = load_workflow(RELEASE)

    assert workflow.get("permissions", {}) == {}
    for job in jobs(workflow).values():
        assert job["permissions"] == {"id-token": "write", "contents": "read"}


def test_release_gets_credentials_from_the_role_not_from_secrets() -> None:
    workflow = load_workflow(RELEASE)
    for credentials in steps_using(workflow, "aws-actions/configure-aws-credentials"):
        assert credentials["with"] == {
            "role-to-assume": "${{ vars.AWS_ROLE_ARN }}",
            "aws-region": "${{ vars.AWS_REGION }}",
        }
    assert "secrets." not in RELEASE.read_text()


def test_plan_job_exposes_the_matrix_and_its_count_from_its_step() -> None:
    _, job, step = job_running(load_workflow(RELEASE), "plan")

    run = step["run"]
    assert "--json" in run.split()
    assert step["env"][env_var(run, "inv plan --version")] == VERSION_EXPR
    assert job["outputs"] == {
        "matrix": f"${{{{ steps.{step['id']}.outputs.matrix }}}}",
        "count": f"${{{{ steps.{step['id']}.outputs.count }}}}",
    }


def test_release_runs_the_suite_per_service_with_json_and_the_version_through_env() -> None:
    _, job, step = job_running(load_workflow(RELEASE), "release")

    run = step["run"]
    assert "inv release --version" in run
    assert "--json" in run.split()
    assert step["env"][env_var(run, "inv release --version")] == VERSION_EXPR
    assert step["env"][env_var(run, "--service")] == SERVICE_EXPR
    # The job's outputs, as before services (exact for a project with one service), and
    # its old name when no service is declared: downstream `needs.release.outputs` and
    # required checks keep working.
    assert job["outputs"] == {
        "image": f"${{{{ steps.{step['id']}.outputs.image }}}}",
        "digest": f"${{{{ steps.{step['id']}.outputs.digest }}}}",
    }
    assert job["name"] == "Release ${{ matrix.service || 'to ECR' }}"


def test_release_runs_one_leg_per_planned_service_and_only_when_there_is_one() -> None:
    workflow = load_workflow(RELEASE)
    plan, _, _ = job_running(workflow, "plan")
    _, job, _ = job_running(workflow, "release")

    assert plan == "plan"  # the name the matrix and the guard read
    assert needs(job) == {plan}
    assert condition(job) == RELEASE_IF
    # One failed service cancels no other.
    assert job["strategy"] == {"matrix": MATRIX_EXPR, "fail-fast": False}
    assert "matrix.service" in job["name"]


def test_promote_moves_the_tags_of_every_service_once_after_every_leg() -> None:
    workflow = load_workflow(RELEASE)
    plan, _, _ = job_running(workflow, "plan")
    release, _, _ = job_running(workflow, "release")
    _, job, step = job_running(workflow, "promote")

    assert release == "release"  # the name the guard reads
    assert needs(job) == {plan, release}
    assert condition(job) == PROMOTE_IF
    run = step["run"]
    assert step["env"][env_var(run, "inv promote --version")] == VERSION_EXPR
    assert step["env"][env_var(run, "--tag")] == MOVING_TAGS_EXPR
    # No per-service promotion: one step moves every service's tags.
    assert "--service" not in run and "matrix" not in job


def test_release_settings_come_from_repository_variables_of_the_same_name() -> None:
    env = load_workflow(RELEASE)["env"]

    for key, value in env.items():
        assert value == f"${{{{ vars.{key} }}}}", key
    # Which settings: their declaration says (the credentials step sets AWS_REGION; a CI
    # runner has no AWS profiles).
    assert set(env) == {setting.key for setting in SETTINGS if setting.in_workflow}
    assert {"AWS_REGION", "AWS_PROFILE"}.isdisjoint(env)


def test_every_job_that_runs_the_suite_has_the_settings() -> None:
    workflow = load_workflow(RELEASE)
    wanted = {s.key: f"${{{{ vars.{s.key} }}}}" for s in SETTINGS if s.in_workflow}
    running = {
        name: [step for step in job.get("steps", []) if SUITE in step.get("run", "")]
        for name, job in jobs(workflow).items()
    }

    assert {name for name, found in running.items() if found} == {"plan", "release", "promote"}
    for name, found in running.items():
        for step in found:
            # A step sees the workflow's env, then its job's, then its own.
            env = {**workflow.get("env", {}), **jobs(workflow)[name].get("env", {})}
            env |= step.get("env", {})
            assert {key: env.get(key) for key in wanted} == wanted, name


def test_two_releases_of_one_version_queue_and_none_is_cancelled() -> None:
    concurrency = load_workflow(RELEASE)["concurrency"]

    assert VERSION_EXPR in concurrency["group"]
    assert concurrency["cancel-in-progress"] is False


def test_ci_runs_the_ci_script_as_root_and_may_only_read() -> None:
    workflow = load_workflow(CI)
    runs = [step["run"] for step in steps(workflow) if "run" in step]

    assert workflow["permissions"] == {"contents": "read"}
    assert set(workflow["on"]) == {"push", "pull_request"}
    assert any(re.search(r"\bsudo\b.*\bbash \.ci/run\b", run) for run in runs), runs


def test_the_ci_script_lints_the_workflows() -> None:
    script = (ROOT / ".ci" / "run").read_text()

    assert "uv run --group dev actionlint" in script
    assert "uv run --group dev zizmor --offline .github/workflows" in script
    assert "check-jsonschema --builtin-schema vendor.github-workflows" in script
