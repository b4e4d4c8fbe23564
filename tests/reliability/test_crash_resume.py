"""Scenario 3: SIGKILL the whole pipeline mid-stream, resume from the last checkpoint, lose nothing.

The simulator streams slowly (a delay per record) so that the kill lands while a stream is
still being fetched: after its first page/batch reached the target, before its last. The target
commits every 20 rows, so the database holds a partial load when the kill comes.

Singer's contract is that a target emits a STATE once everything before it is committed, and
the next run starts from the last STATE the target emitted. Two resume points are tested:

- the last STATE the tap had emitted before the kill, committed and re-emitted by a target (the
  tap's output up to that STATE replayed into target-sqlite: what a target that checkpoints at
  every STATE would have left). This is the strictest case for the tap: any STATE that claims
  more than was emitted loses data here;
- the last STATE the real, killed target-sqlite emitted (see the separate test below).

Either way the resumed run must leave the target equal to the ground truth, no key twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.harness import (
    SMALL_WORLD,
    Pipeline,
    Running,
    simulator,
    wait_until,
)

RECORD_DELAY_SEC = 0.02
TARGET_BATCH_ROWS = 20


def records_in(output: str, stream: str) -> int:
    return output.count(f'"type":"RECORD","stream":"{stream}"') + output.count(
        f'"type": "RECORD", "stream": "{stream}"')


def complete_lines_through_last_state(output: str) -> list[str]:
    """The tap's complete output lines up to and including its last STATE message."""
    lines = output.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()  # the line the kill cut in half
    last_state = max((i for i, line in enumerate(lines) if '"STATE"' in line[:40]), default=-1)
    return lines[: last_state + 1]


def kill_when_streaming(pipeline: Pipeline, running: Running, stream: str) -> str:
    """Kill the pipeline once `stream`'s first records are out; return the tap's output."""
    wait_until(lambda: records_in(running.tap_output(), stream) > 0, 120,
               f"a {stream} record", running)
    running.kill()
    running.wait(30)
    return running.tap_output()


def crash_then_resume(tmp_path: Path, stream: str, *, advance: bool = False) -> None:
    with simulator(**SMALL_WORLD) as sim:
        sim.configure(record_delay_sec=RECORD_DELAY_SEC)
        pipeline = Pipeline(sim, tmp_path)
        pipeline.target_overrides = {"batch_size_rows": TARGET_BATCH_ROWS}
        output = kill_when_streaming(pipeline, pipeline.start(), stream)

        truth_count = len(sim.ground_truth(stream))
        emitted = records_in(output, stream)
        assert 0 < emitted < truth_count, (
            f"the kill did not land mid-{stream}: {emitted} of {truth_count} records were out")

        # A target that commits at every STATE would have left exactly this checkpoint.
        replay = pipeline.replay_into_target(complete_lines_through_last_state(output))
        assert replay.target_rc == 0, replay.describe()
        checkpoint = replay.last_state

        sim.configure(record_delay_sec=0)
        if advance:
            # A day passes before the rerun: it must catch up on the changes as well.
            sim.advance(86400, purge=0)
        resumed = pipeline.sync(state=checkpoint)
        pipeline.assert_ground_truth(
            context=f"killed mid-{stream}; resumed from {json.dumps(checkpoint)}\n"
                    f"{resumed.describe()}")


@pytest.mark.parametrize("stream", ["csam_assets", "hosts", "host_detections",
                                    "knowledge_base", "pcrs_posture_info"])
def test_kill_mid_stream_then_resume_from_the_last_checkpoint(tmp_path: Path,
                                                               stream: str) -> None:
    crash_then_resume(tmp_path, stream)


def test_kill_mid_detections_then_resume_a_day_later(tmp_path: Path) -> None:
    crash_then_resume(tmp_path, "host_detections", advance=True)


def test_resume_from_the_killed_targets_own_state(tmp_path: Path) -> None:
    """The real target's last STATE (or none) is also a safe place to resume from."""
    with simulator(**SMALL_WORLD) as sim:
        sim.configure(record_delay_sec=RECORD_DELAY_SEC)
        pipeline = Pipeline(sim, tmp_path)
        pipeline.target_overrides = {"batch_size_rows": TARGET_BATCH_ROWS}
        running = pipeline.start()
        kill_when_streaming(pipeline, running, "pcrs_posture_info")
        killed = running.wait(1)
        sim.configure(record_delay_sec=0)
        resumed = pipeline.sync(state=killed.last_state)
        pipeline.assert_ground_truth(context=resumed.describe())


def test_killed_target_had_emitted_a_resume_point(tmp_path: Path) -> None:
    """After completed streams were committed, a crash must not send the next run back to zero."""
    with simulator(**SMALL_WORLD) as sim:
        sim.configure(record_delay_sec=RECORD_DELAY_SEC)
        pipeline = Pipeline(sim, tmp_path)
        pipeline.target_overrides = {"batch_size_rows": TARGET_BATCH_ROWS,
                                     "state_checkpoint_seconds": 0}
        running = pipeline.start()
        # CSAM, hosts, detections and the KB are complete and committed (batches of 20 rows)
        # by the time PCRS postures stream.
        kill_when_streaming(pipeline, running, "pcrs_posture_info")
        killed = running.wait(1)
        committed = {stream: len(rows) for stream, rows in pipeline.loaded().items()}
        assert committed["csam_assets"], committed
        assert committed["knowledge_base"], committed
        state: dict[str, Any] = killed.last_state or {}
        bookmarks = state.get("bookmarks", {})
        assert {"csam_assets", "hosts", "knowledge_base"} <= set(bookmarks), (
            f"rows committed {committed}, but the target's last STATE is {state}")
