"""Every ```bash block of README.md runs as written, in README order, on a copy of the project.

The simulator stands in for Qualys, a private PostgreSQL cluster for the server of the Postgres
recipe (its fixed names `qualys` need one of their own), and the S3 block starts moto_server
itself. Blocks marked `<!-- not run: reason -->` are left out; tests/test_readme.py checks which.
Plugins come from the session's `.meltano` (installed once), so no block reinstalls them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from qualys_simulator.testing import SimulatorProcess
from tests.e2e.conftest import (
    REPO,
    MeltanoSession,
    _throwaway_cluster,
    unavailable,
)
from tests.test_readme import shell_blocks

pytestmark = pytest.mark.e2e

BLOCK_TIMEOUT_SECONDS = 600
PLUGINS = (
    "tap-qualys",
    "tap-qualys--postgres",
    "tap-qualys--postgres-copy",
    "target-sqlite",
    "target-postgres",
    "target-qualys-postgres",
    "target-s3",
    # the jobs' dbt and report steps
    "dbt-sqlite",
    "dbt-postgres",
    "qualys-report",
)


def project_copy(destination: Path) -> Path:
    """The repository's files (tracked or new, not ignored), with its two virtualenvs linked."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, files.split("\0")):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    for venv in (".venv", ".venv-meltano"):
        (destination / venv).symlink_to((REPO / venv).resolve())
    (destination / "output").mkdir(exist_ok=True)
    return destination


def run_block(text: str, cwd: Path, env: dict[str, str], log: Path) -> int:
    """`bash -e -o pipefail` on the block; its background children die with it."""
    with log.open("w") as out:
        process = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", text],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            return process.wait(timeout=BLOCK_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            return -1
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.skipif(
    sys.version_info >= (3, 13), reason="plinxore-target-s3 supports Python < 3.13 only"
)
def test_every_readme_shell_block_runs(meltano_session: MeltanoSession, tmp_path: Path) -> None:
    if shutil.which("psql") is None:
        unavailable("psql is not installed: apt-get install postgresql-client")
    blocks = [block for block in shell_blocks() if not block.not_run]
    meltano_session.install(*PLUGINS)
    project = project_copy(tmp_path / "project")
    timings: list[str] = []
    with (
        SimulatorProcess(hosts=40, seed=7, detections_per_host=5, policies=3) as sim,
        # Directly under /tmp: the cluster runs as the user postgres, which cannot enter pytest's
        # private temporary directories.
        tempfile.TemporaryDirectory(prefix="readme-postgres-") as cluster_dir,
        contextlib.contextmanager(_throwaway_cluster)(Path(cluster_dir)) as postgres,
    ):
        env = meltano_session.base_env()
        del env["MELTANO_PROJECT_READONLY"]  # the README's `config set` and `schedule add` write
        env.update(
            MELTANO_DATABASE_URI=f"sqlite:///{tmp_path / 'meltano.db'}",
            TAP_QUALYS_USERNAME=sim.username,
            TAP_QUALYS_PASSWORD=sim.password,
            TAP_QUALYS_API_SERVER=sim.url,
            TAP_QUALYS_GATEWAY_URL=sim.url,
            PGHOST=postgres.host,
            PGPORT=str(postgres.port),
            PGUSER=postgres.user,
        )
        # What a reader sees who skips the recipe's CREATE DATABASE: the load block's own grep
        # ends its output with the cause, not with Meltano's BrokenPipeError tracebacks.
        load = next(block for block in blocks if "meltano run qualys-to-postgres" in block.text)
        log = tmp_path / "postgres-without-database.log"
        assert run_block(load.text, project, env, log) != 0
        last_line = log.read_text(errors="replace").rstrip().splitlines()[-1]
        assert re.search(r'FATAL: +(role|database) "qualys" does not exist', last_line), last_line

        for number, block in enumerate(blocks, 1):
            log = tmp_path / f"block-{number}.log"
            started = time.monotonic()
            returncode = run_block(block.text, project, env, log)
            first_line = block.text.splitlines()[0][:70]
            timings.append(
                f"README.md:{block.line} ({block.section}) {time.monotonic() - started:6.1f} s"
                f"  {first_line}"
            )
            if returncode != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                pytest.fail(
                    f"README.md:{block.line} ({block.section}) exited {returncode}:\n"
                    f"{block.text}\n--- output ---\n{tail}"
                )

        connection = postgres.connect("qualys")
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT data_type, count(*) FROM information_schema.columns "
                    "WHERE table_schema = 'tap_qualys' GROUP BY data_type"
                )
                types = dict(cursor.fetchall())
        finally:
            connection.close()
    print("\n".join(["", "README blocks, wall time:", *timings]))
    # The Postgres queries answer as their SQLite originals do: only the CVE lookup may be empty.
    queries = next(n for n, block in enumerate(blocks, 1) if "search_path" in block.text)
    counts = re.findall(r"^\((\d+) rows?\)$", (tmp_path / f"block-{queries}.log").read_text(), re.M)
    assert len(counts) == 5, counts
    assert sum(int(count) > 0 for count in counts) >= 4, counts
    assert "ARRAY" not in types, types
    assert "timestamp without time zone" not in types, types
    assert types.get("timestamp with time zone"), types
    assert types.get("jsonb"), types
    # The README's Meltano commands rewrote the copy's meltano.yml; it is still what it should be.
    check = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "gen_plugin_definitions.py"),
            "--check",
            "--meltano-yml",
            str(project / "meltano.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
