"""meltano.yml declares tap-qualys and target-sqlite exactly as the plugins describe themselves."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
EXPECTED_KIND = {
    "string": "string",
    "integer": "integer",
    "number": "decimal",
    "boolean": "boolean",
    "array": "array",
    "object": "object",
}


@functools.lru_cache
def plugin_about(executable: str) -> dict[str, Any]:
    script = Path(sys.executable).parent / executable
    output = subprocess.run(
        [str(script), "--about", "--format=json"], check=True, capture_output=True, text=True
    ).stdout
    return dict(json.loads(output))


def expected_kind(prop: dict[str, Any]) -> str:
    types = prop.get("type", "string")
    json_type = ([types] if isinstance(types, str) else [t for t in types if t != "null"])[0]
    if json_type == "string" and prop.get("format") in {"date-time", "date"}:
        return "date_iso8601"
    if json_type == "string" and prop.get("enum"):
        return "options"
    return EXPECTED_KIND[json_type]


def project() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "meltano.yml").read_text()))


def plugin(plugin_type: str, name: str) -> dict[str, Any]:
    matches = [p for p in project()["plugins"][plugin_type] if p["name"] == name]
    assert len(matches) == 1, f"{name} declared {len(matches)} times in meltano.yml"
    return dict(matches[0])


def assert_settings_mirror(declared: list[dict[str, Any]], about: dict[str, Any]) -> None:
    properties = about["settings"]["properties"]
    assert [s["name"] for s in declared] == list(properties), "settings differ from --about"
    for setting in declared:
        prop = properties[setting["name"]]
        assert setting["kind"] == expected_kind(prop), setting["name"]
        assert setting.get("sensitive", False) == bool(prop.get("secret")), setting["name"]


@pytest.fixture(scope="module")
def tap_about() -> dict[str, Any]:
    return plugin_about("tap-qualys")


def test_project_basics() -> None:
    meltano = project()
    assert meltano["requires_meltano"]
    assert meltano["default_environment"] == "dev"
    assert {e["name"] for e in meltano["environments"]} >= {"dev", "prod"}
    jobs = {job["name"]: job for job in meltano["jobs"]}
    assert jobs["qualys-to-sqlite"]["tasks"] == ["tap-qualys target-sqlite"]
    assert all(schedule["job"] in jobs for schedule in meltano["schedules"])
    loaders = {p["name"] for p in meltano["plugins"]["loaders"]}
    assert loaders >= {"target-sqlite", "target-postgres", "target-s3", "target-jsonl"}


def test_tap_declaration(tap_about: dict[str, Any]) -> None:
    tap = plugin("extractors", "tap-qualys")
    assert (tap["namespace"], tap["pip_url"], tap["executable"]) == (
        "tap_qualys",
        "-e .",
        "tap-qualys",
    )
    assert set(tap["capabilities"]) >= {"catalog", "discover", "state", "about", "stream-maps"}
    assert set(tap["capabilities"]) <= set(tap_about["capabilities"])
    assert tap["settings_group_validation"] == [tap_about["settings"]["required"]]
    assert_settings_mirror(tap["settings"], tap_about)


def test_bundled_target_sqlite_declaration() -> None:
    target = plugin("loaders", "target-sqlite")
    assert (target["namespace"], target["pip_url"], target["executable"]) == (
        "target_sqlite",
        "-e .",
        "target-sqlite",
    )
    assert_settings_mirror(target["settings"], plugin_about("target-sqlite"))


def test_secrets_are_sensitive_everywhere() -> None:
    secret = re.compile(r"(^|_)(password|secret|token)$|secret_access_key$|^sqlalchemy_url$")
    for plugin_type in ("extractors", "loaders"):
        for declared in project()["plugins"][plugin_type]:
            for setting in declared.get("settings", []):
                if secret.search(setting["name"].rsplit(".", 1)[-1]):
                    assert setting.get("sensitive"), f"{declared['name']}.{setting['name']}"


def test_generated_blocks_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_plugin_definitions.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_valid_for_meltano() -> None:
    """Validate against the JSON schema of the installed Meltano, when there is one."""
    from tests.e2e.conftest import IN_CI, MELTANO_HINT, find_meltano  # noqa: PLC0415

    meltano = find_meltano()
    if meltano is None:
        if IN_CI:
            pytest.fail(f"Meltano is not installed: {MELTANO_HINT}")
        pytest.skip(f"Meltano is not installed: {MELTANO_HINT}")
    schema_path = subprocess.run(
        [
            str(meltano.parent / "python"),
            "-c",
            "import importlib.resources as r; "
            "print(r.files('meltano') / 'schemas' / 'meltano.schema.json')",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    import jsonschema  # noqa: PLC0415

    schema = json.loads(Path(schema_path).read_text())
    jsonschema.validate(project(), schema, cls=jsonschema.Draft202012Validator)
