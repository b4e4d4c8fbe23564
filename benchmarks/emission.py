"""CPU per detection of the three ways to write a RECORD line: what emit.py's privates buy.

The tap-qualys row of the table times a whole run, where emission is one cost among many and a
smoke run is too short to tell these paths apart. This times emission alone, in process, on the
records of ``tests/fixtures/xml/host_list_detection.xml`` repeated to ``--records``: spooled as
the tap spools them, then written by ``emit.SingerWriter`` into a buffer as

- ``EncodedRecord`` lines (``EncodedRecordStream._generate_record_messages``, the default path),
- decoded dicts through the same override, which skips the SDK's selection walk,
- decoded dicts through the SDK's own ``Stream._generate_record_messages``.

CPU time (process time), best of ``--repeat``; prints one markdown table.

    python -m benchmarks.emission [--records 30000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import typing as t
from datetime import datetime, timezone
from pathlib import Path

from singer_sdk import Stream

from tap_qualys import qualys_xml
from tap_qualys.emit import EncodedRecord, RecordSpool, SingerWriter, record_line_parts
from tap_qualys.tap import TapQualys

FIXTURE = Path(__file__).parent.parent / "tests" / "fixtures" / "xml" / "host_list_detection.xml"
CONFIG = {
    "username": "qa_sim_user",
    "password": "not-used",
    "api_server": "http://127.0.0.1:1",
    "gateway_url": "http://127.0.0.1:1",
}


def main(argv: list[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    parsed = list(qualys_xml.parse_host_list_detection([FIXTURE.read_bytes()]))
    records = (parsed * (args.records // len(parsed) + 1))[: args.records]
    stream = TapQualys(config=CONFIG, validate_config=False).streams["host_detections"]
    writer = SingerWriter()

    def spool() -> RecordSpool:
        spooled = RecordSpool()
        for record in records:
            spooled.append(record)
        return spooled

    def encoded() -> None:
        prefix, suffix = record_line_parts(stream.name, None, datetime.now(timezone.utc))
        for line in spool().encoded():
            for message in stream._generate_record_messages(EncodedRecord(prefix + line + suffix)):
                writer.write_message(message)

    def skipped_walk() -> None:
        for record in spool():
            for message in stream._generate_record_messages(record):
                writer.write_message(message)

    def sdk_path() -> None:
        for record in spool():
            for message in Stream._generate_record_messages(stream, record):
                writer.write_message(message)

    variants: list[tuple[str, t.Callable[[], None]]] = [
        ("EncodedRecord lines (default)", encoded),
        ("decoded, selection walk skipped", skipped_walk),
        ("decoded, the SDK's own path", sdk_path),
    ]
    print(
        f"{args.records:,} detections ({len(parsed)} distinct) spooled and written, best of "
        f"{args.repeat}\n"
    )
    print("| path | CPU µs per record | records/s |\n|---|--:|--:|")
    for name, run in variants:
        best = float("inf")
        for _ in range(args.repeat):
            real, sys.stdout = sys.stdout, io.TextIOWrapper(io.BytesIO())
            try:
                started = time.process_time()
                run()
                best = min(best, time.process_time() - started)
            finally:
                sys.stdout = real
        print(f"| {name} | {best / args.records * 1e6:.1f} | {args.records / best:,.0f} |")


if __name__ == "__main__":
    main()
