"""The benchmark runner: sizes, repetitions, medians and the one markdown table.

Every figure in the table is a ratio against a floor measured in the same run, on the same
machine, right beside the measured thing: absolute times drift on shared machines, ratios much
less. The absolute numbers are printed too, as context.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Size:
    """Every workload size, in one place. ``smoke`` proves the harness; ``full`` measures."""

    # 1 and 2: tap CPU path and target path (the target loads the tap's own detections)
    tap_hosts: int
    tap_detections_per_host: int
    # 3: end to end, KB included
    e2e_hosts: int
    e2e_detections_per_host: int
    e2e_kb_size: int
    # 4: concurrency under server latency
    latency_hosts: int
    latency_batch: int
    latency_record_delay_sec: float
    latency_slots: tuple[int, ...]
    # 5: memory: nominal Host List Detection response sizes in MB
    memory_mb: tuple[int, ...]
    # 6: scale-out
    scale_hosts: int
    scale_detections_per_host: int
    # Postgres needs target-postgres from PyPI (installed once into the cache); smoke stays
    # offline and fast with target-sqlite per process.
    scale_postgres: bool
    # 7: purge sweep (full host-id list) vs an incremental hosts run
    sweep_hosts: int
    repeat: int


SIZES = {
    "smoke": Size(
        tap_hosts=120,
        tap_detections_per_host=20,
        e2e_hosts=100,
        e2e_detections_per_host=5,
        e2e_kb_size=300,
        latency_hosts=96,
        latency_batch=12,
        latency_record_delay_sec=0.04,
        latency_slots=(1, 2, 4),
        memory_mb=(10,),
        scale_hosts=100,
        scale_detections_per_host=5,
        scale_postgres=False,
        sweep_hosts=2_000,
        repeat=1,
    ),
    "full": Size(
        tap_hosts=2_000,
        tap_detections_per_host=50,
        e2e_hosts=10_000,
        e2e_detections_per_host=50,
        e2e_kb_size=2000,
        latency_hosts=1_600,
        latency_batch=40,
        latency_record_delay_sec=0.025,
        latency_slots=(1, 2, 4),
        memory_mb=(10, 100, 1000),
        scale_hosts=1000,
        scale_detections_per_host=20,
        scale_postgres=True,
        sweep_hosts=100_000,
        repeat=3,
    ),
}


@dataclass
class Sample:
    """One repetition of one row: the measured value, its floor, and their ratio."""

    ratio: float
    value: float
    floor: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Row:
    """One line of the table. ``met`` decides the goal from the samples' medians."""

    number: str
    name: str
    unit: str
    floor_name: str
    goal: str
    met: Callable[[Row], bool]
    samples: list[Sample] = field(default_factory=list)
    context: Callable[[Row], str] = lambda _row: ""

    def median(self, attribute: str = "ratio") -> float:
        return statistics.median(getattr(sample, attribute) for sample in self.samples)

    def extra_median(self, key: str) -> float:
        return statistics.median(sample.extra[key] for sample in self.samples)

    def extra_max(self, key: str) -> float:
        return max(sample.extra[key] for sample in self.samples)


@dataclass
class Context:
    """What every measurement gets: its size, a scratch directory, a log and shared artefacts."""

    size: Size
    size_name: str
    repeat: int
    workdir: Path
    cache: Path
    shared: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def log(self, message: str) -> None:
        elapsed = time.perf_counter() - self.started
        print(f"[benchmarks {elapsed:6.0f}s] {message}", file=sys.stderr, flush=True)

    def scratch(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


Measurement = Callable[[Context], list[Row]]


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render(rows: list[Row], ctx: Context, notes: list[str], seconds: float) -> str:
    machine = (
        f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )
    lines = [
        f"## tap-qualys benchmarks ({ctx.size_name}, {ctx.repeat} repetition"
        f"{'s' if ctx.repeat != 1 else ''}, {seconds:.0f} s)",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {machine}.",
        "Ratio = measured / floor of the same repetition; the median, min and max are over the "
        "repetitions.",
        "",
        "| # | measurement | ratio | min | max | goal | met | measured (median) "
        "| floor (median) | context |",
        "|---|---|--:|--:|--:|---|---|--:|--:|---|",
    ]
    for row in rows:
        ratios = [sample.ratio for sample in row.samples]
        lines.append(
            f"| {row.number} | {row.name} | {row.median():.2f} | {min(ratios):.2f} | "
            f"{max(ratios):.2f} | {row.goal} | {'yes' if row.met(row) else '**no**'} | "
            f"{_number(row.median('value'))} {row.unit} | "
            f"{_number(row.median('floor'))} {row.unit} ({row.floor_name}) | {row.context(row)} |"
        )
    lines += ["", "Method:", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def compile_bytecode(ctx: Context) -> None:
    """Write the .pyc files of this virtualenv and of the project, as ``pip install`` does.

    Where PYTHONDONTWRITEBYTECODE is set and the installer wrote no .pyc files (uv does not by
    default), every tap and target process would compile the SDK from source at start, about
    half a second of CPU that no plugin installed by pip or Meltano pays. Up-to-date files are
    skipped, so this is quick after the first run.
    """
    import compileall  # noqa: PLC0415
    import sysconfig  # noqa: PLC0415

    started = time.perf_counter()
    repo = Path(__file__).resolve().parent.parent
    targets = {Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["platlib"])}
    targets |= {
        repo / name
        for name in (
            "tap_qualys",
            "packages/target-qualys-sqlite/target_qualys_sqlite",
            "packages/qualys-simulator/qualys_simulator",
        )
    }
    for target in sorted(targets):
        compileall.compile_dir(target, quiet=2, workers=0)
    ctx.log(f"bytecode compiled in {time.perf_counter() - started:.1f} s")


def main(argv: list[str] | None = None) -> int:
    from benchmarks.measurements import MEASUREMENTS, NOTES  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure how close tap-qualys is to its limits; prints one markdown table.",
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--repeat", type=int, help="repetitions per row (default: 3 full, 1 smoke)")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(MEASUREMENTS),
        metavar="NAME",
        help=f"run only this measurement (repeatable): {', '.join(MEASUREMENTS)}",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS / "latest.md",
        help="also write the table here (default: benchmarks/results/latest.md)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory and logs")
    args = parser.parse_args(argv)

    size = SIZES[args.size]
    repeat = args.repeat or size.repeat
    cache = Path(
        os.environ.get("BENCHMARKS_CACHE_DIR")
        or Path(tempfile.gettempdir()) / "tap-qualys-benchmarks"
    )
    cache.mkdir(parents=True, exist_ok=True)
    names = args.only or list(MEASUREMENTS)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=cache))
    ctx = Context(size, args.size, repeat, workdir, cache)
    ctx.log(f"size {args.size}, {repeat} repetition(s), scratch {workdir}")
    compile_bytecode(ctx)
    rows: list[Row] = []
    notes: list[str] = []
    failed: list[str] = []
    try:
        for name in names:
            ctx.log(f"--- {name}")
            try:
                rows += MEASUREMENTS[name](ctx)
            except Exception as exc:  # noqa: BLE001 - one broken row must not lose the others
                ctx.log(f"{name} FAILED: {exc}")
                failed.append(f"**{name} failed**: {str(exc).splitlines()[0]}")
                continue
            notes.append(NOTES[name])
    finally:
        if not args.keep:
            import shutil  # noqa: PLC0415

            shutil.rmtree(workdir, ignore_errors=True)
    table = render(rows, ctx, failed + notes, time.perf_counter() - ctx.started)
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table)
    ctx.log(f"table written to {args.output}")
    return 1 if failed else 0
