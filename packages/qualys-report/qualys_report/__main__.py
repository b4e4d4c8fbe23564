"""`qualys-report sqlite|postgres`: write the HTML report from the dbt marts."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from qualys_report import data, render


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="qualys-report",
        description="Write a self-contained HTML report from tap-qualys' dbt marts.",
    )
    parser.add_argument(
        "--output",
        default=os.environ.get("QUALYS_REPORT_OUTPUT", "output/report.html"),
        help="the HTML file to write (QUALYS_REPORT_OUTPUT; default output/report.html)",
    )
    sources = parser.add_subparsers(dest="source", required=True)
    sqlite = sources.add_parser("sqlite", help="read the marts from a SQLite file")
    sqlite.add_argument(
        "--database",
        default=os.environ.get("QUALYS_REPORT_SQLITE_DATABASE", "output/qualys.db"),
        help="(QUALYS_REPORT_SQLITE_DATABASE; default output/qualys.db)",
    )
    postgres = sources.add_parser("postgres", help="read the marts from PostgreSQL")
    postgres.add_argument(
        "--dsn",
        default=os.environ.get("QUALYS_REPORT_POSTGRES_DSN", "dbname=qualys"),
        help="libpq connection string (QUALYS_REPORT_POSTGRES_DSN)",
    )
    postgres.add_argument(
        "--schema",
        default=os.environ.get("QUALYS_REPORT_POSTGRES_SCHEMA", "analytics"),
        help="the marts' schema (QUALYS_REPORT_POSTGRES_SCHEMA; default analytics)",
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
