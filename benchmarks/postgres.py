"""8. Postgres: `meltano run tap-qualys target-qualys-postgres` against the tap alone, the loader
against a COPY floor of the same rows, the peak RSS of each process; the stock target-postgres
(with the settings meltano.yml ships) against the same floor. Every stream selected.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.harness import Context, Row, Sample
from benchmarks.processes import (
    BIN,
    REPO,
    TAP,
    BenchmarkError,
    find_meltano,
    meltano_env,
    meltano_install,
    pipe,
    run,
    venv_tool,
    write_json,
)
from benchmarks.replay import ReplayProxy
from qualys_simulator.testing import SimulatorProcess

# None at smoke size: the row needs PostgreSQL, Meltano and target-postgres from PyPI, and the
# smoke run stays offline and quick (BENCHMARKS_POSTGRES_HOSTS=20 still runs it there).
HOSTS: dict[str, tuple[int, ...]] = {"smoke": (), "full": (1_000, 10_000)}
SEED = 20261123
RSS_LIMIT_MIB = 250
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": "postgres"}
LOADER = BIN / "target-qualys-postgres"
SCHEMA = "tap_qualys"


def _connect(database: str = "postgres") -> Any:
    import psycopg  # noqa: PLC0415

    return psycopg.connect(dbname=database, connect_timeout=5, autocommit=True, **POSTGRES)


def _fresh_database(name: str) -> str:
    with _connect() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return name


def _counts(database: str, streams: list[str]) -> dict[str, int]:
    with _connect(database) as conn:
        counts = {}
        for stream in streams:
            found = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{stream}",)).fetchone()
            counts[stream] = (
                conn.execute(f'SELECT count(*) FROM {SCHEMA}."{stream}"').fetchone()[0]
                if found and found[0]
                else 0
            )
        return counts


def _copy_floor(singer: Path, database: str) -> tuple[float, int]:
    """Seconds to COPY every record's JSON (as the tap wrote it) into one jsonb column."""

    class Message(msgspec.Struct):
        type: str
        record: msgspec.Raw = msgspec.Raw(b"null")

    decode = msgspec.json.Decoder(Message).decode
    documents = [
        bytes(m.record)
        for m in (decode(line) for line in singer.open("rb") if line.startswith(b'{"type":"RE'))
        if m.type == "RECORD"
    ]
    text = b"".join(d.replace(b"\\", b"\\\\") + b"\n" for d in documents)
    with _connect(database) as conn:
        conn.execute("CREATE TABLE floor (doc jsonb)")
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy("COPY floor (doc) FROM STDIN") as copy:
            for start in range(0, len(text), 1 << 20):
                copy.write(text[start : start + (1 << 20)])
        return time.perf_counter() - started, len(documents)


def postgres(ctx: Context) -> list[Row]:
    from benchmarks.measurements import catalog_file, discovered, tap_settings  # noqa: PLC0415

    sizes = os.environ.get("BENCHMARKS_POSTGRES_HOSTS")
    host_counts = [int(n) for n in sizes.split(",")] if sizes else list(HOSTS[ctx.size_name])
    if not host_counts:
        ctx.log("postgres: not at this size (set BENCHMARKS_POSTGRES_HOSTS=20 to run it)")
        return []
    work = ctx.scratch("postgres")
    meltano = find_meltano()
    if meltano is None:
        msg = "Meltano not found: set MELTANO_BIN or put meltano on PATH"
        raise BenchmarkError(msg)
    sys_dir = ctx.cache / "meltano"
    ctx.log("postgres: meltano install tap-qualys target-qualys-postgres (once per cache)")
    meltano_install(meltano, sys_dir, ["tap-qualys", "target-qualys-postgres"], work / "i.log")
    stock = venv_tool(ctx.cache, "target-postgres", work / "install-stock.log")
    streams = [s["tap_stream_id"] for s in discovered(ctx)["streams"]]
    rows: list[Row] = []
    # BENCHMARKS_POSTGRES_HOSTS=1000,5000 measures other sizes (a comma-separated list).
    for hosts in host_counts:
        e2e = Row(
            "8a",
            f"Postgres end to end, {hosts:,} hosts, every stream: `meltano run tap-qualys "
            "target-qualys-postgres` vs `tap-qualys > /dev/null`",
            "s",
            "tap alone",
            "≤ 1.30",
            lambda row: row.median() <= 1.3,
        )
        loader = Row(
            "8b",
            f"target-qualys-postgres rows/s vs COPY into one jsonb column, {hosts:,} hosts",
            "s",
            "COPY",
            "≥ 0.50",
            lambda row: row.median() >= 0.5,
        )
        stock_row = Row(
            "8b'",
            f"stock target-postgres (meltano.yml's settings) rows/s vs the same COPY, {hosts:,} "
            "hosts",
            "s",
            "COPY",
            "(comparison)",
            lambda _row: True,
        )
        rss = Row(
            "8c",
            f"peak RSS of tap-qualys and of target-qualys-postgres in one pipe, {hosts:,} hosts",
            "MiB",
            f"{RSS_LIMIT_MIB} MiB",
            f"each < {RSS_LIMIT_MIB} MiB",
            lambda row: (
                row.extra_max("tap") < RSS_LIMIT_MIB and row.extra_max("target") < RSS_LIMIT_MIB
            ),
        )
        shard_rows = {
            count: Row(
                f"8d.{count}",
                f"{count} shards (`id_min`/`id_max`) of `tap-qualys | target-qualys-postgres` in "
                f"parallel into one database vs one pipe, {hosts:,} hosts",
                "s",
                "one pipe",
                "(comparison), counts equal",
                lambda _row: True,
            )
            for count in (2, 4)
        }
        with SimulatorProcess(hosts=hosts, seed=SEED) as sim, ReplayProxy(sim.url) as proxy:
            settings = tap_settings(proxy.url, sim)
            config = write_json(work / "tap.json", settings)
            catalog = catalog_file(ctx, work / "catalog.json", streams)
            truth = {stream: len(sim.ground_truth(stream)) for stream in sim_streams(sim, streams)}
            singer = work / f"singer-{hosts}.jsonl"
            ctx.log(f"postgres {hosts}: warming the replay cache, keeping the tap's output")
            run([TAP, "--config", config, "--catalog", catalog], log=work / "w.log", stdout=singer)
            records = sum(1 for line in singer.open("rb") if line.startswith(b'{"type":"RE'))
            env = meltano_env(sys_dir)
            env.update({f"TAP_QUALYS_{k.upper()}": str(v) for k, v in settings.items()})
            env["TAP_QUALYS__CATALOG"] = str(catalog)

            def check(database: str, label: str, truth: dict[str, int] = truth) -> None:
                counts = _counts(database, list(truth))
                if counts != truth:
                    msg = f"{label}: loaded {counts}, the simulator holds {truth}"
                    raise BenchmarkError(msg)

            for repetition in range(ctx.repeat):
                tap_alone = run(
                    [TAP, "--config", config, "--catalog", catalog], log=work / "tap.log"
                ).seconds
                database = _fresh_database(f"bench_e2e_{hosts}")
                melt = run(
                    [meltano, "run", "tap-qualys", "target-qualys-postgres"],
                    log=work / f"meltano-{hosts}-{repetition}.log",
                    env={
                        **env,
                        "TARGET_QUALYS_POSTGRES_HOST": POSTGRES["host"],
                        "TARGET_QUALYS_POSTGRES_PORT": str(POSTGRES["port"]),
                        "TARGET_QUALYS_POSTGRES_USER": POSTGRES["user"],
                        "TARGET_QUALYS_POSTGRES_PASSWORD": POSTGRES["password"],
                        "TARGET_QUALYS_POSTGRES_DATABASE": database,
                        "MELTANO_DATABASE_URI": f"sqlite:///{work / f'state-{repetition}.db'}",
                    },
                    cwd=REPO,
                ).seconds
                check(database, "meltano run")
                e2e.samples.append(Sample(melt / tap_alone, melt, tap_alone))
                ctx.log(f"postgres {hosts}: meltano run {melt:.1f} s, tap alone {tap_alone:.1f} s")

                floor_seconds, copied = _copy_floor(singer, _fresh_database(f"bench_floor_{hosts}"))
                database = _fresh_database(f"bench_loader_{hosts}")
                target_config = write_json(
                    work / "target.json",
                    {**POSTGRES, "database": database, "default_target_schema": SCHEMA},
                )
                loaded = run(
                    [LOADER, "--config", target_config], log=work / "loader.log", stdin=singer
                )
                check(database, "target-qualys-postgres")
                loader.samples.append(
                    Sample(floor_seconds / loaded.seconds, loaded.seconds, floor_seconds)
                )
                ctx.log(
                    f"postgres {hosts}: loader {loaded.seconds:.1f} s, COPY floor "
                    f"{floor_seconds:.1f} s ({copied:,} rows)"
                )

                database = _fresh_database(f"bench_stock_{hosts}")
                stock_config = write_json(
                    work / "stock.json",
                    {
                        **POSTGRES,
                        "database": database,
                        "default_target_schema": SCHEMA,
                        **STOCK_SETTINGS,
                    },
                )
                stocked = run([stock, "--config", stock_config], log=work / "st.log", stdin=singer)
                check(database, "target-postgres")
                stock_row.samples.append(
                    Sample(floor_seconds / stocked.seconds, stocked.seconds, floor_seconds)
                )
                ctx.log(f"postgres {hosts}: stock target-postgres {stocked.seconds:.1f} s")

                database = _fresh_database(f"bench_rss_{hosts}")
                target_config = write_json(
                    work / "target.json",
                    {**POSTGRES, "database": database, "default_target_schema": SCHEMA},
                )
                measured = [BIN / "python", "-m", "benchmarks.processes"]
                tap_report, target_report = work / "tap-rss.json", work / "target-rss.json"
                *_, one_pipe = pipe(
                    [*measured, tap_report, "--", TAP, "--config", config, "--catalog", catalog],
                    [*measured, target_report, "--", LOADER, "--config", target_config],
                    logs=(work / "rss-tap.log", work / "rss-target.log"),
                )
                check(database, "pipe")
                tap_mib = json.loads(tap_report.read_text())["peak_rss_kib"] / 1024
                target_mib = json.loads(target_report.read_text())["peak_rss_kib"] / 1024
                rss.samples.append(
                    Sample(
                        max(tap_mib, target_mib) / RSS_LIMIT_MIB,
                        max(tap_mib, target_mib),
                        RSS_LIMIT_MIB,
                        {"tap": tap_mib, "target": target_mib},
                    )
                )
                ctx.log(f"postgres {hosts}: peak RSS tap {tap_mib:.0f}, target {target_mib:.0f}")

                ids = sorted(int(host["ID"]) for host in sim.ground_truth("hosts"))
                for count, row in shard_rows.items():
                    database = _fresh_database(f"bench_shards_{hosts}")
                    seconds = _shards(work, settings, catalog, database, ids, count)
                    check(database, f"{count} shards")
                    row.samples.append(Sample(one_pipe / seconds, seconds, one_pipe))
                    ctx.log(
                        f"postgres {hosts}: {count} shards {seconds:.1f} s, one {one_pipe:.1f} s"
                    )

        e2e.context = lambda row, n=records: f"{n:,} records; ratio = meltano run / tap alone"
        loader.context = lambda row, n=records: (
            f"{n / row.median('value'):,.0f} rows/s vs {n / row.median('floor'):,.0f} rows/s "
            "COPY; ratio = loader rows/s / COPY rows/s"
        )
        stock_row.context = lambda row, n=records: (
            f"{n / row.median('value'):,.0f} rows/s; settings {STOCK_SETTINGS}"
        )
        rss.context = lambda row: (
            f"tap {row.extra_max('tap'):.0f} MiB, target {row.extra_max('target'):.0f} MiB (max)"
        )
        for count, row in shard_rows.items():
            row.context = lambda row, c=count: (
                f"speedup {row.median():.2f} on 2 cores with {c} pipes; every count equal to "
                "the ground truth"
            )
        rows += [e2e, loader, stock_row, rss, *shard_rows.values()]
    return rows


def _shards(
    work: Path,
    settings: dict[str, Any],
    catalog: Path,
    database: str,
    ids: list[int],
    count: int,
) -> float:
    """Wall seconds of ``count`` parallel pipes, each on its own range of host ids."""
    bounds = [ids[len(ids) * i // count] for i in range(count)] + [ids[-1] + 1]
    target = write_json(
        work / "shard-target.json",
        {**POSTGRES, "database": database, "default_target_schema": SCHEMA},
    )
    started = time.perf_counter()
    running = []
    for shard in range(count):
        config = write_json(
            work / f"shard-{shard}.json",
            {**settings, "id_min": bounds[shard], "id_max": bounds[shard + 1] - 1},
        )
        command = f"{TAP} --config {config} --catalog {catalog} | {LOADER} --config {target}"
        log = (work / f"shard-{shard}.log").open("wb")
        running.append(
            (
                subprocess.Popen(
                    ["bash", "-o", "pipefail", "-c", command],
                    stdout=subprocess.DEVNULL,  # the loaders' STATE lines
                    stderr=log,
                ),
                log,
            )
        )
    for process, log in running:
        log.close()
        if process.wait() != 0:
            msg = f"shard pipe exited {process.returncode}; see {log.name}"
            raise BenchmarkError(msg)
    return time.perf_counter() - started


# What meltano.yml ships for the stock loader (besides load_method: upsert and the sanitizing).
STOCK_SETTINGS = {
    "load_method": "upsert",
    "sanitize_null_text_characters": True,
    "use_copy": True,
    "validate_records": False,
    "batch_size_rows": 10000,
    "hard_delete": True,
}


def sim_streams(sim: SimulatorProcess, streams: list[str]) -> list[str]:
    """The selected streams whose ground truth the simulator can give (all of the tap's)."""
    found = []
    for stream in streams:
        try:
            sim.ground_truth(stream)
        except Exception:  # noqa: BLE001 - a stream without ground truth is not counted
            continue
        found.append(stream)
    return found


NOTE = (
    "**8 Postgres.** The simulator with the given hosts, every stream selected, through the "
    "replay proxy. 8a: `meltano run tap-qualys target-qualys-postgres` into a fresh database "
    "vs the tap alone to /dev/null, same data. 8b: the tap's output replayed into "
    "target-qualys-postgres vs psycopg's COPY of the same records' JSON into one jsonb column "
    "(a floor), both into fresh databases; 8b' the stock meltanolabs target-postgres with "
    "meltano.yml's settings against the same floor. 8c: peak RSS of each process of "
    "`tap-qualys | target-qualys-postgres`. Every load is checked against the ground truth's "
    "counts."
)
