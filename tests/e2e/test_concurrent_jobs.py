"""The README's two jobs, started at the same moment, as their schedules would start them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import REPO, RUN_TIMEOUT_SECONDS, Pipeline, PostgresServer
from tests.e2e.loaded import STREAMS, assert_matches_ground_truth, postgres_rows, sqlite_rows

pytestmark = pytest.mark.e2e


def job_extractors() -> dict[str, str]:
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    return {job["name"]: job["tasks"][0].split()[0] for job in project["jobs"]}


def test_jobs_have_their_own_extractor_names() -> None:
    """Meltano keeps the catalog and state.json in .meltano/run/<extractor name>/."""
    extractors = job_extractors()
    assert len(set(extractors.values())) == len(extractors), extractors


def test_sqlite_and_postgres_jobs_start_together(
    pipeline: Pipeline, postgres_server: PostgresServer, postgres_database: str, tmp_path: Path
) -> None:
    database = tmp_path / "qualys.db"
    pipeline.env.update(
        TARGET_SQLITE_DATABASE=str(database),
        TARGET_POSTGRES_HOST=postgres_server.host,
        TARGET_POSTGRES_PORT=str(postgres_server.port),
        TARGET_POSTGRES_USER=postgres_server.user,
        TARGET_POSTGRES_PASSWORD=postgres_server.password,
        TARGET_POSTGRES_DATABASE=postgres_database,
        # Each job then builds the dbt models and writes its report: their paths stay apart.
        DBT_SQLITE_DATABASE=str(database),
        DBT_SQLITE_TARGET_PATH=str(tmp_path / "dbt-sqlite"),
        DBT_SQLITE_LOG_PATH=str(tmp_path / "dbt-sqlite"),
        DBT_POSTGRES_HOST=postgres_server.host,
        DBT_POSTGRES_PORT=str(postgres_server.port),
        DBT_POSTGRES_USER=postgres_server.user,
        DBT_POSTGRES_PASSWORD=postgres_server.password,
        DBT_POSTGRES_DBNAME=postgres_database,
        DBT_POSTGRES_TARGET_PATH=str(tmp_path / "dbt-postgres"),
        DBT_POSTGRES_LOG_PATH=str(tmp_path / "dbt-postgres"),
        QUALYS_REPORT_SQLITE_DATABASE=str(database),
        QUALYS_REPORT_SQLITE_OUTPUT=str(tmp_path / "report.html"),
        QUALYS_REPORT_POSTGRES_DSN=(
            f"host={postgres_server.host} port={postgres_server.port} "
            f"user={postgres_server.user} password={postgres_server.password} "
            f"dbname={postgres_database}"
        ),
        QUALYS_REPORT_POSTGRES_OUTPUT=str(tmp_path / "report-postgres.html"),
    )
    extractors = job_extractors()
    pipeline.session.install(
        extractors["qualys-to-sqlite"],
        extractors["qualys-to-postgres"],
        "target-sqlite",
        "target-postgres",
        "dbt-sqlite",
        "dbt-postgres",
        "qualys-report",
    )
    # A project's system database exists before its schedules fire (two first-ever commands
    # would race on creating it, a separate matter).
    subprocess.run(
        [str(pipeline.session.executable), "state", "list"],
        cwd=REPO,
        env=pipeline.env,
        capture_output=True,
        check=True,
    )
    started = [pipeline.start("run", job) for job in ("qualys-to-sqlite", "qualys-to-postgres")]
    failures = []
    for process, log in started:
        try:
            process.wait(timeout=RUN_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            failures.append(f"{log.name} exited {process.returncode}:\n{tail}")
    assert not failures, "\n\n".join(failures)

    assert_matches_ground_truth(
        pipeline.sim, {stream: sqlite_rows(database, stream) for stream in STREAMS}
    )
    connection = postgres_server.connect(postgres_database)
    try:
        loaded = {stream: postgres_rows(connection, "tap_qualys", stream) for stream in STREAMS}
        with connection.cursor() as cursor:
            # The Postgres job stores lists as jsonb (its generated schema rules), so that
            # JSON operators apply to them; no Postgres array column is left.
            cursor.execute(
                "SELECT table_name, column_name, udt_name FROM information_schema.columns "
                "WHERE table_schema = 'tap_qualys' AND data_type = 'ARRAY'"
            )
            arrays = cursor.fetchall()
            cursor.execute(
                "SELECT count(*) FROM tap_qualys.knowledge_base "
                "WHERE jsonb_typeof(cve_list) = 'array' AND cve_list @> '[{}]'"
            )
            cves = cursor.fetchone()[0]
    finally:
        connection.close()
    assert_matches_ground_truth(pipeline.sim, loaded)
    assert arrays == [], arrays
    assert cves > 0
    for report in ("report.html", "report-postgres.html"):
        assert "data-chart=" in (tmp_path / report).read_text(), report
