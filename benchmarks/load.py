"""Load test (reliability scenario 7): a large VM subscription, faults on, full sync, exact check.

    .venv/bin/python -m benchmarks.load                       # 100k hosts x 50 detections
    .venv/bin/python -m benchmarks.load --hosts 2000 --detections-per-host 10   # a quick one

Runs the real pipeline, `tap-qualys | target-sqlite`, against the simulator with faults on
(503s, connections dropped mid-body, bodies cut short with an incident note, 200 error
documents, 409/1960, two 409/1965 with their ToWait, slow first bytes; 5% of calls each).
Then compares the SQLite database with the simulator's ground truth, record by record: every
key, no duplicates, every change field.

The detections' ground truth (5 million records at full size) is not fetched from the server,
which would build it in memory: it is generated here, streamed, by the simulator's own `World`
with the same options. The server's hosts and KnowledgeBase ground truth are fetched and must
equal the local ones, which proves both worlds are the same.

Prints one markdown table: wall time, peak RSS of the tap and the target (exact, from
wait4), requests, retries, faults injected, rows per stream, and the comparison's result.
Not part of CI: at full size it runs for tens of minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qualys_simulator.testing import SimulatorProcess
from qualys_simulator.world import World, WorldOptions

# One place for "equal" between a loaded value and the ground truth's (types, date formats).
from tests.e2e.loaded import compare_stream, same

BIN = Path(sys.executable).parent
TAP = BIN / "tap-qualys"
TARGET = BIN / "target-qualys-sqlite"
VM_STREAMS = ("knowledge_base", "hosts", "host_detections")
DEFAULT_FAULTS = {
    "http_503": 0.05, "drop": 0.05, "truncated_200": 0.05, "error_200": 0.05,
    "conflict_1960": 0.05, "conflict_1965": 0.05, "slow_first_byte": 0.05,
}


@dataclass
class Outcome:
    seconds: float = 0.0
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)


def select(catalog: dict[str, Any], streams: tuple[str, ...]) -> dict[str, Any]:
    for entry in catalog["streams"]:
        for item in entry.get("metadata", []):
            if item.get("breadcrumb") == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] in streams
    return catalog


def run_pipeline(workdir: Path, tap_config: dict[str, Any], streams: tuple[str, ...]) -> Outcome:
    """tap | target as two processes joined by a pipe; exact peak RSS of each from wait4."""
    config = workdir / "tap-config.json"
    config.write_text(json.dumps(tap_config))
    discovered = subprocess.run([TAP, "--config", config, "--discover"], capture_output=True,
                                check=True, text=True)
    catalog = workdir / "catalog.json"
    catalog.write_text(json.dumps(select(json.loads(discovered.stdout), streams)))
    target_config = workdir / "target-config.json"
    target_config.write_text(json.dumps({"database": str(workdir / "load.db")}))
    started = time.perf_counter()
    with (workdir / "tap.stderr").open("wb") as tap_err, \
            (workdir / "target.stdout").open("wb") as target_out, \
            (workdir / "target.stderr").open("wb") as target_err:
        tap = subprocess.Popen([TAP, "--config", config, "--catalog", catalog],
                               stdout=subprocess.PIPE, stderr=tap_err)
        target = subprocess.Popen([TARGET, "--config", target_config], stdin=tap.stdout,
                                  stdout=target_out, stderr=target_err)
        assert tap.stdout is not None
        tap.stdout.close()
        outcome = Outcome()
        for name, process in (("tap", tap), ("target", target)):
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            outcome.exit_codes[name] = process.returncode
            outcome.peak_rss_mib[name] = usage.ru_maxrss / 1024
            outcome.cpu_seconds[name] = usage.ru_utime + usage.ru_stime
    outcome.seconds = time.perf_counter() - started
    return outcome


def retries_from_log(stderr: str) -> dict[str, int]:
    """The tap's end-of-stream lines: "<stream>: done: N records, R requests, T retries, ..."."""
    totals = {"requests": 0, "retries": 0}
    for line in stderr.splitlines():
        if ": done: " not in line:
            continue
        parts = line.split(": done: ", 1)[1].split(", ")
        for part in parts:
            words = part.split()
            if len(words) >= 2 and words[1] in totals and words[0].replace(",", "").isdigit():
                totals[words[1]] += int(words[0].replace(",", ""))
    return totals


def database_rows(database: Path, stream: str, order: str) -> Iterator[dict[str, Any]]:
    connection = sqlite3.connect(database)
    connection.row_factory = sqlite3.Row
    try:
        yield from (dict(row) for row in connection.execute(
            f'SELECT * FROM "{stream}" ORDER BY {order}'))
    finally:
        connection.close()


def compare_detections(database: Path, world: World) -> list[str]:
    """Merge-compare the loaded detections with the streamed ground truth, in key order."""
    problems: list[str] = []
    connection = sqlite3.connect(database)
    duplicates = connection.execute(
        "SELECT COUNT(*) FROM (SELECT 1 FROM host_detections GROUP BY host_id, unique_vuln_id "
        "HAVING COUNT(*) > 1)").fetchone()[0]
    connection.close()
    if duplicates:
        problems.append(f"host_detections: {duplicates} keys loaded more than once")
    loaded = database_rows(database, "host_detections", "host_id, unique_vuln_id")
    row = next(loaded, None)
    missing = extra = mismatched = count = 0
    for truth in world.ground_truth("host_detections"):
        count += 1
        key = (truth["HOST_ID"], truth["UNIQUE_VULN_ID"])
        while row is not None and (row["host_id"], row["unique_vuln_id"]) < key:
            extra += 1
            row = next(loaded, None)
        if row is None or (row["host_id"], row["unique_vuln_id"]) != key:
            missing += 1
            continue
        if not all(same(value, row.get(name.lower())) for name, value in truth.items()):
            mismatched += 1
            if mismatched <= 3:
                problems.append(f"host_detections {key}: expected {truth}, loaded {row}")
        row = next(loaded, None)
    while row is not None:
        extra += 1
        row = next(loaded, None)
    if missing or extra or mismatched:
        problems.append(f"host_detections: {missing} missing, {extra} not in the ground truth, "
                        f"{mismatched} with different values, of {count:,}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=100_000)
    parser.add_argument("--detections-per-host", type=float, default=50)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--host-batch-size", type=int, default=1000)
    parser.add_argument("--fault", action="append", default=[], metavar="NAME=P",
                        help=f"replaces the default faults {DEFAULT_FAULTS}")
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)

    faults = dict(DEFAULT_FAULTS)
    if args.fault:
        faults = {name: float(p) for name, _, p in (f.partition("=") for f in args.fault)}
    if args.no_faults:
        faults = {}
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tap-qualys-load-"))
    workdir.mkdir(parents=True, exist_ok=True)
    options = {"hosts": args.hosts, "seed": args.seed,
               "detections_per_host": args.detections_per_host}
    print(f"workdir {workdir}; simulator {options}; faults {faults}", file=sys.stderr)

    with SimulatorProcess(**options, fault=[f"{k}={v}" for k, v in faults.items()],
                          slow_first_byte_sec=1, startup_timeout=120) as sim:
        if "conflict_1965" in faults:
            # Each injected 1965 asks for 5 s; two prove ToWait is honoured at scale.
            sim.configure(fault_budget={"conflict_1965": 2})
        outcome = run_pipeline(workdir, {
            "username": sim.username, "password": sim.password, "api_server": sim.url,
            "gateway_url": sim.url, "host_batch_size": args.host_batch_size,
            "retry_backoff_seconds": 0.5, "max_retries": 10,
        }, VM_STREAMS)
        load_average = os.getloadavg()
        stats = sim.stats()
        log = (workdir / "tap.stderr").read_text(errors="replace")
        if outcome.exit_codes != {"tap": 0, "target": 0}:
            tail = "\n".join(log.splitlines()[-20:])
            print(f"pipeline failed {outcome.exit_codes}:\n{tail}", file=sys.stderr)
            return 1

        checked = time.perf_counter()
        world = World(WorldOptions(**options))
        database = workdir / "load.db"
        problems: list[str] = []
        for stream in ("knowledge_base", "hosts"):
            truth = sim.ground_truth(stream)
            local = list(world.ground_truth(stream))
            if truth != local:
                problems.append(f"{stream}: the local world differs from the server's")
            loaded = list(database_rows(database, stream, "1"))
            problems += compare_stream(stream, truth, loaded)
        problems += compare_detections(database, world)
        check_seconds = time.perf_counter() - checked

    connection = sqlite3.connect(database)
    rows = {s: connection.execute(f'SELECT COUNT(*) FROM "{s}"').fetchone()[0]
            for s in VM_STREAMS}
    connection.close()
    counts = retries_from_log(log)
    table = [
        ("hosts x detections per host", f"{args.hosts:,} x {args.detections_per_host:g}"),
        ("rows loaded", ", ".join(f"{s} {n:,}" for s, n in rows.items())),
        ("wall time, full sync", f"{outcome.seconds:,.0f} s"),
        ("detections per second", f"{rows['host_detections'] / outcome.seconds:,.0f}"),
        ("peak RSS tap / target", f"{outcome.peak_rss_mib['tap']:,.0f} MiB / "
                                  f"{outcome.peak_rss_mib['target']:,.0f} MiB"),
        ("CPU time tap / target", f"{outcome.cpu_seconds['tap']:,.0f} s / "
                                  f"{outcome.cpu_seconds['target']:,.0f} s"),
        ("machine load average (1/5/15 min) as the sync ended",
         " / ".join(f"{x:.1f}" for x in load_average)),
        ("requests / retries (tap)", f"{counts['requests']:,} / {counts['retries']:,}"),
        ("faults injected", ", ".join(f"{k} {v}" for k, v in sorted(stats["faults"].items()))
         or "none"),
        ("ToWait honoured / violated", f"{stats['towait']['honoured']} / "
                                       f"{stats['towait']['violated']}"),
        ("peak parallel detection calls", str(stats["peak_concurrency"].get("host_detection"))),
        ("ground truth", "equal" if not problems else "; ".join(problems)[:500]),
        ("ground-truth check time", f"{check_seconds:,.0f} s"),
    ]
    print("| measure | value |\n|---|---|")
    for name, value in table:
        print(f"| {name} | {value} |")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
