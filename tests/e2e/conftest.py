"""Fixtures for the end-to-end tests: the real Meltano, the real simulator and real servers.

Each test runs `meltano run tap-qualys <loader>` as a subprocess against this repository's
meltano.yml. Meltano's own directory (`.meltano`: plugin virtualenvs, run files) is redirected to
one temporary directory per session with MELTANO_SYS_DIR_ROOT, so every plugin is installed once
per session by the real `meltano install`; each test gets its own system database (state) with
MELTANO_DATABASE_URI and its own loader destination through the plugins' environment variables.

Outside CI, a missing Meltano or PostgreSQL skips the tests that need them with what to install;
with CI=true it fails instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from qualys_simulator.testing import SimulatorProcess

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in {"true", "1"}
MELTANO_HINT = (
    "python3 -m venv .venv-meltano && .venv-meltano/bin/pip install -r requirements/meltano.txt "
    "(or set MELTANO_BIN)"
)
POSTGRES_HINT = "apt-get install postgresql (or set E2E_POSTGRES_HOST/PORT/USER/PASSWORD)"
RUN_TIMEOUT_SECONDS = 900


def unavailable(message: str) -> None:
    """Skip locally; fail in CI, where every end-to-end test must really run."""
    if IN_CI:
        pytest.fail(f"{message} (CI=true: not skipping)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, process: subprocess.Popen[Any] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.1)
    return False


# --- Meltano ------------------------------------------------------------------------------------


def find_meltano() -> Path | None:
    candidates = [
        os.environ.get("MELTANO_BIN", ""),
        str(REPO / ".venv-meltano" / "bin" / "meltano"),
        shutil.which("meltano") or "",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


@dataclass
class MeltanoSession:
    """The Meltano executable and the `.meltano` directory shared by the session."""

    executable: Path
    sys_dir: Path
    installed: set[str] = field(default_factory=set)

    def base_env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            # A developer's own settings must not leak into the pipeline under test.
            if not key.startswith(("TAP_QUALYS_", "TARGET_", "MELTANO_", "VIRTUAL_ENV"))
        }
        env.update(
            MELTANO_SYS_DIR_ROOT=str(self.sys_dir),
            MELTANO_ENVIRONMENT="dev",
            MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
            # meltano.yml is the repository's own file: no command may rewrite it.
            MELTANO_PROJECT_READONLY="true",
            MELTANO_CLI_LOG_LEVEL="info",
            NO_COLOR="1",
        )
        return env

    def install(self, *plugins: str) -> None:
        """`meltano install` the plugins not yet installed in this session."""
        missing = [plugin for plugin in plugins if plugin not in self.installed]
        if not missing:
            return
        log = self.sys_dir / "install.log"
        with log.open("a") as out:
            result = subprocess.run(
                [str(self.executable), "install", *missing],
                cwd=REPO,
                env=self.base_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=RUN_TIMEOUT_SECONDS,
                check=False,
            )
        if result.returncode != 0:
            tail = "\n".join(log.read_text().splitlines()[-40:])
            pytest.fail(f"meltano install {' '.join(missing)} failed:\n{tail}")
        self.installed.update(missing)


@pytest.fixture(scope="session")
def meltano_session(tmp_path_factory: pytest.TempPathFactory) -> MeltanoSession:
    executable = find_meltano()
    if executable is None:
        unavailable(f"Meltano is not installed: {MELTANO_HINT}")
    assert executable is not None
    return MeltanoSession(executable, tmp_path_factory.mktemp("meltano-sys"))


@dataclass
class Pipeline:
    """One test's pipeline: its simulator, its state database and its loader settings."""

    session: MeltanoSession
    workdir: Path
    sim: SimulatorProcess
    env: dict[str, str]
    runs: int = 0

    def run(self, extractor: str, loader: str, *extra_args: str) -> str:
        """`meltano run <extractor> <loader>`; fails the test with the log tail if it fails."""
        self.session.install(extractor, loader)
        self.runs += 1
        log = self.workdir / f"meltano-run-{self.runs}.log"
        with log.open("w") as out:
            result = subprocess.run(
                [str(self.session.executable), "run", *extra_args, extractor, loader],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=RUN_TIMEOUT_SECONDS,
                check=False,
            )
        text = log.read_text(errors="replace")
        if result.returncode != 0:
            tail = "\n".join(text.splitlines()[-60:])
            pytest.fail(f"meltano run {extractor} {loader} exited {result.returncode}:\n{tail}")
        return text

    def start(self, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        """Start `meltano <args>` without waiting; its output goes to the returned log file."""
        self.runs += 1
        log = self.workdir / f"meltano-{self.runs}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [str(self.session.executable), *args],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return process, log


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> Iterator[SimulatorProcess]:
    """A small but non-trivial subscription: paging, IGs, fixed detections, CSAM, PCRS.

    A test can change the options with `@pytest.mark.parametrize("sim", [{...}], indirect=True)`.
    """
    options = {
        "hosts": 60,
        "seed": 7,
        "detections_per_host": 6,
        "kb_size": 300,
        "kb_extra": 50,
        "policies": 4,
        **getattr(request, "param", {}),
    }
    with SimulatorProcess(**options) as simulator:
        yield simulator


@pytest.fixture
def pipeline(meltano_session: MeltanoSession, sim: SimulatorProcess, tmp_path: Path) -> Pipeline:
    env = meltano_session.base_env()
    env.update(
        MELTANO_DATABASE_URI=f"sqlite:///{tmp_path / 'meltano.db'}",
        TAP_QUALYS_USERNAME=sim.username,
        TAP_QUALYS_PASSWORD=sim.password,
        TAP_QUALYS_API_SERVER=sim.url,
        TAP_QUALYS_GATEWAY_URL=sim.url,
        # Small pages and batches so that a 60-host run still pages and batches.
        TAP_QUALYS_TRUNCATION_LIMIT="25",
        TAP_QUALYS_HOST_BATCH_SIZE="20",
    )
    return Pipeline(meltano_session, tmp_path, sim, env)


# --- PostgreSQL ---------------------------------------------------------------------------------


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    password: str

    def connect(self, database: str = "postgres") -> Any:
        import psycopg2  # noqa: PLC0415

        connection = psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database,
            connect_timeout=5,
        )
        connection.autocommit = True
        return connection


def _reachable(server: PostgresServer) -> bool:
    try:
        server.connect().close()
    except Exception:  # noqa: BLE001 - any failure means "not usable", the caller decides
        return False
    return True


def _throwaway_cluster(base: Path) -> Iterator[PostgresServer]:
    """A private cluster from Debian's binaries (postgresql-NN): trust auth, a free port."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if not bins:
        unavailable(f"no PostgreSQL at 127.0.0.1:5432 and no initdb to start one: {POSTGRES_HINT}")
    bindir = bins[0].parent
    data = base / "pgdata"
    port = free_port()
    # initdb refuses to run as root; Debian's package creates the `postgres` user for this.
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_user,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(base / "postgres.log"),
            "-o",
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield PostgresServer("127.0.0.1", port, "postgres", "postgres")
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            check=False,
            capture_output=True,
        )


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer(
        os.environ.get("E2E_POSTGRES_HOST", "127.0.0.1"),
        int(os.environ.get("E2E_POSTGRES_PORT", "5432")),
        os.environ.get("E2E_POSTGRES_USER", "postgres"),
        # trust auth ignores it, but target-postgres insists on a password being set
        os.environ.get("E2E_POSTGRES_PASSWORD", "postgres"),
    )
    if _reachable(server):
        yield server
        return
    yield from _throwaway_cluster(tmp_path_factory.mktemp("postgres"))


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A uniquely named database, dropped after the test."""
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.connect()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield name
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


# --- S3 (moto's standalone server) -------------------------------------------------------------


@dataclass
class S3Server:
    endpoint_url: str
    region: str = "us-east-1"
    access_key: str = "testing"
    secret_key: str = "testing"

    def client(self) -> Any:
        import boto3  # noqa: PLC0415

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        if not wait_for_port(port, 30, process):
            pytest.fail(f"moto's S3 server did not start on port {port}: see {log.name}")
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    name = f"e2e-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    return name
