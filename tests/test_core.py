"""The SDK's generated tap tests, run against a real simulator."""

from __future__ import annotations

import json
import subprocess
import sys
import typing as t
from pathlib import Path

from singer_sdk.testing import get_tap_test_class

from tap_qualys.tap import TapQualys
from tests.conftest import shared_simulator, tap_config

SIMULATOR = shared_simulator()
CONFIG = tap_config(SIMULATOR, host_batch_size=10)

TestTapQualys = get_tap_test_class(TapQualys, config=CONFIG)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tap_qualys", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_about_json_lists_every_setting_with_a_description() -> None:
    result = run_cli("--about", "--format=json")
    assert result.returncode == 0, result.stderr
    about = json.loads(result.stdout)
    assert about["name"] == "tap-qualys"
    properties = about["settings"]["properties"]
    for name in ("username", "password", "platform", "api_server", "status", "host_batch_size"):
        assert properties[name]["description"]
        assert properties[name]["title"]
    assert properties["password"]["secret"] is True
    assert properties["status"]["default"] == ["New", "Active", "Re-Opened", "Fixed"]


def test_bad_settings_fail_in_one_line_naming_the_setting(tmp_path: Path) -> None:
    cases: dict[str, tuple[dict[str, t.Any], str]] = {
        "start_date": ({"start_date": "last tuesday"}, "start_date"),
        "host_batch_size": ({"host_batch_size": -5}, "host_batch_size"),
        "api_server": (
            {"api_server": "https://qualysguard.qg2.apps.qualys.com"},
            "use https://qualysapi.qg2.apps.qualys.com",
        ),
        "platform": ({"platform": "MARS_01", "api_server": None}, "use one of US_01"),
    }
    for name, (overrides, expected) in cases.items():
        config = {**CONFIG, **overrides}
        config = {k: v for k, v in config.items() if v is not None}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(config))
        result = run_cli("--config", str(path))
        assert result.returncode != 0, name
        assert "Traceback" not in result.stderr, result.stderr
        errors = [line for line in result.stderr.splitlines() if expected in line]
        assert len(errors) == 1, (name, result.stderr)
        assert name in errors[0]
        assert CONFIG["password"] not in result.stderr
