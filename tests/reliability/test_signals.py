"""SIGTERM / SIGINT mid-sync: the tap fails fast and says so; nothing of the run is published.

The simulator holds every detection batch before its first byte for a minute, far longer than
any wait here, so the signal lands while a batch is in flight: on a worker thread
(``max_concurrency: 1``: no probe call, one pipeline worker) or on the main thread (the
concurrency probe call). The tap must exit 128 + the signal number well before the batch could
finish, write no STATE after the signal, and end its output with a line that is not a Singer
message, so that the target fails instead of taking the cut output for a finished run: with
``point_in_time`` nothing is published.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import boto3
import psutil
import pytest

from tests.e2e.conftest import MeltanoSession, find_meltano
from tests.reliability.errors import assert_one_clear_line, has_traceback
from tests.reliability.harness import (
    REPO,
    SMALL_WORLD,
    Pipeline,
    Running,
    simulator,
    wait_until,
)
from tests.target_sqlite.test_snapshot import moto_server  # noqa: F401 - a fixture

#: target-sqlite's S3 settings for the moto server (plus its URL).
S3_SETTINGS = {
    "s3_bucket": "snapshots",
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_region": "us-east-1",
}
HELD_SECONDS = 60
#: A bound, not a speed goal: far below HELD_SECONDS and request_timeout, so a tap that waited for
#: its in-flight batch (or until its read timed out) could not pass.
EXIT_WITHIN_SECONDS = 20


def _states(output: str) -> int:
    return sum(1 for line in output.splitlines() if line.startswith('{"type":"STATE"'))


def _interrupt(running: Running, signum: int) -> tuple[int, float]:
    """Signal the tap; return the STATE lines it had written before, and how long it took."""
    states = _states(running.tap_output())
    sent = time.monotonic()
    running.tap.send_signal(signum)
    with contextlib.suppress(subprocess.TimeoutExpired):  # reported below, with the logs
        running.tap.wait(timeout=EXIT_WITHIN_SECONDS)
    return states, time.monotonic() - sent


@pytest.mark.parametrize(
    ("signum", "blocked_in"),
    [
        (signal.SIGTERM, "worker"),
        (signal.SIGINT, "worker"),
        (signal.SIGTERM, "main"),
    ],
)
def test_signal_mid_detection_batch(
    tmp_path: Path,
    signum: int,
    blocked_in: str,
    moto_server: str,  # noqa: F811 - the fixture imported above
) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name=S3_SETTINGS["aws_region"],
        aws_access_key_id=S3_SETTINGS["aws_access_key_id"],
        aws_secret_access_key=S3_SETTINGS["aws_secret_access_key"],
    )
    s3.create_bucket(Bucket=S3_SETTINGS["s3_bucket"])
    with simulator(**SMALL_WORLD) as sim:
        sim.configure(
            faults={"slow_first_byte": 1.0},
            fault_endpoints=["host_detection"],
            slow_first_byte_sec=HELD_SECONDS,
        )
        concurrency = {"max_concurrency": 1} if blocked_in == "worker" else {}
        pipeline = Pipeline(sim, tmp_path, request_timeout=HELD_SECONDS * 5, **concurrency)
        pipeline.target_overrides = {
            "point_in_time": True,
            **S3_SETTINGS,
            "s3_endpoint_url": moto_server,
        }
        # CSAM first: its STATE is out before the signal, the one a resumed run starts from.
        running = pipeline.start(streams=["csam_assets", "hosts", "host_detections"])
        wait_until(
            lambda: sim.stats()["running"].get("host_detection", 0) >= 1,
            120,
            "a detection batch in flight",
            running,
        )
        time.sleep(0.5)  # let the pipe carry whatever the tap had flushed
        states_before, took = _interrupt(running, signum)
        result = running.wait(EXIT_WITHIN_SECONDS + 10)

    context = result.describe()
    assert result.tap_rc == 128 + signum, context
    assert took < EXIT_WITHIN_SECONDS, context
    name = signal.Signals(signum).name
    assert f"stopped by {name}" in result.tap_stderr, context
    assert "Gracefully shutting down" not in result.tap_stderr, context
    output = result.text("tap.stdout")
    assert states_before >= 1, "no STATE before the signal: the check below would prove nothing"
    assert _states(output) == states_before, "the tap wrote a STATE after the signal"
    assert output.endswith(f"tap-qualys was stopped by {name}: this output is incomplete\n"), (
        output[-500:]
    )
    # The target refused the cut output: nothing published, no STATE handed on.
    assert result.target_rc not in (0, None), context
    assert result.target_states == [], context
    assert not pipeline.database.exists(), "an interrupted run was published"
    assert not pipeline.database.is_symlink()
    snapshots = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert all(name.endswith(".partial") for name in snapshots), snapshots
    assert s3.list_objects_v2(Bucket=S3_SETTINGS["s3_bucket"])["KeyCount"] == 0, "uploaded"


# --- under `meltano run` ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def meltano(tmp_path_factory: pytest.TempPathFactory) -> MeltanoSession:
    executable = find_meltano()
    if executable is None:
        pytest.skip("Meltano is not installed (set MELTANO_BIN)")
    session = MeltanoSession(executable, tmp_path_factory.mktemp("meltano-sys"))
    session.install("tap-qualys", "target-sqlite")
    return session


def _plugin_process(parent: psutil.Process, executable: str) -> psutil.Process | None:
    for child in parent.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any(Path(part).name == executable for part in child.cmdline()[:2]):
                return child
    return None


@pytest.mark.parametrize(("signalled", "signum"), [
    ("tap", signal.SIGTERM), ("meltano", signal.SIGTERM), ("meltano", signal.SIGINT),
])
def test_meltano_run_records_an_interrupted_run_as_failed(
    tmp_path: Path, meltano: MeltanoSession, signalled: str, signum: int
) -> None:
    """SIGTERM to the tap alone (Meltano then closes the target's input as after a finished
    tap) or to `meltano run` (which SIGTERMs both plugins; SIGINT, a Ctrl-C sent to Meltano
    alone, too): the run fails, nothing is published."""
    database = tmp_path / "qualys.db"
    with simulator(**SMALL_WORLD) as sim:
        sim.configure(
            faults={"slow_first_byte": 1.0},
            fault_endpoints=["host_detection"],
            slow_first_byte_sec=HELD_SECONDS,
        )
        env = meltano.base_env()
        env.update(
            MELTANO_DATABASE_URI=f"sqlite:///{tmp_path / 'meltano.db'}",
            TAP_QUALYS_USERNAME=sim.username,
            TAP_QUALYS_PASSWORD=sim.password,
            TAP_QUALYS_API_SERVER=sim.url,
            TAP_QUALYS_GATEWAY_URL=sim.url,
            TAP_QUALYS_HOST_BATCH_SIZE="8",
            TAP_QUALYS_MAX_CONCURRENCY="1",
            TAP_QUALYS_REQUEST_TIMEOUT=str(HELD_SECONDS * 5),
            TARGET_SQLITE_DATABASE=str(database),
            TARGET_SQLITE_POINT_IN_TIME="true",
        )
        log = tmp_path / "meltano-run.log"
        with log.open("wb") as out:
            run = subprocess.Popen(
                [str(meltano.executable), "run", "tap-qualys", "target-sqlite"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_until(
                    lambda: sim.stats()["running"].get("host_detection", 0) >= 1,
                    300,
                    "a detection batch in flight",
                )
                tap = _plugin_process(psutil.Process(run.pid), "tap-qualys")
                assert tap is not None, "no tap-qualys process under meltano"
                victim = tap.pid if signalled == "tap" else run.pid
                os.kill(victim, signum)
                code = run.wait(timeout=EXIT_WITHIN_SECONDS + 30)
            finally:
                if run.poll() is None:
                    run.kill()
                    run.wait()
    text = log.read_text(errors="replace")
    tail = "\n".join(text.splitlines()[-30:])
    assert code != 0, tail
    assert "stopped by SIGTERM" in text or "stopped by SIGINT" in text, tail
    runs = sqlite3.connect(tmp_path / "meltano.db").execute("SELECT state FROM runs").fetchall()
    assert runs == [("FAIL",)], tail  # Meltano's State.FAIL
    assert not database.exists(), "an interrupted run was published"
    assert not database.is_symlink()
    assert "Published snapshot" not in text


# --- during start-up ----------------------------------------------------------------------------


def _importing_libraries(pid: int) -> bool:
    """The tap is past Python's own start-up and loading the SDK's compiled dependencies."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
    return any("site-packages" in line and ".so" in line for line in maps.splitlines())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_the_tap_starts_publishes_nothing(tmp_path: Path, signum: int) -> None:
    """The SDK installs its handler only once the tap object exists, a second or more after the
    process starts (its imports): a signal before then used to kill the tap without a marker, and
    the target took the empty input for a finished run and published it."""
    with simulator(**SMALL_WORLD) as sim:
        pipeline = Pipeline(sim, tmp_path)
        pipeline.target_overrides = {"point_in_time": True, "snapshot_from_latest": False}
        running = pipeline.start(streams=["csam_assets"])
        wait_until(lambda: _importing_libraries(running.tap.pid), 30, "the tap importing",
                   running, interval=0.005)
        still_starting = not (running.directory / "tap.stderr").read_text().strip()
        running.tap.send_signal(signum)
        result = running.wait(EXIT_WITHIN_SECONDS + 10)
    context = result.describe()
    assert still_starting, "the tap had started before the signal: this test proves nothing"
    assert result.tap_rc == 128 + signum, context
    name = signal.Signals(signum).name
    assert result.text("tap.stdout") == (
        f"tap-qualys was stopped by {name}: this output is incomplete\n"
    ), context
    assert "Traceback" not in result.tap_stderr, context
    assert result.target_rc not in (0, None), context
    assert result.target_states == [], context
    assert not pipeline.database.exists(), "an interrupted run was published"
    assert not pipeline.database.is_symlink()


def test_sigterm_to_the_target_alone_fails_the_tap_with_one_clear_line(tmp_path: Path) -> None:
    """The target stopped (signalled, or failed on its own) while the tap still had records to
    send: the tap's next write hits a closed pipe, click swallowed that, and the tap's last words
    were "An unhandled error occurred while syncing 'hosts'", with no cause."""
    with simulator(**SMALL_WORLD) as sim:
        sim.configure(faults={"slow_first_byte": 1.0}, fault_endpoints=["host_detection"],
                      slow_first_byte_sec=3)
        pipeline = Pipeline(sim, tmp_path, request_timeout=HELD_SECONDS)
        running = pipeline.start(streams=["csam_assets", "hosts", "host_detections"])
        wait_until(lambda: sim.stats()["running"].get("host_detection", 0) >= 1, 120,
                   "a detection batch in flight", running)
        running.processes[2].send_signal(signal.SIGTERM)
        result = running.wait(HELD_SECONDS * 2)
    context = result.describe()
    assert result.target_rc == 128 + signal.SIGTERM, context
    assert_one_clear_line(result, names=("output", "closed", "target"))
    assert not has_traceback(result), context
