"""The settings' declaration agrees with everything made or written from it.

``Settings``' attributes, the tasks' flags and needs, ``.env.example``, the README's
settings table and the release workflow's ``env:`` each name every declared setting,
with its default: adding a setting is one declaration, and these tests say what else
must mention it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecr_release.cli.session import SHARED_FLAGS, Flags, flag_help
from ecr_release.model.settings import (
    DECLARED,
    FLAGS,
    KEYS,
    SETTINGS,
    TASK_NEEDS,
    Setting,
    Settings,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[3]
# Settings' attributes that no setting fills: they say where the values came from.
NOT_DECLARED = {"aws_env", "env_file", "warnings", "service", "build_args"}


def test_each_settings_attribute_is_one_declared_setting() -> None:
    attributes = [f.name for f in dataclasses.fields(Settings)]
    declared = [s.attr for s in SETTINGS]
    assert len(declared) == len(set(declared)) and len(SETTINGS) == len(DECLARED)
    assert set(attributes) == set(declared) | NOT_DECLARED
    assert not set(declared) & NOT_DECLARED


def _conforms(value: object, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, arg) for arg in typing.get_args(hint))
    if origin is tuple:
        (item, _) = typing.get_args(hint)
        return isinstance(value, tuple) and all(_conforms(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, float)
    return isinstance(value, origin or hint)


def test_each_value_has_its_attributes_type(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    hints = typing.get_type_hints(Settings)
    flags: dict[str, str | bool | None] = {"version": "v1", "tags": "latest"}
    every = {
        "AWS_REGION": "eu-west-1",
        "AWS_PROFILE": "dev",
        "AWS_ACCOUNT_ID": "123456789012",
        "IMAGE_NAME": "img",
        "BASE_IMAGE": "python:3.12-slim",
        "ECR_ENCRYPTION": "KMS",
        "ECR_KMS_KEY": "alias/x",
        "ECR_TAG_MUTABILITY": "IMMUTABLE_WITH_EXCLUSION",
        "ECR_TAG_MUTABILITY_EXCLUSIONS": "latest",
        "SECRET_SCAN_ALLOW": "a.pem",
        "ECR_EXTRA_TAGS": "stable",
        "ECR_EXPIRE_UNTAGGED_DAYS": "7",
        "SMOKE_TIMEOUT": "30",
        "SCAN_FAIL_ON": "high",
        "SCAN_IGNORE": "CVE-2024-1234",
        "REQUIRE_CLEAN": "true",
    }
    assert set(every) | {k for k in KEYS if DECLARED[k].default} >= set(KEYS)
    for environ in ({"AWS_REGION": "eu-west-1"}, every):
        found = load_settings(flags, task="release", environ=environ, root=tmp_path)
        for name, hint in hints.items():
            assert _conforms(getattr(found, name), hint), (name, getattr(found, name))


def test_each_need_is_some_tasks_and_each_tasks_need_is_declared() -> None:
    needs = {s.need for s in SETTINGS if s.need is not None}
    assert set().union(*TASK_NEEDS.values()) == needs


def _tasks_module() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("project_tasks", ROOT / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_task_takes_the_shared_flags_and_declares_its_needs() -> None:
    tasks = _tasks_module().ns.tasks
    assert set(tasks) == set(TASK_NEEDS)
    for name, task in tasks.items():
        parameters = set(inspect.signature(task.body).parameters) - {"c"}
        if name == "sandbox":  # it manages the sandbox: no release setting applies
            assert parameters == {"action", "env_file"} == set(task.help)
            continue
        assert parameters >= {*SHARED_FLAGS, "env_file"}, name
        assert set(task.help) == parameters, name  # every flag has its help
        declared = parameters & set(FLAGS)
        for flag in declared:
            assert task.help[flag] == FLAGS[flag].flag_help
        # A flag-only input (--version, --tag) is on a task exactly when the task needs it.
        for setting in SETTINGS:
            if not setting.env and setting.flag is not None and setting.need is not None:
                assert (setting.flag.name in parameters) == (setting.need in TASK_NEEDS[name])


def test_the_flags_set_their_declared_settings() -> None:
    given = Flags(version="v1", also_tag="latest", no_smoke=True, region="eu-west-1")
    assert given.settings() == {
        "version": "v1",
        "ECR_EXTRA_TAGS": "latest",
        "SMOKE_TEST": "false",
        "AWS_REGION": "eu-west-1",
        "AWS_PROFILE": None,
        "ECR_REPOSITORY": None,
        "SANDBOX": None,
    }
    assert Flags(sandbox=True).settings()["SANDBOX"] == "true"
    assert Flags(no_smoke=False).settings()["SMOKE_TEST"] is None
    with pytest.raises(TypeError, match="force"):
        Flags(force=True)
    assert flag_help("version", "json") == {
        "version": "image tag to release, e.g. v1 or 1.4.2 (required)",
        "json": "print one JSON document on stdout (docker's progress and the log go to stderr)",
        "region": "AWS region (overrides AWS_REGION)",
        "profile": "AWS profile (overrides AWS_PROFILE)",
        "repository": "ECR repository name (overrides ECR_REPOSITORY)",
        "sandbox": "run against the local ECR sandbox on this machine: no AWS account, nothing "
        "sent to AWS (SANDBOX=true)",
        "env_file": "settings file to read (default: .env)",
    }


def _default_cell(setting: Setting) -> str:
    if setting.default is not None:
        return f"`{setting.default}`"
    return f"as `{setting.same_as}`" if setting.same_as else "—"


def test_the_env_example_sets_every_setting_to_its_default_or_leaves_it_empty() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    found = dict(line.split("=", 1) for line in lines if re.match(r"[A-Za-z_][A-Za-z0-9_]*=", line))
    assert list(found) == list(dict.fromkeys(found))  # no key twice
    assert set(found) == set(KEYS)
    for key, value in found.items():
        setting = DECLARED[key]
        assert value in (setting.default or setting.example or "", ""), key
        if setting.default is not None:
            assert value == setting.default, key


def test_the_readme_settings_table_lists_every_setting_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| `")
    ]
    table = {row[0].strip("`"): row[1] for row in rows}
    assert len(table) == len(rows)
    assert set(table) == set(KEYS)
    for key, cell in table.items():
        assert cell == _default_cell(DECLARED[key]), key


def test_the_release_workflow_sets_every_repository_setting_from_its_variable() -> None:
    workflow = yaml.safe_load((ROOT / ".github/workflows/release.yml").read_text())
    # The workflow's own env: every job (plan, release, promote) runs the suite.
    env = workflow["env"]
    wanted = {s.key for s in SETTINGS if s.in_workflow}
    assert set(env) == wanted
    for key, value in env.items():
        assert value == f"${{{{ vars.{key} }}}}", key
    # ...and deploy/README.md names each of them as a repository variable.
    deploy = (ROOT / "deploy/README.md").read_text()
    assert [key for key in sorted(wanted) if f"`{key}`" not in deploy] == []
