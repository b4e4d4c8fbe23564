"""`meltano run tap-qualys target-sqlite` with only the tags stream, then incremental."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Pipeline
from tests.e2e.loaded import compare_stream, sqlite_rows

pytestmark = pytest.mark.e2e


def assert_tags_match(pipeline: Pipeline, database: Path) -> list[dict]:
    truth = pipeline.sim.ground_truth("tags")
    rows = sqlite_rows(database, "tags")
    problems = compare_stream("tags", truth, rows)
    assert not problems, "\n".join(problems)
    assert len(rows) == len(truth) > 0
    return rows


def test_tags_to_sqlite_then_incremental(pipeline: Pipeline, tmp_path: Path) -> None:
    database = tmp_path / "qualys.db"
    pipeline.env["TARGET_SQLITE_DATABASE"] = str(database)
    pipeline.env["TAP_QUALYS__SELECT"] = json.dumps(["tags.*"])
    pipeline.env["TAP_QUALYS_TAGS_PAGE_SIZE"] = "10"  # 25 tags: three pages
    log = pipeline.run("tap-qualys", "target-sqlite")
    first = assert_tags_match(pipeline, database)
    assert "tags: page 3: 5 records" in log
    assert not sqlite_rows(database, "hosts"), "only the tags stream was selected"

    pipeline.sim.advance(86400, purge=0)
    log = pipeline.run("tap-qualys", "target-sqlite")
    second = assert_tags_match(pipeline, database)
    assert len(second) == len(first) + 1  # the advance added a tag and edited a rule
    # Incremental: one page of what changed (updated GREATER the bookmark), not all 26 tags.
    assert "for updated GREATER" in log
    assert "tags: page 1: 3 records" in log
