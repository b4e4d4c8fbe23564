"""CPU per record of target-sqlite's three RECORD paths: what target_qualys_sqlite/sdk.py buys.

The target row of the table times a whole run of the executable, start-up included, where a smoke
run is too short to tell these paths apart. This loads ``--records`` host_detections records
(``benchmarks.target_sqlite``'s generator) in process, from the SCHEMA to the last commit, by

- the typed line path (default): a RECORD line decoded straight into its row (``sdk.queue_row``),
- the direct record path: the parsed record through ``sdk.queue_record`` (no row decoder),
- the SDK's own dispatch (``Target._process_record_message``) for every record.

CPU time (process time), best of ``--repeat``; prints one markdown table.

    python -m benchmarks.target_paths [--records 30000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import tempfile
import time
import typing as t
from pathlib import Path
from unittest import mock

from benchmarks.target_sqlite import SCHEMA_FILE, make_records, write_messages
from target_qualys_sqlite import rows
from target_qualys_sqlite import sink as sink_module
from target_qualys_sqlite.target import TargetSQLite

PATHS = ("typed line path", "direct record path", "SDK dispatch")


def load(lines: bytes, database: Path, path: str) -> float:
    """CPU seconds to load ``lines`` into a new ``database`` by ``path``."""
    with mock.patch.object(
        sink_module,
        "compile_row_decoder",
        rows.compile_row_decoder if path == PATHS[0] else (lambda *_, **__: None),
    ):
        target = TargetSQLite(config={"database": str(database), "batch_size_rows": 10_000})
        if path == PATHS[2]:
            target._direct_sink = lambda *_: None  # type: ignore[method-assign]
        start = time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):  # the STATE lines
            target.listen(t.cast("t.IO[str]", io.BytesIO(lines)))
        return time.process_time() - start


def main(argv: list[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    schema = json.loads(SCHEMA_FILE.read_text())
    # As TargetSQLite.invoke sets them for a real run.
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    best = dict.fromkeys(PATHS, float("inf"))
    with tempfile.TemporaryDirectory() as tmp:
        messages = Path(tmp) / "messages.jsonl"
        write_messages(messages, schema, make_records(schema, args.records))
        lines = messages.read_bytes()
        for path in PATHS:  # warm-up: imports, compiled validators
            load(lines[: lines.index(b"\n", 100_000) + 1], Path(tmp) / f"warm-{path}.db", path)
        for repetition in range(args.repeat):
            for path in PATHS:  # interleaved, so a busy neighbour slows every path alike
                database = Path(tmp) / f"{repetition}-{PATHS.index(path)}.db"
                best[path] = min(best[path], load(lines, database, path))
    print(f"| target-sqlite, {args.records:,} host_detections records | CPU per record |")
    print("|:--|--:|")
    for path in PATHS:
        print(f"| {path} | {best[path] / args.records * 1e6:.1f} µs |")


if __name__ == "__main__":
    main()
