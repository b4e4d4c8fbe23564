"""`qualys-report sqlite|postgres`: write the HTML report from the dbt marts."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from qualys_report import data, render


def dsn_from_environment() -> str:
    """The connection dbt-postgres uses (transform/profiles/postgres/profiles.yml), as a DSN."""
    parts = {
        "host": ("DBT_POSTGRES_HOST", "TARGET_POSTGRES_HOST", "localhost"),
        "port": ("DBT_POSTGRES_PORT", "TARGET_POSTGRES_PORT", "5432"),
        "user": ("DBT_POSTGRES_USER", "TARGET_POSTGRES_USER", "postgres"),
        "password": ("DBT_POSTGRES_PASSWORD", "TARGET_POSTGRES_PASSWORD", ""),
        "dbname": ("DBT_POSTGRES_DBNAME", "TARGET_POSTGRES_DATABASE", "qualys"),
    }
    values = {
        key: os.environ.get(dbt) or os.environ.get(target) or default
        for key, (dbt, target, default) in parts.items()
    }
    # libpq quoting: single quotes around each value, backslash before ' and \.
    return " ".join(
        f"{key}='{value.replace(chr(92), chr(92) * 2).replace(chr(39), chr(92) + chr(39))}'"
        for key, value in values.items()
        if value
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="qualys-report",
        description="Write a self-contained HTML report from tap-qualys' dbt marts.",
    )
    sources = parser.add_subparsers(dest="source", required=True)
    sqlite = sources.add_parser("sqlite", help="read the marts from a SQLite file")
    sqlite.add_argument(
        "--database",
        default=os.environ.get("QUALYS_REPORT_SQLITE_DATABASE", "output/qualys.db"),
        help="(QUALYS_REPORT_SQLITE_DATABASE; default output/qualys.db)",
    )
    sqlite.add_argument(
        "--output",
        default=os.environ.get("QUALYS_REPORT_SQLITE_OUTPUT", "output/report.html"),
        help="the HTML file to write (QUALYS_REPORT_SQLITE_OUTPUT; default output/report.html)",
    )
    postgres = sources.add_parser("postgres", help="read the marts from PostgreSQL")
    postgres.add_argument(
        "--dsn",
        default=os.environ.get("QUALYS_REPORT_POSTGRES_DSN") or dsn_from_environment(),
        help="libpq connection string (QUALYS_REPORT_POSTGRES_DSN; default: dbt-postgres' "
        "connection, DBT_POSTGRES_* else TARGET_POSTGRES_*)",
    )
    postgres.add_argument(
        "--schema",
        default=os.environ.get("QUALYS_REPORT_POSTGRES_SCHEMA")
        or os.environ.get("DBT_POSTGRES_SCHEMA", "analytics"),
        help="the marts' schema (QUALYS_REPORT_POSTGRES_SCHEMA; default analytics)",
    )
    # Its own file: the SQLite and the Postgres jobs may run at the same time.
    postgres.add_argument(
        "--output",
        default=os.environ.get("QUALYS_REPORT_POSTGRES_OUTPUT", "output/report-postgres.html"),
        help="the HTML file to write (QUALYS_REPORT_POSTGRES_OUTPUT; "
        "default output/report-postgres.html)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.source == "sqlite":
            if not Path(args.database).is_file():
                raise SystemExit(f"qualys-report: no SQLite database at {args.database}")
            marts = data.read_sqlite(args.database)
            source = f"SQLite {Path(args.database).name}"
        else:
            marts = data.read_postgres(args.dsn, args.schema)
            source = f"PostgreSQL schema {args.schema}"
    except (OSError, RuntimeError) as exc:
        raise SystemExit(f"qualys-report: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the drivers' errors have no common base
        # sqlite3/psycopg2 errors: most often the marts are missing (dbt has not run).
        raise SystemExit(
            f"qualys-report: could not read the marts ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); run the dbt build step first"
        ) from None
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    html = render.render(marts, source)
    # Written next to the target then renamed: a wall display never reads half a file.
    partial = output.with_name(output.name + ".partial")
    partial.write_text(html, encoding="utf-8")
    partial.replace(output)
    print(f"qualys-report: wrote {output} ({len(html.encode()) / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
