"""qualys-report without a pipeline: empty marts, hostile text, size, and its one-line errors.

The report against real marts (and in a real browser) is tested end to end in
tests/e2e/test_marts.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from qualys_report import __main__ as cli
from qualys_report import data, render


def empty_marts() -> data.Marts:
    marts = data.Marts({name: [] for name in data.QUERIES})
    marts.rows["hosts"] = [{"hosts": 0, "exposed": None}]
    return marts


def busy_marts() -> data.Marts:
    """The most rows each query can return, with many months and policies."""
    marts = empty_marts()
    marts.rows["sla"] = [
        {"severity": s, "sla_status": status, "detections": 1000 * s, "sla_days": 10 * s}
        for s in range(1, 6)
        for status in ("within", "due_soon", "breached")
    ]
    marts.rows["as_of"] = [{"as_of": "2026-10-31 19:13:53"}]
    marts.rows["hosts"] = [{"hosts": 10000, "exposed": 4000}]
    marts.rows["riskiest"] = [
        {
            "risk_rank": rank,
            "host_name": f"<script>alert({rank})</script>",
            "ip": "10.0.0.1",
            "os": "Linux",
            "trurisk_score": 1000 - rank,
            "open_severity_5": 3,
            "open_severity_4": 0,
            "open_detections": 9,
            "breached": 2,
            "host_tags": "A,B",
        }
        for rank in range(1, 13)
    ]
    marts.rows["remediation"] = [
        {
            "severity": s,
            "fixed_month": f"2025-{m:02d}",
            "fixed_count": 5,
            "mean_days": 40.5,
            "median_days": 30.0 + m,
            "max_days": 99.0,
        }
        for s in range(1, 6)
        for m in range(1, 13)
    ]
    marts.rows["reopen"] = [
        {"severity": s, "detections": 100, "reopened": s} for s in range(5, 0, -1)
    ]
    marts.rows["policies"] = [
        {
            "policy_id": p,
            "policy_title": "P" * 200,
            "hosts": 10,
            "controls": 40,
            "postures": 400,
            "passed": 300,
            "failed": 90,
            "errors": 10,
            "pass_rate": 0.75,
        }
        for p in range(60)
    ]
    return marts


def test_empty_marts_render_with_explanations() -> None:
    html = render.render(empty_marts(), "SQLite test.db")
    assert "No open vulnerabilities." in html
    assert "No fixed vulnerabilities yet." in html
    assert "No Policy Compliance results." in html


def test_text_from_the_data_is_escaped_and_the_page_stays_small() -> None:
    html = render.render(busy_marts(), "SQLite test.db")
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert len(html.encode()) < 500_000
    # Every chart mark holds the number it draws.
    assert 'data-chart="open-by-severity" data-key="5" data-value="15000"' in html
    assert html.count('data-chart="remediation"') == 60


def test_cli_names_a_missing_database_and_missing_marts(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as missing:
        cli.main(["sqlite", "--database", str(tmp_path / "none.db")])
    assert "no SQLite database at" in str(missing.value)
    raw_only = tmp_path / "raw.db"
    sqlite3.connect(raw_only).execute("CREATE TABLE hosts (id INTEGER)").connection.commit()
    with pytest.raises(SystemExit) as no_marts:
        cli.main(["sqlite", "--database", str(raw_only), "--output", str(tmp_path / "r.html")])
    message = str(no_marts.value)
    assert "run the dbt build step first" in message
    assert "\n" not in message
    assert not (tmp_path / "r.html").exists()


def test_postgres_connection_defaults_to_dbt_then_target_postgres(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HOST", "PORT", "USER", "PASSWORD", "DBNAME"):
        monkeypatch.delenv(f"DBT_POSTGRES_{name}", raising=False)
    monkeypatch.setenv("TARGET_POSTGRES_HOST", "db.example")
    monkeypatch.setenv("TARGET_POSTGRES_PASSWORD", "it's\\here")
    monkeypatch.setenv("DBT_POSTGRES_DBNAME", "marts")
    dsn = cli.dsn_from_environment()
    assert "host='db.example'" in dsn
    assert "dbname='marts'" in dsn
    assert "password='it\\'s\\\\here'" in dsn
