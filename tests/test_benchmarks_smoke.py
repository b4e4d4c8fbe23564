"""`python -m benchmarks --size smoke` runs end to end and prints its whole table.

Only the table's shape is checked (every row present, every figure a number): whether a goal is
met depends on the machine, and timing asserts do not belong in tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.processes import find_meltano

REPO = Path(__file__).resolve().parents[1]
ROWS = ["1", "2", "3", "4.2", "4.4", "5.1", "5.4", "6", "7"]
NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?$")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_smoke_table_has_every_row_with_numbers(tmp_path: Path) -> None:
    if find_meltano() is None:
        message = "Meltano is not installed (set MELTANO_BIN): the end-to-end row needs it"
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(message)
        pytest.skip(message)
    output = tmp_path / "latest.md"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--size", "smoke", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert output.read_text() == result.stdout.strip() + "\n"

    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| # |"))
    columns = _cells(header)
    rows = {
        cells[0]: dict(zip(columns, cells, strict=True))
        for cells in map(_cells, lines)
        if cells and cells[0] in ROWS
    }
    assert sorted(rows) == sorted(ROWS)
    for number, row in rows.items():
        for column in ("ratio", "min", "max"):
            assert NUMBER.match(row[column]), (number, column, row[column])
        for column in ("measured (median)", "floor (median)"):
            assert NUMBER.match(row[column].split()[0]), (number, column, row[column])
        assert row["met"] in {"yes", "**no**"}, (number, row["met"])
        assert float(row["min"]) <= float(row["ratio"]) <= float(row["max"]), number
