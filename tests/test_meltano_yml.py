"""meltano.yml declares tap-qualys and target-sqlite exactly as the plugins describe themselves."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
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
    # Meltano 4 crashes on `kind: decimal` values from the environment: numbers go as strings.
    "number": "string",
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


def project(meltano_yml: Path = REPO / "meltano.yml") -> dict[str, Any]:
    return dict(yaml.safe_load(meltano_yml.read_text()))


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
    assert jobs["qualys-to-sqlite"]["tasks"] == [
        "tap-qualys target-sqlite dbt-sqlite:build qualys-report:sqlite"
    ]
    assert jobs["qualys-to-postgres"]["tasks"] == [
        "tap-qualys--postgres target-postgres dbt-postgres:build qualys-report:postgres"
    ]
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
        "-e packages/target-qualys-sqlite",
        "target-qualys-sqlite",
    )
    assert_settings_mirror(target["settings"], plugin_about("target-qualys-sqlite"))


def test_utilities_dbt_and_the_report() -> None:
    """One dbt utility per adapter (their dbt-adapters pins conflict), each with its own paths,
    so that the two jobs can run at the same time; the report from this repository."""
    sqlite, postgres = plugin("utilities", "dbt-sqlite"), plugin("utilities", "dbt-postgres")
    assert "dbt-sqlite==" in sqlite["pip_url"]
    assert "dbt-postgres==" in postgres["pip_url"]
    for dbt in (sqlite, postgres):
        assert dbt["executable"] == "dbt"
        assert dbt["commands"]["build"]["args"] == "build"
        assert dbt["config"]["project_dir"] == "${MELTANO_PROJECT_ROOT}/transform"
        assert dbt["config"]["send_anonymous_usage_stats"] is False
        profiles = REPO / dbt["config"]["profiles_dir"].replace("${MELTANO_PROJECT_ROOT}/", "")
        assert (profiles / "profiles.yml").is_file()
    assert sqlite["config"]["target_path"] != postgres["config"]["target_path"]
    # dbt-sqlite builds the marts in the file target-sqlite loads, in every environment.
    assert sqlite["config"]["database"] == plugin("loaders", "target-sqlite")["config"]["database"]
    for environment in project()["environments"]:
        plugins = environment.get("config", {}).get("plugins", {})
        loaded = {p["name"]: p for p in plugins.get("loaders", [])}.get("target-sqlite")
        if loaded:
            dbt = {p["name"]: p for p in plugins["utilities"]}["dbt-sqlite"]
            assert dbt["config"]["database"] == loaded["config"]["database"], environment["name"]
    report = plugin("utilities", "qualys-report")
    assert report["pip_url"] == "-e packages/qualys-report[postgres]"
    assert set(report["commands"]) == {"sqlite", "postgres"}


def test_secrets_are_sensitive_everywhere() -> None:
    secret = re.compile(r"(^|_)(password|secret|token)$|secret_access_key$|^sqlalchemy_url$")
    for plugin_type in ("extractors", "loaders", "utilities"):
        for declared in project()["plugins"][plugin_type]:
            for setting in declared.get("settings", []):
                if secret.search(setting["name"].rsplit(".", 1)[-1]):
                    assert setting.get("sensitive"), f"{declared['name']}.{setting['name']}"


def gen_plugin_definitions(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_plugin_definitions.py"), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_generated_blocks_are_up_to_date() -> None:
    result = gen_plugin_definitions("--check")
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


def meltano_or_skip() -> Path:
    from tests.e2e.conftest import IN_CI, MELTANO_HINT, find_meltano  # noqa: PLC0415

    meltano = find_meltano()
    if meltano is None:
        if IN_CI:
            pytest.fail(f"Meltano is not installed: {MELTANO_HINT}")
        pytest.skip(f"Meltano is not installed: {MELTANO_HINT}")
    return meltano


def meltano_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TAP_QUALYS_", "TARGET_", "MELTANO_"))
    }
    env.update(
        MELTANO_SYS_DIR_ROOT=str(tmp_path / "sys"),
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
        NO_COLOR="1",
        **variables,
    )
    return env


# One setting of each kind, given the way a user gives it in the environment, and the value the
# plugin must receive.
ENV_SETTINGS = {
    "tap-qualys": {
        "user_agent": ("my-agent/1", "my-agent/1"),
        "max_retries": ("3", 3),
        "retry_backoff_seconds": ("0.5", 0.5),
        "show_results": ("false", False),
        "status": ('["New", "Fixed"]', ["New", "Fixed"]),
        "stream_map_config": ('{"salt": "x"}', {"salt": "x"}),
        "start_date": ("2024-01-31T00:00:00Z", "2024-01-31T00:00:00Z"),
    },
    "target-sqlite": {
        "state_checkpoint_seconds": ("0.5", 0.5),
        "busy_timeout_seconds": ("2.5", 2.5),
        "max_database_size_mb": ("10.5", 10.5),
        "point_in_time": ("true", True),
        "load_method": ("overwrite", "overwrite"),
    },
}


@pytest.mark.parametrize("plugin_name", sorted(ENV_SETTINGS))
def test_every_setting_kind_from_the_environment_reaches_the_plugin(
    plugin_name: str, tmp_path: Path
) -> None:
    """`meltano config print` writes what the plugin gets; the plugin then accepts it."""
    meltano = meltano_or_skip()
    prefix = plugin_name.upper().replace("-", "_") + "_"
    settings = ENV_SETTINGS[plugin_name]
    variables = {prefix + name.upper(): given for name, (given, _) in settings.items()}
    variables.update(TAP_QUALYS_USERNAME="qa_user", TAP_QUALYS_PASSWORD="secret")
    result = subprocess.run(
        [str(meltano), "config", "print", plugin_name],
        cwd=REPO,
        env=meltano_env(tmp_path, MELTANO_PROJECT_READONLY="true", **variables),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads(result.stdout)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    # The plugin's own parsing and validation, as in a run: the config file Meltano writes.
    module, cls = {
        "tap-qualys": ("tap_qualys.tap", "TapQualys"),
        "target-sqlite": ("target_qualys_sqlite.target", "TargetSQLite"),
    }[plugin_name]
    check = (
        f"import json, sys; from {module} import {cls}; "
        f"plugin = {cls}(config=json.load(open(sys.argv[1]))); "
        "print(json.dumps(dict(plugin.config)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", check, str(config_file)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    received = json.loads(loaded.stdout.splitlines()[-1])
    for name, (_, expected) in settings.items():
        assert received[name] == expected, name


# The README's commands that make Meltano rewrite meltano.yml.
MELTANO_EDITS = [
    ["config", "set", "tap-qualys", "user_agent", "my-agent/1"],
    ["config", "set", "tap-qualys", "retry_backoff_seconds", "0.5"],
    ["schedule", "add", "qualys-hourly", "--job", "qualys-to-postgres", "--interval", "@hourly"],
]


def test_project_stays_valid_after_meltano_rewrites_meltano_yml(tmp_path: Path) -> None:
    meltano = meltano_or_skip()
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copy(REPO / "meltano.yml", copy / "meltano.yml")
    before = project(copy / "meltano.yml")
    for command in MELTANO_EDITS:
        result = subprocess.run(
            [str(meltano), *command],
            cwd=copy,
            env=meltano_env(tmp_path),
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"meltano {' '.join(command)}: {result.stderr[-2000:]}"
    rewritten = copy / "meltano.yml"
    assert rewritten.read_text() != (REPO / "meltano.yml").read_text(), "Meltano wrote nothing"
    after = project(rewritten)
    tap = next(p for p in after["plugins"]["extractors"] if p["name"] == "tap-qualys")
    assert tap["config"]["user_agent"] == "my-agent/1"
    for plugin_type in ("extractors", "loaders"):
        for old, new in zip(
            before["plugins"][plugin_type], after["plugins"][plugin_type], strict=True
        ):
            assert old.get("settings") == new.get("settings"), old["name"]

    check = gen_plugin_definitions("--check", "--meltano-yml", str(rewritten))
    assert check.returncode == 0, check.stdout + check.stderr
    # The generator still rewrites a file without its markers: drop a setting, regenerate.
    tap["settings"] = tap["settings"][1:]
    rewritten.write_text(yaml.safe_dump(after, sort_keys=False))
    assert gen_plugin_definitions("--check", "--meltano-yml", str(rewritten)).returncode == 1
    regenerate = gen_plugin_definitions("--meltano-yml", str(rewritten))
    assert regenerate.returncode == 0, regenerate.stderr
    check = gen_plugin_definitions("--check", "--meltano-yml", str(rewritten))
    assert check.returncode == 0, check.stdout + check.stderr
    assert project(rewritten)["plugins"]["extractors"][0]["config"]["user_agent"] == "my-agent/1"


def test_generator_runs_from_a_python_outside_the_venv(tmp_path: Path) -> None:
    """`python scripts/gen_plugin_definitions.py` as the README once wrote it: the plugins are
    found in .venv/bin even when the interpreter is another one (PATH without .venv)."""
    outside = [
        path
        for path in (shutil.which("python3"), shutil.which("python"))
        if path and Path(path).resolve().parent != Path(sys.executable).resolve().parent
    ]
    usable = [
        path
        for path in outside
        if subprocess.run([path, "-c", "import yaml"], capture_output=True, check=False).returncode
        == 0
    ]
    if not usable:
        pytest.skip("no Python with PyYAML outside the project's .venv")
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [usable[0], str(REPO / "scripts" / "gen_plugin_definitions.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_plugins_read_number_strings_and_name_a_bad_one() -> None:
    """What meltano.yml's `kind: string` number settings hand the plugins (no Meltano needed)."""
    from singer_sdk.exceptions import ConfigValidationError  # noqa: PLC0415

    from tap_qualys.tap import TapQualys  # noqa: PLC0415
    from target_qualys_sqlite.target import TargetSQLite  # noqa: PLC0415

    credentials = {"username": "qa_user", "password": "secret"}
    tap = TapQualys(config={**credentials, "retry_backoff_seconds": "0.5"})
    assert tap.config["retry_backoff_seconds"] == 0.5
    target = TargetSQLite(config={"state_checkpoint_seconds": "2.5", "busy_timeout_seconds": 3})
    assert target.config["state_checkpoint_seconds"] == 2.5
    assert target.config["busy_timeout_seconds"] == 3
    with pytest.raises(ConfigValidationError) as error:
        TapQualys(config={**credentials, "retry_backoff_seconds": "half a second"})
    assert "retry_backoff_seconds" in str(error.value.errors)
