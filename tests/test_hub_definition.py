"""The Meltano Hub definition of tap-qualys mirrors `tap-qualys --about --format=json`."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

from tap_qualys.tap import TapQualys
from tests.test_meltano_yml import expected_kind, plugin_about

REPO = Path(__file__).resolve().parent.parent
# The Hub's layout: _data/meltano/extractors/<name>/<variant>.yml
DEFINITIONS = sorted((REPO / "plugins" / "extractors" / "tap-qualys").glob("*.yml"))
# Top-level keys and setting keys the Hub's schemas accept (meltano/hub schemas/plugin_definitions
# /extractors.schema.json and schemas/common/base_setting.schema.json).
HUB_KEYS = {
    "name",
    "pip_url",
    "variant",
    "namespace",
    "label",
    "description",
    "executable",
    "settings",
    "docs",
    "repo",
    "logo_url",
    "hidden",
    "settings_group_validation",
    "commands",
    "capabilities",
    "metadata",
    "schema",
    "select",
    "maintenance_status",
    "domain_url",
    "keywords",
    "requires",
    "definition",
    "next_steps",
    "settings_preamble",
    "usage",
    "prereq",
    "quality",
}
SETTING_KEYS = {
    "name",
    "aliases",
    "label",
    "value",
    "placeholder",
    "kind",
    "description",
    "tooltip",
    "documentation",
    "env",
    "value_processor",
    "value_post_processor",
    "oauth",
    "options",
    "docs",
    "hidden",
    "sensitive",
}
HUB_KINDS = {
    "oauth",
    "hidden",
    "password",
    "date_iso8601",
    "file",
    "email",
    "integer",
    "options",
    "object",
    "array",
    "boolean",
    "string",
    "decimal",
}


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    assert len(DEFINITIONS) == 1, f"expected one variant file, found {DEFINITIONS}"
    return dict(yaml.safe_load(DEFINITIONS[0].read_text()))


@pytest.fixture(scope="module")
def about() -> dict[str, Any]:
    return plugin_about("tap-qualys")


def test_shape(definition: dict[str, Any]) -> None:
    assert set(definition) <= HUB_KEYS
    for key in ("name", "variant", "namespace", "pip_url", "repo", "capabilities", "settings"):
        assert definition.get(key), key
    assert definition["name"] == "tap-qualys"
    assert definition["namespace"] == "tap_qualys"
    assert DEFINITIONS[0].stem == definition["variant"]
    assert definition["maintenance_status"] in {
        "active",
        "beta",
        "development",
        "inactive",
        "unknown",
    }
    for setting in definition["settings"]:
        assert set(setting) <= SETTING_KEYS, setting["name"]
        assert setting["kind"] in HUB_KINDS, setting["name"]


def test_description_is_the_tap_docstring(definition: dict[str, Any]) -> None:
    assert definition["description"] == " ".join((inspect.getdoc(TapQualys) or "").split())


def test_capabilities(definition: dict[str, Any], about: dict[str, Any]) -> None:
    assert sorted(definition["capabilities"]) == sorted(about["capabilities"])


def test_every_setting_with_its_kind_and_sensitivity(
    definition: dict[str, Any], about: dict[str, Any]
) -> None:
    properties = about["settings"]["properties"]
    declared = {setting["name"]: setting for setting in definition["settings"]}
    assert list(declared) == list(properties)
    for name, prop in properties.items():
        assert declared[name]["kind"] == expected_kind(prop), name
        assert declared[name].get("sensitive", False) == bool(prop.get("secret")), name
        assert declared[name].get("description", "") == " ".join(
            (prop.get("description") or "").split()
        ), name
    assert definition["settings_group_validation"] == [about["settings"]["required"]]
