"""DEBUG logging of target-sqlite grows linearly with the records loaded.

The SDK's per-record DEBUG line prints the sink's context, which holds the whole pending batch:
every record printed the batch again (a 1 GB stderr for a small sync). Measured on the real
executable: stderr bytes per record must not grow with the number of records.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.target_sqlite.conftest import EXECUTABLE, detection, record_message, schema_message

DEBUG_ENV = {"LOGLEVEL": "DEBUG", "TARGET_SQLITE_LOGLEVEL": "DEBUG"}


def debug_stderr_bytes(tmp_path: Path, records: int) -> int:
    config = tmp_path / f"config-{records}.json"
    config.write_text(json.dumps({"database": str(tmp_path / f"db-{records}.db")}))
    messages = [schema_message(keys=["unique_vuln_id"])]
    messages += [record_message(detection(uid)) for uid in range(records)]
    data = "".join(json.dumps(m) + "\n" for m in messages).encode()
    proc = subprocess.run([str(EXECUTABLE), "--config", str(config)], input=data,
                          capture_output=True, timeout=300, check=False,
                          env={**os.environ, **DEBUG_ENV})
    assert proc.returncode == 0, proc.stderr[-3000:].decode(errors="replace")
    assert b"DEBUG" in proc.stderr, "DEBUG logging was not on"
    return len(proc.stderr)


def test_debug_output_grows_linearly_with_records(tmp_path: Path) -> None:
    small, large = 500, 2000
    per_record_small = debug_stderr_bytes(tmp_path, small) / small
    per_record_large = debug_stderr_bytes(tmp_path, large) / large
    # Linear output has a fixed part, so the large run's bytes per record are at most the small
    # run's; printing the pending batch per record made them grow with the batch (x4 here).
    assert per_record_large <= per_record_small * 1.2, (per_record_small, per_record_large)
    assert per_record_large < 2000, f"{per_record_large:.0f} bytes of DEBUG log per record"
