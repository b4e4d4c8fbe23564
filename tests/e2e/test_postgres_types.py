"""scripts/postgres_types.sql: timestamptz, and tables of earlier loads moved to jsonb lists."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import REPO, Pipeline, PostgresServer
from tests.e2e.loaded import STREAMS, assert_matches_ground_truth, postgres_rows

pytestmark = pytest.mark.e2e


def column_types(server: PostgresServer, database: str) -> dict[str, int]:
    connection = server.connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT data_type, count(*) FROM information_schema.columns "
                "WHERE table_schema = 'tap_qualys' GROUP BY data_type"
            )
            return dict(cursor.fetchall())
    finally:
        connection.close()


@pytest.mark.parametrize("sim", [{"hosts": 20, "policies": 2}], indirect=True)
def test_earlier_postgres_load_then_the_job(
    pipeline: Pipeline, postgres_server: PostgresServer, postgres_database: str
) -> None:
    pipeline.env.update(
        TARGET_POSTGRES_HOST=postgres_server.host,
        TARGET_POSTGRES_PORT=str(postgres_server.port),
        TARGET_POSTGRES_USER=postgres_server.user,
        TARGET_POSTGRES_PASSWORD=postgres_server.password,
        TARGET_POSTGRES_DATABASE=postgres_database,
    )
    pipeline.run("tap-qualys", "target-postgres")
    before = column_types(postgres_server, postgres_database)
    assert before.get("ARRAY"), before  # what the plain extractor leaves: jsonb[] lists

    connection = postgres_server.connect(postgres_database)
    try:
        with connection.cursor() as cursor:
            cursor.execute((REPO / "scripts" / "postgres_types.sql").read_text())
    finally:
        connection.close()
    after = column_types(postgres_server, postgres_database)
    assert "ARRAY" not in after, after
    assert "timestamp without time zone" not in after, after

    pipeline.sim.advance(86400, purge=0)
    pipeline.session.install("tap-qualys--postgres")
    pipeline.run("tap-qualys--postgres", "target-postgres")
    assert column_types(postgres_server, postgres_database) == after
    connection = postgres_server.connect(postgres_database)
    try:
        loaded = {stream: postgres_rows(connection, "tap_qualys", stream) for stream in STREAMS}
    finally:
        connection.close()
    assert_matches_ground_truth(pipeline.sim, loaded)
