"""A signalled target stops: no snapshot published, nothing uploaded, no STATE, exit 128 + N.

The SDK's handler drained every sink and emitted a STATE from inside the signal handler,
wherever the main thread was, then exited 0: a run stopped by Ctrl-C or by `meltano run` being
terminated looked like a success to a plain shell pipe. The target here is the real executable,
fed through a pipe that stays open, so it is mid-run (not at the end of its input) when signalled.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.target_sqlite.conftest import (
    EXECUTABLE,
    detection,
    query,
    record_message,
    schema_message,
)

KEYS = ["unique_vuln_id"]


def _line(message: dict[str, object]) -> bytes:
    return (json.dumps(message) + "\n").encode()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("point_in_time", [True, False])
def test_signalled_target_publishes_nothing(
    tmp_path: Path, database: Path, signum: int, point_in_time: bool
) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "database": str(database),
                "point_in_time": point_in_time,
                "batch_size_rows": 2,
                "state_checkpoint_seconds": 0,
            }
        )
    )
    stderr = tmp_path / "target.stderr"
    with stderr.open("wb") as err:
        target = subprocess.Popen(
            [str(EXECUTABLE), "--config", str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )
        assert target.stdin is not None
        assert target.stdout is not None
        target.stdin.write(_line(schema_message(keys=KEYS)))
        for uid in range(1, 6):
            target.stdin.write(_line(record_message(detection(uid))))
        target.stdin.write(_line({"type": "STATE", "value": {"bookmarks": {"n": 5}}}))
        target.stdin.write(_line(record_message(detection(6))))
        target.stdin.flush()
        if not point_in_time:
            # The STATE before the signal is emitted once its rows are committed.
            assert json.loads(target.stdout.readline()) == {"bookmarks": {"n": 5}}
        else:
            time.sleep(2)  # let it take the lines in; nothing comes out before the end
        target.send_signal(signum)
        try:
            rest, _ = target.communicate(timeout=30)
        finally:
            target.stdin.close()
            if target.poll() is None:
                target.kill()
    log = stderr.read_text()
    assert target.returncode == 128 + signum, log[-2000:]
    assert rest == b"", "a STATE after the signal"
    assert f"stopped by {signal.Signals(signum).name}" in log, log[-2000:]
    if point_in_time:
        assert not database.exists()
        assert not database.is_symlink()
        names = [p.name for p in (database.parent / "snapshots").iterdir()]
        assert names
        assert all(".partial" in name for name in names), names
        assert "Published" not in log
    else:
        # What was committed under the STATE stays; record 6 was never committed.
        rows = query(database, "SELECT unique_vuln_id FROM host_detections ORDER BY 1")
        assert rows == [(1,), (2,), (3,), (4,), (5,)]
