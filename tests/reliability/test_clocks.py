"""Clocks and bookmarks: no bookmark in the future, none from this machine's clock, bad states
refused in one line.

A bookmark in the future freezes a stream: every later run asks for changes after it, gets
none, and exits 0. These tests run the real simulator and `tap-qualys | target-sqlite`:

- a Host List answer whose DATETIME says 2099 must not become the hosts bookmark (the next run
  must still fetch the new host and its detections);
- a stored bookmark in the future, per stream, and a state that is not JSON or holds a value
  that is not a date-time, stop the run with one line naming the stream (or the file) and the
  value, before any call to Qualys;
- CSAM with this machine's clock 10 minutes ahead of Qualys': assets changed while a run paged
  past them must arrive with the next run (the cap is the gateway's clock, not ours).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from qualys_simulator.testing import SimulatorProcess
from tests.reliability.errors import assert_one_clear_line, has_traceback
from tests.reliability.harness import (
    SMALL_WORLD,
    TAP,
    Pipeline,
    RunResult,
    simulator,
    tap_config,
    wait_until,
)

HOSTS = ("hosts", "host_detections")
FUTURE = "2099-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with simulator(**SMALL_WORLD) as running:
        yield running


def run_tap_alone(sim: SimulatorProcess, directory: Path, state_text: str) -> RunResult:
    """`tap-qualys --state` with a state file written verbatim (garbage included)."""
    directory.mkdir()
    (directory / "tap-config.json").write_text(json.dumps(tap_config(sim)))
    (directory / "state.json").write_text(state_text)
    started = time.monotonic()
    with (directory / "tap.stdout").open("wb") as out, \
            (directory / "tap.stderr").open("wb") as err:
        process = subprocess.run(
            [TAP, "--config", "tap-config.json", "--state", "state.json"],
            stdout=out, stderr=err, cwd=directory, timeout=120, check=False)
    return RunResult(directory, process.returncode, None, False, time.monotonic() - started)


def assert_refused_before_any_call(sim: SimulatorProcess, result: RunResult,
                                   names: tuple[str, ...]) -> str:
    line = assert_one_clear_line(result, names=names, says=("meltano state",))
    assert not has_traceback(result), result.describe()
    assert not result.tap_messages(), result.describe()
    assert sum(sim.stats()["requests"].values()) == 0, sim.stats()["requests"]
    return line


@pytest.mark.parametrize(("stream", "key", "value"), [
    ("knowledge_base", "replication_key_value", FUTURE),
    ("hosts", "vm_processed_after", FUTURE),
    ("csam_assets", "replication_key_value", "2099-01-01T00:00:00.000Z"),
    ("pcrs_policies", "replication_key_value", FUTURE),
])
def test_a_stored_bookmark_in_the_future_is_refused(sim: SimulatorProcess, tmp_path: Path,
                                                    stream: str, key: str, value: str) -> None:
    sim.reset_stats()
    state = {"bookmarks": {stream: {key: value}}}
    result = run_tap_alone(sim, tmp_path / "run", json.dumps(state))
    line = assert_refused_before_any_call(sim, result, names=(stream, value))
    assert "future" in line, line


@pytest.mark.parametrize(("state_text", "names"), [
    ("{not json", ("state.json", "not JSON")),
    ('["bookmarks"]', ("state.json", "not an object")),
    ('{"bookmarks": {"hosts": {"vm_processed_after": "yesterday"}}}', ("hosts", "'yesterday'")),
    ('{"bookmarks": {"knowledge_base": {"replication_key_value": 12345}}}',
     ("knowledge_base", "12345")),
    ('{"bookmarks": {"csam_assets": {"replication_key_value": "x", "resume": {}}}}',
     ("csam_assets", "'x'")),
    # Year 1, minus the overlap, is before datetime's year 1: a traceback ("date value out of
    # range") once the stream started.
    ('{"bookmarks": {"csam_assets": {"replication_key": "lastModifiedDate", '
     '"replication_key_value": "0001-01-01T00:00:00Z"}}}', ("csam_assets", "0001-01-01")),
    ('{"bookmarks": {"knowledge_base": {"replication_key": "last_service_modification_datetime"'
     ', "replication_key_value": "0001-01-20T00:00:00Z"}}}', ("knowledge_base", "0001-01-20")),
    # A resume point that is not an object: "'str' object has no attribute 'get'", a traceback.
    ('{"bookmarks": {"csam_assets": {"replication_key_value": "2026-11-01T00:00:00Z", '
     '"resume": "x"}}}', ("csam_assets", "resume")),
], ids=["garbage", "a-list", "yesterday", "a-number", "csam-garbage", "year-1-csam", "year-1-kb",
        "csam-resume-not-an-object"])
def test_a_bad_state_is_one_line_naming_file_or_stream(sim: SimulatorProcess, tmp_path: Path,
                                                        state_text: str,
                                                        names: tuple[str, ...]) -> None:
    sim.reset_stats()
    result = run_tap_alone(sim, tmp_path / "run", state_text)
    assert_refused_before_any_call(sim, result, names=names)


def _host_list_dated(sim: SimulatorProcess, when: str) -> bytes:
    """A real Host List answer (every host, one page, the fields the tap asks for) at ``when``."""
    response = requests.post(
        sim.url + "/api/5.0/fo/asset/host/",
        data={"action": "list", "details": "All", "truncation_limit": "0",
              "show_asset_id": "1", "show_tags": "1", "show_cloud_tags": "1",
              "host_metadata": "all", "show_trurisk": "1", "show_trurisk_factors": "1",
              "show_ars": "1", "show_ars_factors": "1"},
        auth=(sim.username, sim.password), headers={"X-Requested-With": "clock tests"},
        timeout=60)
    response.raise_for_status()
    body, count = re.subn(rb"<DATETIME>[^<]*</DATETIME>", f"<DATETIME>{when}</DATETIME>".encode(),
                          response.content, count=1)
    assert count == 1
    return body


def test_a_host_list_datetime_in_the_future_does_not_freeze_hosts(tmp_path: Path) -> None:
    with simulator(**SMALL_WORLD) as own:
        pipeline = Pipeline(own, tmp_path)
        first = pipeline.sync(streams=HOSTS)
        bookmark = first.last_state["bookmarks"]["hosts"]["vm_processed_after"]  # type: ignore[index]

        own.admin_post("/admin/inject", {
            "endpoint": "host_list", "times": 1,
            "body_b64": base64.b64encode(_host_list_dated(own, FUTURE)).decode()})
        second = pipeline.sync(state=first.last_state, streams=HOSTS)
        assert own.stats()["faults"].get("inject") == 1
        kept = second.last_state["bookmarks"]["hosts"]  # type: ignore[index]
        assert kept["vm_processed_after"] == bookmark, second.describe()
        warnings = [line for line in second.log(("WARNING",)) if FUTURE in line]
        assert warnings, second.describe()
        assert "hosts" in warnings[0], warnings

        changes = own.advance(3600, purge=0)
        assert changes["new_hosts"] >= 1
        third = pipeline.sync(state=second.last_state, streams=HOSTS)
        assert third.records("hosts"), third.describe()
        pipeline.assert_ground_truth(HOSTS, context="after a Host List answer dated 2099")


def test_csam_with_the_local_clock_ahead_loses_no_change(tmp_path: Path) -> None:
    """This machine 10 minutes ahead of the gateway; assets change while a run pages past them.

    With the overlap off, only a bookmark capped at the gateway's own clock at the run's start
    brings the changed assets the run had already read.
    """
    server_start = datetime.now(timezone.utc) - timedelta(minutes=10)
    world: dict[str, Any] = {**SMALL_WORLD, "assets": 200, "record_delay_sec": 0.03,
                             "start": server_start.strftime("%Y-%m-%dT%H:%M:%SZ")}
    with simulator(**world) as own:
        pipeline = Pipeline(own, tmp_path, csam_page_size=20, csam_overlap_minutes=0)
        running = pipeline.start(streams=("csam_assets",))
        wait_until(lambda: running.tap_output().count('"stream":"csam_assets"') >= 120, 120,
                   "120 CSAM assets emitted", running)
        own.advance(120, purge=0, new_hosts=0)
        during = running.wait(240)
        assert (during.tap_rc, during.target_rc) == (0, 0), during.describe()
        pipeline.sync(state=during.last_state, streams=("csam_assets",))
        pipeline.assert_ground_truth(("csam_assets",), context="tap clock 10 min ahead")


def test_a_qualys_clock_in_2099_never_becomes_a_bookmark(tmp_path: Path) -> None:
    """Every stream against a server whose clock (DATETIME, Date, record dates) says 2099."""
    with simulator(**SMALL_WORLD, start="2099-01-01T00:00:00Z") as own:
        pipeline = Pipeline(own, tmp_path)
        first = pipeline.sync()
        assert first.last_state is not None
        latest = datetime.now(timezone.utc) + timedelta(minutes=60)
        for stream, state in first.last_state["bookmarks"].items():
            for key in ("replication_key_value", "vm_processed_after"):
                if state.get(key):
                    moment = datetime.fromisoformat(state[key].replace("Z", "+00:00"))
                    assert moment <= latest, f"{stream} bookmark {key} {state[key]}"
        warned = " ".join(line for line in first.log(("WARNING",)) if "2099" in line)
        for stream in ("hosts", "csam_assets"):
            assert f"{stream}: " in warned, first.describe()
        # The state is one the tap accepts again, and it reads what it must.
        pipeline.sync(state=first.last_state)
        pipeline.assert_ground_truth(context="a server clock in 2099")
