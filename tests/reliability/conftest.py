"""Reliability tests: every test runs the real simulator, tap and target as processes.

Scenario 6 (secrets) is enforced here for every test: after each test, every file its pipeline
runs produced (tap stdout and stderr, target stdout and stderr, states, catalogs, the SQLite
database) is searched for the password, the Basic credential and anything shaped like a JWT.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.harness import run_files, secret_hits


@pytest.fixture(autouse=True)
def no_secret_in_any_output(tmp_path: Path) -> Iterator[None]:
    yield
    files = list(run_files(tmp_path))
    hits = secret_hits(files)
    assert not hits, "secrets found in what the pipeline wrote:\n" + "\n".join(hits)
