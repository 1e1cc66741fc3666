"""`.env.example` against every settings class there is (pure: no server).

test_compose.py already holds the file to the classes it knows (APP_SERVICES' Settings and
the commands' COMMAND_SETTINGS): each service's setting documented, no name nobody reads
(READ_OUTSIDE_SETTINGS: the few compose or the local stack read), every stated value the
code's default. This file makes sure those are all the classes: it finds every
pydantic-settings class in libs/ and services/ from the source, so a new one cannot be
forgotten; it checks the commands' settings are documented too, that a field's environment
variable is its name (no prefix, no alias), and the file's own convention (its header)."""

from __future__ import annotations

import ast
import importlib
import re
from functools import cache
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from tests.deploy.common import (
    APP_SERVICES,
    COMMAND_SETTINGS,
    ENV_EXAMPLE,
    ROOT,
    env_example,
    env_example_unset,
    settings_class,
    settings_vars,
)

#: Settings classes no deployment configures on their own, with the reason. Empty: every
#: class is a service's or a command's, or one they are made of.
NOT_CONFIGURED: dict[str, str] = {}

#: A comment line that reads like a setting with a space after the `#`: ambiguous.
PROSE_LIKE_A_SETTING = re.compile(r"#\s+[A-Z][A-Z0-9_]*=")


def source_modules() -> list[tuple[str, Path]]:
    """(module name, file) of every module of the libraries and services."""
    modules = []
    packages = [*ROOT.glob("libs/*/*/__init__.py"), *ROOT.glob("services/*/*/__init__.py")]
    for package in sorted(packages):
        for path in sorted(package.parent.rglob("*.py")):
            if path.name == "__main__.py":
                continue  # running it is what importing it does
            parts = path.relative_to(package.parent.parent).with_suffix("").parts
            modules.append((".".join(parts).removesuffix(".__init__"), path))
    return modules


@cache
def settings_classes() -> dict[str, type[BaseSettings]]:
    """Every BaseSettings subclass defined in libs/ and services/, by `module:Class`.

    Found from the source (a class statement whose bases include a name ending in
    `Settings`), then imported to be sure it is one."""
    found: dict[str, type[BaseSettings]] = {}
    for module, path in source_modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and any(_named_settings(b) for b in node.bases):
                cls = getattr(importlib.import_module(module), node.name)
                if isinstance(cls, type) and issubclass(cls, BaseSettings):
                    found[f"{module}:{node.name}"] = cls
    return found


def _named_settings(base: ast.expr) -> bool:
    name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
    return isinstance(name, str) and name.endswith("Settings")


def configured() -> list[type[BaseSettings]]:
    """The classes deployments fill from the environment: services' and commands'."""
    classes = [settings_class(service) for service in APP_SERVICES]
    return classes + [settings_class(*command) for command in COMMAND_SETTINGS]


def test_the_search_finds_the_known_classes() -> None:
    found = set(settings_classes().values())
    assert set(configured()) <= found
    assert len(found) >= 12  # BrokerSettings, S3Settings, ... : the search works


def test_every_settings_class_is_configured_or_part_of_one() -> None:
    classes = configured()
    for name, cls in settings_classes().items():
        if cls in classes or name in NOT_CONFIGURED:
            continue
        assert any(issubclass(used, cls) for used in classes), (
            f"{name} is neither a service's or command's settings (tests/deploy/common.py) "
            "nor a part of one: its variables would not be checked against .env.example"
        )
    stale = set(NOT_CONFIGURED) - set(settings_classes())
    assert not stale, f"NOT_CONFIGURED lists classes that are gone: {sorted(stale)}"


def test_a_fields_variable_is_its_name() -> None:
    for name, cls in settings_classes().items():
        assert not cls.model_config.get("env_prefix"), f"{name}: an env_prefix renames all"
        assert not cls.model_config.get("case_sensitive"), f"{name}: case-sensitive names"
        for field_name, field in cls.model_fields.items():
            aliases = (field.alias, field.validation_alias)
            assert aliases == (None, None), f"{name}.{field_name}: an alias renames it"


@pytest.mark.parametrize(("service", "cls"), COMMAND_SETTINGS)
def test_every_command_setting_is_documented(service: str, cls: str) -> None:
    missing = settings_vars(service, cls) - set(env_example())
    assert not missing, f"{cls} reads {sorted(missing)}, not in .env.example"


def test_the_files_convention() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    ambiguous = [line for line in lines if PROSE_LIKE_A_SETTING.match(line.strip())]
    assert not ambiguous, f"write `#NAME=value` (documented, unset) or prose: {ambiguous}"
    header = "\n".join(lines[:12])
    assert "`#NAME=value`" in header, "the header states the convention"
    assert env_example_unset() <= set(env_example())
