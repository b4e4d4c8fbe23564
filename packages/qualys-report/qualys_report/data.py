"""Read the marts the report shows, from SQLite or PostgreSQL, as plain Python values."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

Row = dict[str, Any]

# Each query reads one or two marts (transform/models/marts); {s} is the marts' schema.
QUERIES: dict[str, str] = {
    "sla": (
        "select severity, sla_status, count(*) as detections, max(sla_days) as sla_days "
        "from {s}.detection_sla group by severity, sla_status"
    ),
    "as_of": "select max(as_of) as as_of from {s}.detection_sla",
    "last_found": "select max(last_found_at) as as_of from {s}.open_detections",
    "hosts": (
        "select count(*) as hosts, "
        "sum(case when open_severity_5 + open_severity_4 > 0 then 1 else 0 end) as exposed "
        "from {s}.host_risk"
    ),
    "riskiest": (
        "select risk_rank, host_name, ip, os, trurisk_score, open_severity_5, open_severity_4, "
        "open_detections, breached, host_tags from {s}.host_risk order by risk_rank limit 12"
    ),
    "remediation": (
        "select severity, fixed_month, fixed_count, mean_days, median_days "
        "from {s}.remediation_time order by fixed_month, severity"
    ),
    "reopen": "select severity, detections, reopened from {s}.reopen_rate order by severity desc",
    "policies": (
        "select policy_id, policy_title, hosts, controls, postures, passed, failed, errors, "
        "pass_rate from {s}.compliance_by_policy order by pass_rate, policy_id"
    ),
    "controls": (
        "select c.control_id, c.control_statement, c.criticality, p.policy_title, c.failed, "
        "c.postures, c.pass_rate from {s}.compliance_by_control as c "
        "join {s}.compliance_by_policy as p on p.policy_id = c.policy_id "
        "order by c.failed desc, c.pass_rate, c.policy_id, c.control_id limit 8"
    ),
    "tags": (
        "select tag_name, sum(open_detections) as open_detections, sum(breached) as breached "
        "from {s}.sla_breaches group by tag_name "
        "order by sum(breached) desc, sum(open_detections) desc, tag_name limit 8"
    ),
    "software": (
        "select publisher, product, sum(installations) as installations, "
        "count(*) as versions, max(lifecycle_stage) as lifecycle_stage "
        "from {s}.software_inventory group by publisher, product "
        "order by sum(installations) desc, product limit 8"
    ),
}


@dataclass
class Marts:
    """What the report shows: one list of rows per query above."""

    rows: dict[str, list[Row]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> list[Row]:
        return self.rows[name]


def _plain(value: Any) -> Any:
    """Postgres numerics come as Decimal: the report wants int or float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def read(connection: Any, schema: str) -> Marts:
    """Run every query on a DB-API connection (sqlite3 or psycopg2)."""
    marts = Marts()
    cursor = connection.cursor()
    try:
        for name, query in QUERIES.items():
            cursor.execute(query.format(s=schema))
            columns = [column[0] for column in cursor.description]
            marts.rows[name] = [
                {column: _plain(value) for column, value in zip(columns, row, strict=True)}
                for row in cursor.fetchall()
            ]
    finally:
        cursor.close()
    return marts


def read_sqlite(database: str) -> Marts:
    # Read-only: the report never changes the database, which a loader may be writing.
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return read(connection, "main")
    finally:
        connection.close()


def read_postgres(dsn: str, schema: str) -> Marts:
    try:
        import psycopg2  # noqa: PLC0415 - only the postgres command needs it
    except ImportError:
        raise SystemExit(
            "qualys-report: reading Postgres needs psycopg2: pip install 'qualys-report[postgres]'"
        ) from None
    connection = psycopg2.connect(dsn)
    try:
        return read(connection, '"' + schema.replace('"', '""') + '"')
    finally:
        connection.close()
