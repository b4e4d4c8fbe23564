"""target-sqlite throughput against the floor of raw sqlite3 executemany.

Generates N host_detections records shaped by the tap's own schema (RESULTS text of a few hundred
bytes, QDS factors as a nested list, big unique ids), pipes them through the real
``target-qualys-sqlite`` executable (the loader target-sqlite of meltano.yml), then inserts the
same rows, pre-flattened, with plain ``sqlite3.executemany`` into a table of the same shape in WAL
mode (same batch size, same pragmas). Prints one markdown table. CPU time (user + system) is the
headline: on a shared machine wall time mostly measures the neighbours.

    python -m benchmarks.target_sqlite [--rows 200000] [--profile] [--baseline DIR]

``--baseline DIR`` also runs another copy of the ``target_qualys_sqlite`` package (DIR holds a
``target_qualys_sqlite/`` folder, e.g. ``git archive HEAD:packages/target-qualys-sqlite
target_qualys_sqlite | tar -x -C DIR``), interleaved with the working tree's, for a before/after
table from one run on the same input.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import json
import os
import pstats
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "tap_qualys" / "schemas" / "host_detections.json"
STREAM = "host_detections"
KEYS = ["host_id", "unique_vuln_id"]  # as the tap declares them
BATCH_ROWS = 10_000

_WORDS = [
    "OpenSSL",
    "version",
    "detected",
    "vulnerable",
    "package",
    "installed",
    "kernel",
    "release",
    "fixed",
    "path",
    "/usr/lib/x86_64-linux-gnu/libssl.so.1.1",
    "service",
    "listening",
    "on",
    "port",
]


def _value(name: str, schema: dict, rng: random.Random, index: int) -> object:
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else [t for t in types if t != "null"]
    kind = types[0] if types else "string"
    if name == "unique_vuln_id":
        return 2**53 + index  # above 2^53: must survive exactly
    if name == "results":
        return " ".join(rng.choice(_WORDS) for _ in range(60))
    if kind == "array":
        return [{"name": f"factor_{i}", "value": str(rng.randint(0, 100))} for i in range(3)]
    if kind == "object":
        return {"name": "x", "value": str(rng.randint(0, 100))}
    if kind == "integer":
        return rng.randint(1, 2_000_000)
    if kind == "number":
        return round(rng.uniform(0, 10), 1)
    if kind == "boolean":
        return rng.random() < 0.5
    if schema.get("format") == "date-time":
        moment = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
        return (moment + datetime.timedelta(seconds=rng.randint(0, 10**8))).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
    return rng.choice(_WORDS)


def make_records(schema: dict, rows: int, seed: int = 7) -> list[dict]:
    """Realistic host_detections records; every property filled."""
    rng = random.Random(seed)
    properties = schema["properties"]
    return [
        {name: _value(name, sub, rng, i) for name, sub in properties.items()} for i in range(rows)
    ]


def write_messages(path: Path, schema: dict, records: list[dict]) -> None:
    encoder = msgspec.json.Encoder()
    with path.open("wb") as out:
        head = {"type": "SCHEMA", "stream": STREAM, "schema": schema, "key_properties": KEYS}
        out.write(encoder.encode(head) + b"\n")
        for record in records:
            out.write(encoder.encode({"type": "RECORD", "stream": STREAM, "record": record}))
            out.write(b"\n")
        out.write(b'{"type":"STATE","value":{"bookmarks":{}}}\n')


@dataclass
class Timing:
    """Wall seconds, and CPU seconds (user + system), which stay meaningful on a busy machine."""

    wall: float
    cpu: float


def run_target(
    messages: Path, database: Path, *, validate: bool = True, package_dir: Path | None = None
) -> Timing:
    """Timing of the real executable, interpreter startup included.

    ``package_dir``, if given, is put first on PYTHONPATH so its ``target_qualys_sqlite`` is the one
    run.
    """
    config = database.with_suffix(".json")
    settings = {"database": str(database), "batch_size_rows": BATCH_ROWS}
    config.write_text(json.dumps({**settings, "validate_records": validate}))
    exe = Path(sys.executable).parent / "target-qualys-sqlite"
    env = dict(os.environ)
    if package_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package_dir), env.get("PYTHONPATH")]))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with messages.open("rb") as stdin:
        subprocess.run(
            [str(exe), "--config", str(config)],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
            env=env,
        )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu)


def profile_target(messages: Path, database: Path) -> None:
    """Run the target in-process under cProfile and print the top of the profile."""
    from target_qualys_sqlite.target import TargetSQLite  # noqa: PLC0415

    target = TargetSQLite(config={"database": str(database), "batch_size_rows": BATCH_ROWS})
    profiler = cProfile.Profile()
    with messages.open() as stdin:
        profiler.runcall(target.listen, stdin)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


def run_floor(target_db: Path, floor_db: Path, schema: dict, records: list[dict]) -> Timing:
    """Seconds for raw executemany of pre-flattened rows into a same-shaped WAL table."""
    ddl = (
        sqlite3.connect(target_db)
        .execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (STREAM,))
        .fetchone()[0]
    )
    names = list(schema["properties"])
    rows = [
        tuple(
            json.dumps(v, separators=(",", ":")) if isinstance(v, (list, dict)) else v
            for v in (r[n] for n in names)
        )
        for r in records
    ]
    conn = sqlite3.connect(floor_db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(ddl)
    sql = f"INSERT INTO {STREAM} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    start, start_cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(rows), BATCH_ROWS):
        with conn:
            conn.executemany(sql, rows[i : i + BATCH_ROWS])
    timing = Timing(time.perf_counter() - start, time.process_time() - start_cpu)
    conn.close()
    return timing


@dataclass
class Result:
    rows: int
    floor: Timing
    targets: dict[str, Timing]
    """Target timings by setting variant."""

    def markdown(self) -> str:
        lines = [
            "| target-sqlite, host_detections | rows | target rows/s (CPU) | floor rows/s (CPU)"
            " | ratio (CPU) | ratio (wall) |",
            "|:--|--:|--:|--:|--:|--:|",
        ]
        for variant, target in self.targets.items():
            lines.append(
                f"| {variant} | {self.rows:,} | {self.rows / target.cpu:,.0f} | "
                f"{self.rows / self.floor.cpu:,.0f} | {self.floor.cpu / target.cpu:.2f} | "
                f"{self.floor.wall / target.wall:.2f} |"
            )
        return "\n".join(lines)


def run(rows: int = 200_000, *, profile: bool = False, baseline: Path | None = None) -> Result:
    schema = json.loads(SCHEMA_FILE.read_text())
    records = make_records(schema, rows)
    targets: dict[str, Timing] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        messages = work / "messages.jsonl"
        write_messages(messages, schema, records)
        if profile:
            profile_target(messages, work / "profiled.db")
        # validate_records=false is the SDK's own switch for a trusted tap (tap-qualys validates
        # what it emits); shown to separate validation cost from the rest.
        versions: list[tuple[str, Path | None]] = [("", None)]
        if baseline is not None:
            versions.insert(0, ("baseline, ", baseline))
        for variant, validate in (
            ("validate_records=true", True),
            ("validate_records=false", False),
        ):
            for label, package_dir in versions:
                target_db = work / f"target-{validate}-{bool(label)}.db"
                targets[label + variant] = run_target(
                    messages, target_db, validate=validate, package_dir=package_dir
                )
                with sqlite3.connect(target_db) as conn:
                    count = conn.execute(f"SELECT count(*) FROM {STREAM}").fetchone()[0]
                if count != rows:
                    msg = f"target wrote {count} rows, expected {rows}"
                    raise RuntimeError(msg)
        floor_timing = run_floor(target_db, work / "floor.db", schema, records)
    return Result(rows, floor_timing, targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the target")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="directory holding another target_qualys_sqlite package, run as well for before/after",
    )
    args = parser.parse_args()
    print(run(args.rows, profile=args.profile, baseline=args.baseline).markdown())


if __name__ == "__main__":
    main()
