"""The six measurements. Each starts its own simulator and returns its table rows."""

from __future__ import annotations

import json
import re
import sqlite3
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks import target_sqlite as target_bench
from benchmarks.harness import Context, Row, Sample
from benchmarks.postgres import NOTE as POSTGRES_NOTE
from benchmarks.postgres import postgres as postgres_rows
from benchmarks.processes import (
    REPO,
    TAP,
    TARGET_SQLITE,
    BenchmarkError,
    find_meltano,
    meltano_env,
    meltano_install,
    meltano_plugin_executable,
    pipe,
    run,
    select_streams,
    venv_tool,
    write_json,
)
from benchmarks.replay import ReplayProxy
from qualys_simulator.testing import SimulatorProcess

SEED = 20261123
DETECTION_PATH = "/vm/detection/"
VM_STREAMS = ("hosts", "host_detections")
MIB_LIMIT = 200
# "Flat": a bigger answer may cost at most this much more peak RSS than the smallest one. A
# buffer of fixed size filling up is fine (the tap spools up to 8 MiB in memory); growth with the
# size of the answer is not.
FLAT_MIB = 32
# Host List Detection bytes per host with --long-results-fraction 1 and 10 detections per host
# (RESULTS tens of KB each), measured on this simulator: used to size the memory responses.
MB_PER_LONG_RESULTS_HOST = 0.31


# --- shared helpers -----------------------------------------------------------------------------


def tap_settings(url: str, sim: SimulatorProcess, **settings: Any) -> dict[str, Any]:
    return {
        "username": sim.username,
        "password": sim.password,
        "api_server": url,
        "gateway_url": url,
        **settings,
    }


def discovered(ctx: Context) -> dict[str, Any]:
    """The tap's catalog, discovered once per run (discovery needs no server)."""
    if "catalog" not in ctx.shared:
        work = ctx.scratch("discover")
        config = write_json(
            work / "config.json",
            {"username": "qa_sim_user", "password": "-", "api_server": "http://127.0.0.1:9"},
        )
        output = work / "catalog.json"
        run([TAP, "--config", config, "--discover"], log=work / "discover.log", stdout=output)
        ctx.shared["catalog"] = json.loads(output.read_text())
    catalog: dict[str, Any] = ctx.shared["catalog"]
    return catalog


def catalog_file(ctx: Context, path: Path, streams: Iterable[str]) -> Path:
    return write_json(path, select_streams(discovered(ctx), streams))


def messages(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def count_records(path: Path, stream: str) -> int:
    needle = f'"stream":"{stream}"'.encode()
    with path.open("rb") as lines:
        return sum(1 for line in lines if line.startswith(b'{"type":"RECORD"') and needle in line)


def detection_keys(records: Iterable[dict[str, Any]]) -> set[tuple[int, int]]:
    return {(int(record["HOST_ID"]), int(record["UNIQUE_VULN_ID"])) for record in records}


def best_floor(bodies: list[bytes]) -> tuple[str, float, float, int]:
    """The fastest of the parser helper's floor candidates on these bodies.

    Returns its name, wall seconds, CPU seconds and the number of detections it parsed.
    """
    from benchmarks import parsers  # noqa: PLC0415 - orjson and xmltodict: only this row

    best: tuple[str, float, float, int] | None = None
    for name, parse in parsers.FLOORS.items():
        chunked = [list(parsers.rechunk([body])) for body in bodies]
        started, cpu_started = time.perf_counter(), time.process_time()
        count = sum(parse(chunks) for chunks in chunked)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        if best is None or elapsed < best[1]:
            best = (name.replace(" (floor candidate)", ""), elapsed, cpu, count)
    assert best is not None
    return best


def _goal_at_least(threshold: float) -> Any:
    return lambda row: row.median() >= threshold


# --- 1. tap CPU path ---------------------------------------------------------------------------


def tap_cpu(ctx: Context) -> list[Row]:
    size = ctx.size
    work = ctx.scratch("tap")
    row = Row(
        "1",
        "Tap CPU path: tap-qualys detections/s vs parse+serialize floor",
        "det/s",
        "fastest parser",
        "≥ 0.50",
        _goal_at_least(0.5),
    )
    with (
        SimulatorProcess(
            hosts=size.tap_hosts, seed=SEED, detections_per_host=size.tap_detections_per_host
        ) as sim,
        ReplayProxy(sim.url) as proxy,
    ):
        config = write_json(work / "config.json", tap_settings(proxy.url, sim))
        catalog = catalog_file(ctx, work / "catalog.json", VM_STREAMS)
        output = work / "tap-output.jsonl"
        ctx.log("tap: warming the replay cache (the simulator renders each answer once)")
        run([TAP, "--config", config, "--catalog", catalog], log=work / "warm.log", stdout=output)
        detections = count_records(output, "host_detections")
        truth = len(sim.ground_truth("host_detections"))
        if detections != truth:
            msg = f"tap emitted {detections} detections, the simulator holds {truth}"
            raise BenchmarkError(msg)
        ctx.shared["tap_output"] = output
        # The detection batches; not the tap's concurrency probe (truncation_limit=1).
        bodies = proxy.bodies(DETECTION_PATH, b"truncation_limit=0")
        megabytes = sum(map(len, bodies)) / 1e6
        # The fixed cost of a run (interpreter, SDK imports, one Host List call, one tiny
        # batch): the same tap limited to the first host.
        first_host = int(sim.ground_truth("hosts")[0]["ID"])
        one_host = write_json(
            work / "one-host.json", tap_settings(proxy.url, sim, id_max=first_host)
        )
        one_output = work / "one-host-output.jsonl"
        run(
            [TAP, "--config", one_host, "--catalog", catalog],
            log=work / "warm-1.log",
            stdout=one_output,
        )
        marginal = detections - count_records(one_output, "host_detections")
        misses = proxy.misses
        floor_names: Counter[str] = Counter()
        for repetition in range(ctx.repeat):
            finished = run(
                [TAP, "--config", config, "--catalog", catalog],
                log=work / f"run-{repetition}.log",
            )
            fixed = run(
                [TAP, "--config", one_host, "--catalog", catalog],
                log=work / f"one-host-{repetition}.log",
            )
            name, floor_seconds, floor_cpu, floor_count = best_floor(bodies)
            if floor_count != detections:
                msg = f"floor parsed {floor_count} detections, the tap emitted {detections}"
                raise BenchmarkError(msg)
            floor_names[name] += 1
            rate = detections / finished.seconds
            floor_rate = detections / floor_seconds
            extra = {
                "cpu": floor_cpu / finished.cpu_seconds,
                "marginal": marginal / (finished.seconds - fixed.seconds) / floor_rate,
                "marginal_cpu": floor_cpu / (finished.cpu_seconds - fixed.cpu_seconds),
                "fixed": fixed.seconds,
            }
            row.samples.append(Sample(rate / floor_rate, rate, floor_rate, extra))
            ctx.log(
                f"tap: {rate:,.0f} det/s ({finished.cpu_seconds:.1f} s CPU), floor "
                f"{floor_rate:,.0f} det/s ({floor_cpu:.1f} s CPU, {name})"
            )
        if proxy.misses != misses:
            msg = "timed tap runs missed the replay cache: the simulator was in the loop"
            raise BenchmarkError(msg)
    row.floor_name = floor_names.most_common(1)[0][0]
    row.context = lambda row: (
        f"{detections:,} detections of {size.tap_hosts:,} hosts in {len(bodies)} HLD "
        f"answer(s), {megabytes:.0f} MB XML; ratio on CPU seconds: "
        f"{row.extra_median('cpu'):.2f}; without the fixed cost of a run (a 1-host run, "
        f"{row.extra_median('fixed'):.1f} s): {row.extra_median('marginal'):.2f} wall, "
        f"{row.extra_median('marginal_cpu'):.2f} CPU"
    )
    return [row]


# --- 2. target path ------------------------------------------------------------------------------


def _tap_output(ctx: Context) -> Path:
    """The tap's own output for the row-1 workload (from row 1 when it ran)."""
    if "tap_output" in ctx.shared:
        path: Path = ctx.shared["tap_output"]
        return path
    size = ctx.size
    work = ctx.scratch("tap-output")
    with SimulatorProcess(
        hosts=size.tap_hosts, seed=SEED, detections_per_host=size.tap_detections_per_host
    ) as sim:
        config = write_json(work / "config.json", tap_settings(sim.url, sim))
        catalog = catalog_file(ctx, work / "catalog.json", VM_STREAMS)
        output = work / "tap-output.jsonl"
        run([TAP, "--config", config, "--catalog", catalog], log=work / "tap.log", stdout=output)
    ctx.shared["tap_output"] = output
    return output


def target_path(ctx: Context) -> list[Row]:
    work = ctx.scratch("target")
    row = Row(
        "2",
        "Target path: target-sqlite host_detections rows/s vs sqlite3 executemany",
        "rows/s",
        "executemany",
        "≥ 0.50",
        _goal_at_least(0.5),
    )
    ctx.log("target: taking the tap's detection messages")
    source = _tap_output(ctx)
    stream_messages = work / "host_detections.jsonl"
    # The SCHEMA alone: what a run costs before its first record (interpreter, imports, DDL).
    schema_only = work / "host_detections-schema.jsonl"
    schema: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    with stream_messages.open("wb") as out, schema_only.open("wb") as schema_out:
        for message in messages(source):
            if message.get("stream") not in (None, "host_detections"):
                continue
            line = json.dumps(message, separators=(",", ":")).encode() + b"\n"
            if message["type"] == "SCHEMA":
                schema = message["schema"]
                schema_out.write(line)
            elif message["type"] == "RECORD":
                records.append(message["record"])
            out.write(line)
    properties = list(schema["properties"])
    # The floor inserts every schema column; a record leaves out the properties it lacks.
    rows = [{name: record.get(name) for name in properties} for record in records]
    for repetition in range(ctx.repeat):
        database = work / f"target-{repetition}.db"
        target = target_bench.run_target(stream_messages, database)
        with sqlite3.connect(database) as connection:
            loaded = connection.execute("SELECT count(*) FROM host_detections").fetchone()[0]
        if loaded != len(rows):
            msg = f"target-sqlite loaded {loaded} rows of {len(rows)}"
            raise BenchmarkError(msg)
        fixed = target_bench.run_target(schema_only, work / f"fixed-{repetition}.db")
        floor = target_bench.run_floor(database, work / f"floor-{repetition}.db", schema, rows)
        rate, floor_rate = len(rows) / target.wall, len(rows) / floor.wall
        extra = {
            "cpu": floor.cpu / target.cpu,
            # Tiny runs (smoke) can measure no difference at all; the bound avoids dividing by it.
            "marginal": floor.wall / max(target.wall - fixed.wall, 1e-3),
            "marginal_cpu": floor.cpu / max(target.cpu - fixed.cpu, 1e-3),
            "fixed": fixed.wall,
        }
        row.samples.append(Sample(rate / floor_rate, rate, floor_rate, extra))
        ctx.log(
            f"target: {rate:,.0f} rows/s ({target.cpu:.2f} s CPU, {fixed.cpu:.2f} s of it "
            f"before the first record), executemany {floor_rate:,.0f} rows/s "
            f"({floor.cpu:.2f} s CPU)"
        )
        for path in work.glob(f"*-{repetition}.db*"):
            path.unlink()
    row.context = lambda row: (
        f"{len(rows):,} rows of the tap's own output, batches of {target_bench.BATCH_ROWS:,}; "
        f"ratio on CPU seconds: {row.extra_median('cpu'):.2f}; without the fixed cost of a run "
        f"(the SCHEMA alone, {row.extra_median('fixed'):.1f} s): "
        f"{row.extra_median('marginal'):.2f} wall, {row.extra_median('marginal_cpu'):.2f} CPU"
    )
    return [row]


# --- 3. end to end -----------------------------------------------------------------------------


E2E_STREAMS = ("knowledge_base", "hosts", "host_detections")


def _sqlite_counts(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as connection:
        return {
            stream: connection.execute(f"SELECT count(*) FROM {stream}").fetchone()[0]
            for stream in E2E_STREAMS
        }


def end_to_end(ctx: Context) -> list[Row]:
    size = ctx.size
    work = ctx.scratch("e2e")
    meltano = find_meltano()
    if meltano is None:
        msg = "Meltano not found: set MELTANO_BIN or put meltano on PATH"
        raise BenchmarkError(msg)
    sys_dir = ctx.cache / "meltano"
    ctx.log("e2e: meltano install tap-qualys target-sqlite (once per cache directory)")
    meltano_install(meltano, sys_dir, ["tap-qualys", "target-sqlite"], work / "install.log")
    tap = meltano_plugin_executable(sys_dir, "extractors", "tap-qualys")
    target = meltano_plugin_executable(sys_dir, "loaders", "target-sqlite", "target-qualys-sqlite")
    row = Row(
        "3",
        "End to end: `meltano run` wall vs the same plain pipe",
        "s",
        "pipe",
        "≤ 1.20",
        lambda row: row.median() <= 1.2,
    )
    with (
        SimulatorProcess(
            hosts=size.e2e_hosts,
            seed=SEED,
            kb_size=size.e2e_kb_size,
            detections_per_host=size.e2e_detections_per_host,
        ) as sim,
        ReplayProxy(sim.url) as proxy,
    ):
        settings = tap_settings(proxy.url, sim)
        config = write_json(work / "tap.json", settings)
        catalog = catalog_file(ctx, work / "catalog.json", E2E_STREAMS)
        truth = {stream: len(sim.ground_truth(stream)) for stream in E2E_STREAMS}
        env = meltano_env(sys_dir)
        env.update({f"TAP_QUALYS_{key.upper()}": str(value) for key, value in settings.items()})
        # The pipe's own catalog, through the extractor's documented `catalog` extra. Meltano
        # never caches discovery for a `pip_url: -e .` plugin, so without it every run would
        # discover again, which a user's non-editable install does only once.
        env["TAP_QUALYS__CATALOG"] = str(catalog)

        def piped(label: str) -> float:
            database = work / f"{label}.db"
            target_config = write_json(work / f"{label}.json", {"database": str(database)})
            *_, seconds = pipe(
                [tap, "--config", config, "--catalog", catalog],
                [target, "--config", target_config],
                logs=(work / f"{label}-tap.log", work / f"{label}-target.log"),
            )
            _check(database, label)
            return seconds

        def meltano_run(label: str) -> float:
            database = work / f"{label}.db"
            run_env = {
                **env,
                "TARGET_SQLITE_DATABASE": str(database),
                "MELTANO_DATABASE_URI": f"sqlite:///{work / f'{label}-state.db'}",
            }
            finished = run(
                [meltano, "run", "tap-qualys", "target-sqlite"],
                log=work / f"{label}.log",
                env=run_env,
                cwd=REPO,
            )
            _check(database, label)
            return finished.seconds

        def _check(database: Path, label: str) -> None:
            counts = _sqlite_counts(database)
            if counts != truth:
                msg = f"{label}: loaded {counts}, the simulator holds {truth}"
                raise BenchmarkError(msg)
            for path in work.glob(f"{label}*.db*"):
                path.unlink()

        ctx.log("e2e: warming the replay cache with one plain pipe")
        piped("warm")
        for repetition in range(ctx.repeat):
            # Alternate the order, so neither side always runs on a warmer machine.
            if repetition % 2:
                melt = meltano_run(f"meltano-{repetition}")
                plain = piped(f"pipe-{repetition}")
            else:
                plain = piped(f"pipe-{repetition}")
                melt = meltano_run(f"meltano-{repetition}")
            row.samples.append(Sample(melt / plain, melt, plain))
            ctx.log(f"e2e: meltano run {melt:.1f} s, pipe {plain:.1f} s")
    row.context = lambda _row: (
        f"{truth['host_detections']:,} detections, {truth['hosts']:,} hosts, "
        f"{truth['knowledge_base']:,} QIDs into SQLite; "
        f"{truth['host_detections'] / _row.median('floor'):,.0f} det/s through the pipe"
    )
    return [row]


# --- 4. concurrency under server latency ---------------------------------------------------------


class SlotSampler:
    """Polls /admin/stats to see how many detection calls the server is running, over time."""

    def __init__(self, sim: SimulatorProcess, interval: float = 0.02) -> None:
        self.sim = sim
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            running = self.sim.stats().get("running", {}).get("host_detection", 0)
            self.samples.append((time.perf_counter(), int(running)))
            self._stop.wait(self.interval)

    @contextmanager
    def sampling(self) -> Iterator[SlotSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()

    def phase(self) -> tuple[float, float]:
        """Seconds from the first to the last sample with a call running; mean running calls."""
        busy = [index for index, (_, running) in enumerate(self.samples) if running]
        if not busy:
            return 0.0, 0.0
        window = self.samples[busy[0] : busy[-1] + 1]
        seconds = window[-1][0] - window[0][0] + self.interval
        return seconds, statistics.fmean(running for _, running in window)


def concurrency(ctx: Context) -> list[Row]:
    size = ctx.size
    work = ctx.scratch("latency")
    batches = size.latency_hosts // size.latency_batch
    latency = size.latency_record_delay_sec * size.latency_batch
    slots = size.latency_slots
    rows = {n: _concurrency_row(n) for n in slots if n > 1}
    with SimulatorProcess(
        hosts=size.latency_hosts,
        seed=SEED,
        detections_per_host=2,
        fault=["slow_first_byte=1"],
        fault_endpoints="host_detection",
        slow_first_byte_sec=latency,
    ) as sim:
        catalog = catalog_file(ctx, work / "catalog.json", VM_STREAMS)
        for repetition in range(ctx.repeat):
            results: dict[int, tuple[float, float, float, int, int]] = {}
            for n in slots:
                sim.configure(concurrency_limit=n)
                sim.reset_stats()
                config = write_json(
                    work / f"config-{n}.json",
                    tap_settings(
                        sim.url, sim, max_concurrency=n, host_batch_size=size.latency_batch
                    ),
                )
                with SlotSampler(sim).sampling() as sampler:
                    finished = run(
                        [TAP, "--config", config, "--catalog", catalog],
                        log=work / f"run-{repetition}-{n}.log",
                    )
                stats = sim.stats()
                conflicts = sum(
                    count
                    for status, count in stats["responses"].get("host_detection", {}).items()
                    if status.startswith("409")
                )
                phase, mean_running = sampler.phase()
                peak = stats["peak_concurrency"].get("host_detection", 0)
                results[n] = (finished.seconds, phase, mean_running / n, conflicts, peak)
                ctx.log(
                    f"latency: {n} slot(s): wall {finished.seconds:.1f} s, detection phase "
                    f"{phase:.1f} s, slots busy {mean_running / n:.0%}, 409s {conflicts}, "
                    f"peak {peak}"
                )
            one = results[1]
            for n, row in rows.items():
                wall, phase, busy, conflicts, peak = results[n]
                row.samples.append(
                    Sample(
                        one[1] / phase,
                        phase,
                        one[1],
                        {
                            "wall": wall,
                            "wall1": one[0],
                            "busy": busy,
                            "busy1": one[2],
                            "409s": conflicts,
                            "peak": peak,
                        },
                    )
                )
    for n, row in rows.items():
        row.context = _concurrency_context(n, f"{batches} batches x {latency:.2f} s latency")
    return list(rows.values())


def _concurrency_row(slots: int) -> Row:
    def met(row: Row) -> bool:
        return row.median() >= 0.9 * slots and row.extra_max("409s") == 0

    return Row(
        f"4.{slots}",
        f"Concurrency: detection phase speedup at {slots} slots over 1 slot",
        "s",
        "1 slot",
        f"≥ {0.9 * slots:.1f}, 0 self-caused 409s",
        met,
    )


def _concurrency_context(slots: int, workload: str) -> Callable[[Row], str]:
    def context(row: Row) -> str:
        return (
            f"slots busy {row.extra_median('busy'):.0%} (1 slot: "
            f"{row.extra_median('busy1'):.0%}); 409s {row.extra_max('409s'):.0f}; peak "
            f"{row.extra_max('peak'):.0f}/{slots}; tap wall {row.extra_median('wall'):.1f} s vs "
            f"{row.extra_median('wall1'):.1f} s at 1 slot; {workload}"
        )

    return context


# --- 5. memory ----------------------------------------------------------------------------------


def memory(ctx: Context) -> list[Row]:
    size = ctx.size
    work = ctx.scratch("memory")
    catalog = catalog_file(ctx, work / "catalog.json", VM_STREAMS)
    rows: list[Row] = []
    smallest: list[float] = []
    for megabytes in size.memory_mb:
        hosts = max(1, round(megabytes / MB_PER_LONG_RESULTS_HOST))
        row = Row(
            f"5.{len(rows) + 1}",
            f"Memory: tap peak RSS, one {megabytes:,} MB HLD answer vs a 1-host answer",
            "MiB",
            "1 host",
            f"< {MIB_LIMIT} MiB" + (f", ≤ row 5.1 + {FLAT_MIB} MiB (flat)" if rows else ""),
            _memory_goal(smallest),
        )
        with (
            SimulatorProcess(
                hosts=hosts, seed=SEED, detections_per_host=10, long_results_fraction=1.0
            ) as sim,
            ReplayProxy(sim.url) as proxy,
        ):
            first_host = int(sim.ground_truth("hosts")[0]["ID"])
            # One batch, one answer: truncation_limit=0 is the tap's own for detections.
            settings = tap_settings(proxy.url, sim, host_batch_size=hosts + 1)
            config = write_json(work / f"config-{megabytes}.json", settings)
            floor_config = write_json(
                work / f"floor-{megabytes}.json", {**settings, "id_max": first_host}
            )
            ctx.log(f"memory: {megabytes} MB: {hosts} hosts")
            # Peak RSS hardly varies between runs; a 1 GB answer is read once, not per repeat.
            for repetition in range(1 if megabytes >= 1000 else ctx.repeat):
                floor = run(
                    [TAP, "--config", floor_config, "--catalog", catalog],
                    log=work / f"floor-{megabytes}-{repetition}.log",
                    peak_rss=True,
                )
                peak = run(
                    [TAP, "--config", config, "--catalog", catalog],
                    log=work / f"run-{megabytes}-{repetition}.log",
                    peak_rss=True,
                )
                row.samples.append(
                    Sample(
                        peak.peak_rss_mib / floor.peak_rss_mib,
                        peak.peak_rss_mib,
                        floor.peak_rss_mib,
                    )
                )
                ctx.log(
                    f"memory: peak {peak.peak_rss_mib:.0f} MiB (1 host: "
                    f"{floor.peak_rss_mib:.0f} MiB) in {peak.seconds:.1f} s"
                )
            answer_mb = max(map(len, proxy.bodies(DETECTION_PATH))) / 1e6
        if not smallest:
            smallest.append(row.median("value"))
        row.context = _memory_context(answer_mb, hosts, smallest[0])
        rows.append(row)
    return rows


def _memory_goal(smallest: list[float]) -> Callable[[Row], bool]:
    """Under the limit, and (beyond the first size) hardly above the first size's peak."""

    def met(row: Row) -> bool:
        peak = row.median("value")
        return peak < MIB_LIMIT and (not smallest or peak <= smallest[0] + FLAT_MIB)

    return met


def _memory_context(answer_mb: float, hosts: int, smallest_mib: float) -> Callable[[Row], str]:
    def context(row: Row) -> str:
        return (
            f"{answer_mb:,.0f} MB answer ({hosts:,} hosts x 10 detections, RESULTS tens of KB); "
            f"{row.median('value') - smallest_mib:+.0f} MiB vs row 5.1"
        )

    return context


# --- 5.4-5.5 memory, every stream ---------------------------------------------------------------

#: Subscription sizes of the every-stream memory rows (the simulator's defaults otherwise: 8
#: detections per host, 8 PCRS policies of which 6 active, 1.5 CSAM assets per host).
EVERY_STREAM_HOSTS = {"smoke": (100,), "full": (1_000, 10_000)}
_DONE = re.compile(r"\| (\w+): done: ([\d,]+) records")


def _emitted(log: Path) -> dict[str, int]:
    """Records per stream, from the tap's end-of-stream lines."""
    return {
        stream: int(count.replace(",", ""))
        for stream, count in _DONE.findall(log.read_text(errors="replace"))
    }


def every_stream_memory(ctx: Context) -> list[Row]:
    work = ctx.scratch("memory-every-stream")
    streams = [stream["tap_stream_id"] for stream in discovered(ctx)["streams"]]
    catalog = catalog_file(ctx, work / "catalog.json", streams)
    rows: list[Row] = []
    with (
        SimulatorProcess(hosts=1, seed=SEED) as one,
        ReplayProxy(one.url) as one_proxy,
    ):
        floor_config = write_json(work / "floor.json", tap_settings(one_proxy.url, one))
        run([TAP, "--config", floor_config, "--catalog", catalog], log=work / "floor-warm.log")
        for number, hosts in enumerate(EVERY_STREAM_HOSTS[ctx.size_name], 4):
            row = Row(
                f"5.{number}",
                f"Memory: tap peak RSS, every stream, {hosts:,} hosts vs 1 host",
                "MiB",
                "1 host",
                f"< {MIB_LIMIT} MiB",
                lambda row: row.median("value") < MIB_LIMIT,
            )
            with (
                SimulatorProcess(hosts=hosts, seed=SEED, startup_timeout=600) as sim,
                ReplayProxy(sim.url) as proxy,
            ):
                config = write_json(work / f"config-{hosts}.json", tap_settings(proxy.url, sim))
                command = [TAP, "--config", config, "--catalog", catalog]
                ctx.log(f"memory, every stream: {hosts:,} hosts: warming the replay cache")
                run(command, log=work / f"warm-{hosts}.log")
                served = sim.stats()["records"]
                # Answers from memory at loopback speed: the posture workers get ahead of the
                # main thread, so as many batches wait at once as the tap ever lets them.
                for repetition in range(1 if hosts >= 10_000 else ctx.repeat):
                    log = work / f"run-{hosts}-{repetition}.log"
                    peak = run(command, log=log, peak_rss=True)
                    floor = run(
                        [TAP, "--config", floor_config, "--catalog", catalog],
                        log=work / f"floor-{hosts}-{repetition}.log",
                        peak_rss=True,
                    )
                    emitted = _emitted(log)
                    if emitted.get("pcrs_posture_info") != served.get("pcrs_posture_info"):
                        msg = (
                            f"tap emitted {emitted.get('pcrs_posture_info')} postures, the "
                            f"simulator served {served.get('pcrs_posture_info')}"
                        )
                        raise BenchmarkError(msg)
                    extra = {
                        "records": sum(emitted.values()),
                        "postures": emitted["pcrs_posture_info"],
                        "seconds": peak.seconds,
                    }
                    row.samples.append(
                        Sample(
                            peak.peak_rss_mib / floor.peak_rss_mib,
                            peak.peak_rss_mib,
                            floor.peak_rss_mib,
                            extra,
                        )
                    )
                    ctx.log(
                        f"memory, every stream: {hosts:,} hosts: peak {peak.peak_rss_mib:.0f} "
                        f"MiB (1 host: {floor.peak_rss_mib:.0f} MiB), {sum(emitted.values()):,} "
                        f"records in {peak.seconds:.1f} s"
                    )
            row.context = _every_stream_context(len(streams))
            rows.append(row)
    return rows


def _every_stream_context(streams: int) -> Callable[[Row], str]:
    def context(row: Row) -> str:
        return (
            f"{streams} streams, {row.extra_median('records'):,.0f} records of which "
            f"{row.extra_median('postures'):,.0f} PCRS postures, stdout to /dev/null, "
            f"{row.extra_median('seconds'):.0f} s"
        )

    return context


# --- 6. scale-out --------------------------------------------------------------------------------


POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": "postgres"}
SCALE_DATABASE = "tap_qualys_benchmarks"


def _postgres_admin() -> Any:
    import psycopg2  # noqa: PLC0415

    connection = psycopg2.connect(dbname="postgres", connect_timeout=5, **POSTGRES)
    connection.autocommit = True
    return connection


def _postgres_ready() -> bool:
    try:
        admin = _postgres_admin()
    except Exception:  # noqa: BLE001 - any failure means "use the SQLite fallback"
        return False
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (SCALE_DATABASE,))
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{SCALE_DATABASE}"')
    admin.close()
    return True


class PostgresSink:
    """Both layouts load one Postgres database; each load gets a fresh schema."""

    label = "target-postgres, one database"

    def __init__(self, ctx: Context, work: Path, schema_messages: Path) -> None:
        import psycopg2  # noqa: PLC0415

        self.work = work
        self.schema_messages = schema_messages
        self.executable = venv_tool(ctx.cache, "target-postgres", work / "install.log")
        self.connection = psycopg2.connect(dbname=SCALE_DATABASE, **POSTGRES)
        self.connection.autocommit = True

    def prepare(self, layout: str) -> list[Path]:
        """A fresh schema whose tables exist already, so two loaders never race to create them."""
        with self.connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {layout} CASCADE")
        config = write_json(
            self.work / f"pg-{layout}.json",
            {
                **POSTGRES,
                "database": SCALE_DATABASE,
                "default_target_schema": layout,
                "load_method": "upsert",
                "sanitize_null_text_characters": True,
            },
        )
        run(
            [self.executable, "--config", config],
            stdin=self.schema_messages,
            log=self.work / f"pg-{layout}-create.log",
        )
        return [config, config]

    def command(self, config: Path) -> list[str | Path]:
        return [self.executable, "--config", config]

    def keys(self, layout: str, _configs: list[Path]) -> set[tuple[int, int]]:
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT host_id, unique_vuln_id FROM {layout}.host_detections")
            return {(int(host), int(vuln)) for host, vuln in cursor.fetchall()}


class SQLiteSink:
    """Fallback without Postgres: one SQLite file per process, keys merged afterwards."""

    label = "target-sqlite per process (smoke, or no Postgres), keys merged"

    def __init__(self, work: Path) -> None:
        self.work = work

    def prepare(self, layout: str) -> list[Path]:
        configs = []
        for part in ("a", "b"):
            database = self.work / f"{layout}-{part}.db"
            database.unlink(missing_ok=True)
            configs.append(
                write_json(self.work / f"{layout}-{part}.json", {"database": str(database)})
            )
        return configs

    def command(self, config: Path) -> list[str | Path]:
        return [TARGET_SQLITE, "--config", config]

    def keys(self, _layout: str, configs: list[Path]) -> set[tuple[int, int]]:
        keys: set[tuple[int, int]] = set()
        for config in configs:
            database = Path(json.loads(config.read_text())["database"])
            if database.exists():
                with sqlite3.connect(database) as connection:
                    keys |= set(
                        connection.execute("SELECT host_id, unique_vuln_id FROM host_detections")
                    )
        return keys


def scale_out(ctx: Context) -> list[Row]:
    size = ctx.size
    work = ctx.scratch("scale")
    with (
        SimulatorProcess(
            hosts=size.scale_hosts, seed=SEED, detections_per_host=size.scale_detections_per_host
        ) as sim,
        ReplayProxy(sim.url) as proxy,
    ):
        host_ids = sorted(int(host["ID"]) for host in sim.ground_truth("hosts"))
        truth = detection_keys(sim.ground_truth("host_detections"))
        middle = len(host_ids) // 2
        # Four batches per host range: the shards each take one of the two slots.
        batch = max(1, len(host_ids) // 4)
        catalog = catalog_file(ctx, work / "catalog.json", VM_STREAMS)
        configs = {
            "whole": write_json(
                work / "whole.json",
                tap_settings(proxy.url, sim, host_batch_size=batch, max_concurrency=2),
            ),
            "low": write_json(
                work / "low.json",
                tap_settings(
                    proxy.url,
                    sim,
                    host_batch_size=batch,
                    max_concurrency=1,
                    id_max=host_ids[middle - 1],
                ),
            ),
            "high": write_json(
                work / "high.json",
                tap_settings(
                    proxy.url,
                    sim,
                    host_batch_size=batch,
                    max_concurrency=1,
                    id_min=host_ids[middle],
                ),
            ),
        }
        # The halves' detection batches are the whole range's batches (same ids, same
        # parameters), so one whole-range run warms the cache for all three.
        ctx.log("scale-out: warming the replay cache")
        sample = work / "whole-output.jsonl"
        run(
            [TAP, "--config", configs["whole"], "--catalog", catalog],
            log=work / "warm.log",
            stdout=sample,
        )
        schema_messages = work / "schemas.jsonl"
        schema_messages.write_bytes(
            b"".join(line for line in sample.open("rb") if line.startswith(b'{"type":"SCHEMA"'))
        )
        sink: PostgresSink | SQLiteSink
        if size.scale_postgres and _postgres_ready():
            sink = PostgresSink(ctx, work, schema_messages)
        else:
            sink = SQLiteSink(work)
        ctx.log(f"scale-out: loading with {sink.label}")
        row = Row(
            "6",
            "Scale-out: 1 process wall vs 2 processes on half the host ids each",
            "s",
            "1 process",
            "≥ 1.00, keys = ground truth",
            lambda row: row.median() >= 1.0 and row.extra_max("mismatch") == 0,
        )

        def load(layout: str, shards: list[str]) -> float:
            targets = sink.prepare(layout)
            started = time.perf_counter()
            threads = [
                threading.Thread(
                    target=_pipe_into,
                    args=(
                        [TAP, "--config", configs[shard], "--catalog", catalog],
                        sink.command(target_config),
                        work,
                        f"{layout}-{shard}",
                        errors,
                    ),
                )
                for shard, target_config in zip(shards, targets[: len(shards)], strict=True)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise errors[0]
            seconds = time.perf_counter() - started
            loaded = sink.keys(layout, targets[: len(shards)])
            mismatches[layout] = len(loaded ^ truth)
            return seconds

        errors: list[BaseException] = []
        mismatches: dict[str, int] = {}
        for repetition in range(ctx.repeat):
            order = [("one", ["whole"]), ("two", ["low", "high"])]
            if repetition % 2:
                order.reverse()
            seconds = {layout: load(layout, shards) for layout, shards in order}
            row.samples.append(
                Sample(
                    seconds["one"] / seconds["two"],
                    seconds["two"],
                    seconds["one"],
                    {"mismatch": mismatches["one"] + mismatches["two"]},
                )
            )
            ctx.log(
                f"scale-out: 1 process {seconds['one']:.1f} s, 2 processes "
                f"{seconds['two']:.1f} s, key mismatches {mismatches}"
            )
    row.context = lambda row: (
        f"{len(truth):,} detections of {len(host_ids):,} hosts; {sink.label}; loaded keys "
        f"{'equal' if row.extra_max('mismatch') == 0 else 'DIFFER from'} the simulator's "
        "ground truth in both layouts"
    )
    return [row]


def _pipe_into(
    producer: list[str | Path],
    consumer: list[str | Path],
    work: Path,
    label: str,
    errors: list[BaseException],
) -> None:
    try:
        pipe(producer, consumer, logs=(work / f"{label}-tap.log", work / f"{label}-target.log"))
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
        errors.append(exc)


# --- 7. purge sweep -----------------------------------------------------------------------------


def _last_state(path: Path) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for message in messages(path):
        if message["type"] == "STATE":
            state = message["value"]
    return state


def _tombstones(path: Path) -> int:
    return sum(
        1
        for message in messages(path)
        if message["type"] == "RECORD" and message["record"].get("_sdc_deleted_at")
    )


def purge_sweep(ctx: Context) -> list[Row]:
    """An incremental hosts run with and without the purge sweep, from the same state."""
    import requests  # noqa: PLC0415

    hosts = ctx.size.sweep_hosts
    work = ctx.scratch("sweep")
    row = Row(
        "7",
        f"Purge sweep at {hosts:,} hosts: extra wall time of an incremental hosts run",
        "s",
        "incremental hosts run",
        "≤ 0.50",
        lambda row: row.median() <= 0.5,
    )
    catalog = catalog_file(ctx, work / "catalog.json", ("hosts",))
    with SimulatorProcess(hosts=hosts, seed=SEED, detections_per_host=1) as sim:
        # The first run loads everything and records the first id list (no tombstones).
        first = work / "first.jsonl"
        config = write_json(work / "config.json", tap_settings(sim.url, sim))
        run([TAP, "--config", config, "--catalog", catalog], log=work / "first.log", stdout=first)
        state_file = write_json(work / "state.json", _last_state(first))
        sweep_state = _last_state(first)["bookmarks"]["hosts"]["purge_sweep"]
        state_bytes = len(json.dumps(sweep_state))
        # An hour later: 1% of the hosts rescanned, 0.5% purged.
        purged = len(sim.advance(3600, rescan_fraction=0.01, new_hosts=0)["purged_host_ids"])
        off = write_json(work / "off.json", tap_settings(sim.url, sim, purge_sweep=False))
        started = time.perf_counter()
        answer = requests.post(
            f"{sim.url}/api/5.0/fo/asset/host/",
            data={"action": "list", "details": "None", "truncation_limit": 0},
            auth=(sim.username, sim.password),
            headers={"X-Requested-With": "benchmarks"},
            timeout=600,
        )
        call_seconds = time.perf_counter() - started
        answer.raise_for_status()
        # Unmeasured: the simulator's first answers after an advance fill its caches.
        run(
            [TAP, "--config", off, "--catalog", catalog, "--state", state_file],
            log=work / "warm.log",
        )
        for repetition in range(ctx.repeat):
            plain_out = work / f"plain-{repetition}.jsonl"
            plain = run(
                [TAP, "--config", off, "--catalog", catalog, "--state", state_file],
                log=work / f"plain-{repetition}.log",
                stdout=plain_out,
            )
            swept_out = work / f"swept-{repetition}.jsonl"
            swept = run(
                [TAP, "--config", config, "--catalog", catalog, "--state", state_file],
                log=work / f"swept-{repetition}.log",
                stdout=swept_out,
            )
            tombstones = _tombstones(swept_out)
            if tombstones != purged or _tombstones(plain_out):
                msg = f"the sweep emitted {tombstones} tombstones, the simulator purged {purged}"
                raise BenchmarkError(msg)
            extra = swept.seconds - plain.seconds
            row.samples.append(
                Sample(
                    extra / plain.seconds,
                    extra,
                    plain.seconds,
                    {
                        "cpu": swept.cpu_seconds - plain.cpu_seconds,
                        "records": count_records(plain_out, "hosts"),
                    },
                )
            )
            ctx.log(
                f"sweep: incremental run {plain.seconds:.1f} s, with the sweep "
                f"{swept.seconds:.1f} s, {tombstones} tombstones"
            )
    row.context = lambda row: (
        f"the incremental run ({row.extra_median('records'):,.0f} hosts changed) took "
        f"{row.median('floor'):.1f} s; the sweep added {row.median('value'):.1f} s wall "
        f"({row.extra_median('cpu'):.1f} s tap CPU): one Host List details=None call of "
        f"{len(answer.content) / 1e3:,.0f} KB ({call_seconds:.1f} s alone, the simulator "
        f"rendering), {purged} tombstones; the id list in the state: {state_bytes / 1e3:.0f} KB"
    )
    return [row]


MEASUREMENTS = {
    "tap": tap_cpu,
    "target": target_path,
    "e2e": end_to_end,
    "concurrency": concurrency,
    "memory": memory,
    "memory-every-stream": every_stream_memory,
    "scaleout": scale_out,
    "sweep": purge_sweep,
    "postgres": postgres_rows,
}

NOTES = {
    "sweep": (
        "**7 Purge sweep.** Two runs of `tap-qualys` (hosts only) from the same state, an hour "
        "of simulated changes after a full load (1% of hosts rescanned, 0.5% purged): one with "
        "`purge_sweep: false` (the floor: a normal incremental hosts run), one with the sweep "
        "(Host List `details=None`, the whole id list compared with the state's). Ratio = the "
        "sweep's extra wall time / the incremental run's. The check: as many tombstones as "
        "hosts purged. Both runs include the simulator rendering the Host List."
    ),
    "tap": (
        "**1 Tap CPU path.** `tap-qualys` (subprocess, stdout to /dev/null, only hosts and "
        "host_detections selected) against a replay proxy that serves the simulator's own "
        "answers from memory: the simulator renders XML at only a few MB/s, so it is run once "
        "to warm the cache and never timed. Tap rate = detections / process wall time "
        "(interpreter start, discovery of settings and the Host List call included); the context "
        "also gives it on CPU seconds, and without a 1-host run's cost (`id_max`). Floor = the "
        "fastest of `benchmarks/parsers.py`'s floor parsers (lxml pull parser, pyexpat, "
        "ElementTree pull parser, xmltodict; dict per DETECTION + `orjson.dumps`) on the same "
        "cached HLD bytes in memory, in 64 KiB chunks, timed in the same repetition."
    ),
    "target": (
        "**2 Target path.** The host_detections SCHEMA and RECORD messages the tap emitted in "
        "row 1, piped into the real `target-sqlite` executable (wall, startup included), vs "
        "`sqlite3.executemany` of the same rows, pre-flattened, into a table of the same DDL "
        "(`benchmarks/target_sqlite.py`'s floor: WAL, same batch size). The context also gives "
        "the ratio on CPU seconds, and without the target's fixed cost (the same run fed the "
        "SCHEMA message alone: interpreter, SDK and SQLAlchemy imports, table set-up)."
    ),
    "e2e": (
        "**3 End to end.** `meltano run tap-qualys target-sqlite` (this repository's meltano.yml, "
        "plugins installed by `meltano install --clean` into the benchmarks cache, bytecode "
        "compiled as meltano.yml's `UV_COMPILE_BYTECODE` asks, a fresh system database per run) "
        "vs the same installed executables as `tap-qualys --config c.json --catalog cat.json | "
        "target-sqlite --config t.json`. Meltano gets the same catalog file, through the "
        "extractor's `catalog` extra (`TAP_QUALYS__CATALOG`): it never caches discovery for a "
        "`pip_url: -e .` plugin, where a user's non-editable install discovers once and then "
        "reuses the catalog. Both read the same replay cache, warmed by one untimed pipe; each "
        "load is checked against the simulator's ground-truth counts. Order alternates by "
        "repetition. Full size: the issue's 10,000 hosts x 50 detections plus the KB."
    ),
    "concurrency": (
        "**4 Concurrency.** Server-bound: every Host List Detection call waits a fixed latency "
        "after taking its slot (`slow_first_byte` fault, on host_detection only, so the Host "
        "List stays fast; the simulator's `record_delay_sec` would slow the Host List too and "
        "throttle batch creation). For N = 1, 2, 4: simulator concurrency limit = N and tap "
        "`max_concurrency` = N. A thread polls `/admin/stats` every 20 ms; the detection phase "
        "= first to last sample with a detection call running; speedup = phase(1) / phase(N); "
        "slots busy = mean running calls / N over the phase; 409s from the stats' responses. "
        "The phase includes the tap's concurrency probe (one call, one latency): until Qualys "
        "has said how many calls it allows, one runs. 40 batches, as a real sync has tens to "
        "hundreds: that one latency is paid once per run, not per batch."
    ),
    "memory": (
        "**5 Memory.** Peak RSS of the tap process itself for one Host List Detection answer "
        "of the given size (`host_batch_size` > hosts, `truncation_limit=0`; 10 detections per "
        "host, RESULTS tens of KB long). It comes from `wait4` in a small wrapper process: a "
        "child's ru_maxrss also counts the memory of the process it was forked from, here the "
        "harness holding cached answers. The replay proxy takes the whole answer from the "
        "simulator before sending it, so the tap reads it at loopback speed and any buffering "
        "in the tap would show. Floor = the same tap on a 1-host answer (`id_max`), i.e. "
        "interpreter + SDK + one page. Flat = at most 32 MiB above the smallest answer's peak. "
        "Answers of 1 GB or more are measured once, whatever `--repeat` says."
    ),
    "memory-every-stream": (
        "**5.4-5.5 Memory, every stream.** Peak RSS of the tap process (as in row 5) with every "
        "stream selected, stdout to /dev/null, on the simulator's default subscription of 1,000 "
        "and 10,000 hosts (smoke: 100): HLD, KB, CSAM pages and the PCRS postureInfo batches "
        "(250 hosts each, gzip, up to 10 in flight). Served from the replay cache after one "
        "untimed warm-up, so the posture workers run ahead of the emitting thread and as many "
        "batches wait as the tap allows; the postures emitted are checked against the count the "
        "simulator served. Floor = the same tap on a 1-host subscription, every stream. "
        "10,000 hosts are measured once, whatever `--repeat` says."
    ),
    "scaleout": (
        "**6 Scale-out.** `tap-qualys | target-postgres` (MeltanoLabs, the version meltano.yml "
        "pins, installed in a venv under the benchmarks cache) for the whole host-id range vs "
        "two such pipes at once, each with half the range (`id_min`/`id_max`, one slot each), "
        "into one Postgres database (tables created before the timed load). Ratio = wall(1) / "
        "wall(2). The loaded (host_id, unique_vuln_id) keys are compared with the simulator's "
        "ground truth after every load. Without Postgres, target-sqlite per process (stated in "
        "the row). Replay cache as in row 1."
    ),
    "postgres": POSTGRES_NOTE,
}
