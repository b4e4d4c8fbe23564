"""The real pipeline for the reliability tests: simulator, `tap-qualys | target-sqlite`, compare.

Every run is three real processes: the tap, `tee` (so the tap's own Singer output is kept for
the secret scan and for checkpoint replays) and the target, joined by OS pipes. Everything a run
prints or writes is kept in the test's directory, and every file there is scanned for secrets at
the end of each test (see ``conftest.py``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qualys_simulator.testing import SimulatorProcess
from tap_qualys.naming import snake_case
from tests.e2e.loaded import STREAMS, compare_stream, live_view, sqlite_rows

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
TAP = str(BIN / "tap-qualys") if (BIN / "tap-qualys").exists() else "tap-qualys"
TARGET = (
    str(BIN / "target-qualys-sqlite")
    if (BIN / "target-qualys-sqlite").exists()
    else "target-qualys-sqlite"
)

#: Recognizable credentials: every byte any run writes is searched for them (scenario 6).
USERNAME = "qa_sim_user"  # third character `_`: US_01
PASSWORD = "S3cr3t-P4ssw0rd-XYZZY"
BASIC_CREDENTIAL = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
JWT_PATTERN = re.compile(rb"eyJ[A-Za-z0-9_-]+\.eyJ")

ALL_STREAMS = tuple(STREAMS)
VM_STREAMS = ("knowledge_base", "hosts", "host_detections")
GATEWAY_STREAMS = ("csam_assets", "pcrs_policies", "pcrs_policy_host_ids", "pcrs_posture_info")

#: Small but non-trivial: every stream pages or batches at least a few times.
SMALL_WORLD: dict[str, Any] = {
    "hosts": 30, "seed": 11, "detections_per_host": 4, "kb_size": 80, "kb_extra": 10,
    "policies": 2, "kb_page_size": 30,
}
#: Tap settings that make the small world page and batch, with fast retries.
SMALL_TAP: dict[str, Any] = {
    "truncation_limit": 10, "host_batch_size": 8, "csam_page_size": 15, "pcrs_batch_size": 8,
    "retry_backoff_seconds": 0.05, "max_retries": 12,
}
LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} [\d:,]+ \| (?P<level>[A-Z]+)\s*\| (?P<logger>\S+)\s*\| "
                      r"(?P<message>.*)$")


def simulator(**options: Any) -> SimulatorProcess:
    """A simulator that knows the recognizable password; not started."""
    return SimulatorProcess(username=USERNAME, password=PASSWORD, **options)


def tap_config(sim: SimulatorProcess, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "username": sim.username, "password": sim.password,
        "api_server": sim.url, "gateway_url": sim.url, **SMALL_TAP,
    }
    config.update(overrides)
    return {key: value for key, value in config.items() if value is not None}


# --- catalogs ----------------------------------------------------------------------------------

_DISCOVERED: dict[str, Any] = {}


def discovered_catalog(config_path: Path) -> dict[str, Any]:
    """`tap-qualys --discover`, once per test session (the catalog does not depend on data)."""
    if "catalog" not in _DISCOVERED:
        result = subprocess.run([TAP, "--config", str(config_path), "--discover"],
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, f"tap-qualys --discover failed:\n{result.stderr[-3000:]}"
        _DISCOVERED["catalog"] = json.loads(result.stdout)
    return json.loads(json.dumps(_DISCOVERED["catalog"]))


def select(catalog: dict[str, Any], streams: Iterable[str]) -> dict[str, Any]:
    """The catalog with exactly ``streams`` selected (every property of them)."""
    wanted = set(streams)
    for entry in catalog["streams"]:
        chosen = entry["tap_stream_id"] in wanted
        for item in entry.get("metadata", []):
            if item.get("breadcrumb") == []:
                item["metadata"]["selected"] = chosen
    return catalog


# --- runs --------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What one pipeline run left behind."""

    directory: Path
    tap_rc: int | None
    target_rc: int | None
    killed: bool
    elapsed: float
    #: Peak resident memory in bytes of the tap and the target, sampled every 0.1 s.
    peak_rss: dict[str, int] = field(default_factory=dict)

    def text(self, name: str) -> str:
        path = self.directory / name
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def tap_stderr(self) -> str:
        return self.text("tap.stderr")

    @property
    def target_stderr(self) -> str:
        return self.text("target.stderr")

    @property
    def target_states(self) -> list[dict[str, Any]]:
        """STATE values the target emitted: it does so only after committing what preceded."""
        return _json_lines(self.text("target.stdout"))

    @property
    def last_state(self) -> dict[str, Any] | None:
        states = self.target_states
        return states[-1] if states else None

    def tap_messages(self) -> list[dict[str, Any]]:
        return _json_lines(self.text("tap.stdout"))

    def records(self, stream: str) -> list[dict[str, Any]]:
        return [m["record"] for m in self.tap_messages()
                if m.get("type") == "RECORD" and m.get("stream") == stream]

    def log(self, levels: Iterable[str] = ("ERROR", "CRITICAL")) -> list[str]:
        wanted = set(levels)
        return [m.group("message") for line in self.tap_stderr.splitlines()
                if (m := LOG_LINE.match(line)) and m.group("level") in wanted]

    def describe(self) -> str:
        tail = "\n".join(line for line in self.tap_stderr.splitlines()
                         if "METRIC" not in line)[-4000:]
        return (f"tap exit {self.tap_rc}, target exit {self.target_rc} in {self.elapsed:.1f} s "
                f"({self.directory})\n--- tap stderr (tail) ---\n{tail}\n--- target stderr "
                f"(tail) ---\n{self.target_stderr[-1500:]}")


def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                out.append(value)
    return out


class MemoryWatch(threading.Thread):
    """Samples the resident memory of processes until they exit; keeps the peak of each."""

    def __init__(self, processes: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids = processes
        self.peak = dict.fromkeys(processes, 0)
        self.done = threading.Event()

    def run(self) -> None:
        import psutil  # noqa: PLC0415 - only where memory is measured

        handles = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(psutil.Error):
                handles[name] = psutil.Process(pid)
        while not self.done.is_set() and handles:
            for name, handle in list(handles.items()):
                try:
                    self.peak[name] = max(self.peak[name], handle.memory_info().rss)
                except psutil.Error:
                    del handles[name]
            self.done.wait(0.1)


@dataclass
class Running:
    """A pipeline in flight: the three processes, to watch or to kill."""

    directory: Path
    processes: list[subprocess.Popen[bytes]]
    files: list[Any]
    started: float
    killed: bool = False
    memory: MemoryWatch | None = None

    @property
    def tap(self) -> subprocess.Popen[bytes]:
        return self.processes[0]

    def alive(self) -> bool:
        return any(p.poll() is None for p in self.processes)

    def tap_output(self) -> str:
        return (self.directory / "tap.stdout").read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL every process of the pipeline at once, like an OOM killer or a lost VM."""
        self.killed = True
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> RunResult:
        deadline = self.started + timeout
        for process in self.processes:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.kill()
                process.wait()
                for handle in self.files:
                    handle.close()
                raise AssertionError(
                    f"the pipeline did not finish within {timeout} s (killed): {self.directory}"
                    f"\n{RunResult(self.directory, None, None, True, timeout).describe()}"
                ) from None
        for handle in self.files:
            handle.close()
        peak: dict[str, int] = {}
        if self.memory is not None:
            self.memory.done.set()
            self.memory.join(5)
            peak = dict(self.memory.peak)
        return RunResult(self.directory, self.processes[0].returncode,
                         self.processes[2].returncode, self.killed,
                         time.monotonic() - self.started, peak)


class Pipeline:
    """One test's pipeline: its simulator, its target database, its run directories."""

    def __init__(self, sim: SimulatorProcess, workdir: Path, **tap_overrides: Any) -> None:
        self.sim = sim
        self.workdir = workdir
        self.database = workdir / "target.db"
        self.tap_overrides = tap_overrides
        self.target_overrides: dict[str, Any] = {}
        self.runs = 0

    def config(self, **overrides: Any) -> dict[str, Any]:
        return tap_config(self.sim, **{**self.tap_overrides, **overrides})

    def start(self, *, state: dict[str, Any] | None = None, streams: Iterable[str] | None = None,
              config: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Running:
        self.runs += 1
        directory = self.workdir / f"run{self.runs}"
        directory.mkdir()
        config_path = directory / "tap-config.json"
        config_path.write_text(json.dumps(config if config is not None else self.config()))
        target_path = directory / "target-config.json"
        target_path.write_text(json.dumps({"database": str(self.database),
                                           **self.target_overrides}))
        args = [TAP, "--config", str(config_path)]
        if streams is not None:
            catalog = select(discovered_catalog(config_path), streams)
            (directory / "catalog.json").write_text(json.dumps(catalog))
            args += ["--catalog", str(directory / "catalog.json")]
        if state is not None:
            (directory / "state.json").write_text(json.dumps(state))
            args += ["--state", str(directory / "state.json")]
        run_env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_", "TARGET_"))}
        run_env.update(env or {})
        files = [(directory / name).open("wb") for name in
                 ("tap.stderr", "tap.stdout", "target.stdout", "target.stderr")]
        tap_err, tap_out, target_out, target_err = files
        started = time.monotonic()
        tap = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=tap_err, cwd=directory,
                               env=run_env)
        tee = subprocess.Popen(["tee", str(directory / "tap.stdout")], stdin=tap.stdout,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        target = subprocess.Popen([TARGET, "--config", str(target_path)], stdin=tee.stdout,
                                  stdout=target_out, stderr=target_err, cwd=directory,
                                  env=run_env)
        assert tap.stdout is not None
        assert tee.stdout is not None
        tap.stdout.close()  # the processes hold their own ends of the pipes
        tee.stdout.close()
        tap_out.close()  # tee writes this file itself
        memory = MemoryWatch({"tap": tap.pid, "target": target.pid})
        memory.start()
        return Running(directory, [tap, tee, target], [tap_err, target_out, target_err], started,
                       memory=memory)

    def run(self, *, timeout: float = 240, **kwargs: Any) -> RunResult:
        return self.start(**kwargs).wait(timeout)

    def sync(self, *, timeout: float = 240, **kwargs: Any) -> RunResult:
        """A run that must succeed."""
        result = self.run(timeout=timeout, **kwargs)
        assert (result.tap_rc, result.target_rc) == (0, 0), result.describe()
        return result

    def replay_into_target(self, lines: list[str], name: str = "replay") -> RunResult:
        """Feed recorded Singer lines to a fresh target-sqlite on the same database."""
        directory = self.workdir / f"{name}{self.runs}"
        directory.mkdir()
        target_path = directory / "target-config.json"
        target_path.write_text(json.dumps({"database": str(self.database),
                                           **self.target_overrides}))
        started = time.monotonic()
        with (directory / "target.stdout").open("wb") as out, \
                (directory / "target.stderr").open("wb") as err:
            result = subprocess.run([TARGET, "--config", str(target_path)],
                                    input="".join(lines).encode(), stdout=out, stderr=err,
                                    timeout=240, check=False)
        return RunResult(directory, None, result.returncode, False, time.monotonic() - started)

    # --- what the target holds --------------------------------------------------------------

    def loaded(self, streams: Iterable[str] = ALL_STREAMS) -> dict[str, list[dict[str, Any]]]:
        return {stream: sqlite_rows(self.database, stream) for stream in streams}

    def problems(self, streams: Iterable[str] = ALL_STREAMS) -> list[str]:
        problems: list[str] = []
        streams = list(streams)
        wanted = {*streams, "pcrs_policy_host_ids"} if "pcrs_posture_info" in streams else streams
        view = live_view({stream: sqlite_rows(self.database, stream) for stream in wanted})
        for stream in streams:
            truth = self.sim.ground_truth(stream)
            assert truth, f"the ground truth of {stream} is empty: the test would prove nothing"
            problems += compare_stream(stream, truth, view[stream])
        return problems

    def assert_ground_truth(self, streams: Iterable[str] = ALL_STREAMS,
                            context: str = "") -> None:
        problems = self.problems(streams)
        assert not problems, (f"{context}\nthe target differs from the ground truth:\n"
                              + "\n".join(problems))

    def snapshot(self) -> dict[str, Any]:
        """Every table's rows (sorted), to prove a failed run changed nothing."""
        if not self.database.exists():
            return {}
        connection = sqlite3.connect(self.database)
        try:
            tables = [row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            return {table: sorted(map(repr, connection.execute(f'SELECT * FROM "{table}"')))
                    for table in tables}
        finally:
            connection.close()


def duplicate_keys(rows: list[dict[str, Any]], keys: Iterable[str]) -> list[tuple[Any, ...]]:
    names = [snake_case(k) for k in keys]
    counts = Counter(tuple(row.get(name) for name in names) for row in rows)
    return [key for key, count in counts.items() if count > 1]


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               running: Running | None = None, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if running is not None and not running.alive():
            break
        time.sleep(interval)
    if running is not None:
        running.kill()
        result = running.wait(10)
        raise AssertionError(f"never saw {what}\n{result.describe()}")
    raise AssertionError(f"never saw {what} within {timeout} s")


# --- secrets -----------------------------------------------------------------------------------

SECRET_NEEDLES: tuple[bytes, ...] = (PASSWORD.encode(), BASIC_CREDENTIAL.encode())


def secret_hits(paths: Iterable[Path]) -> list[str]:
    """Every occurrence of the password, the Basic credential or a JWT in these files."""
    hits: list[str] = []
    for path in paths:
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".db" or data.startswith(b"SQLite format 3"):
            data = _sqlite_text(path)
        for needle in SECRET_NEEDLES:
            if needle in data:
                hits.append(f"{path}: {needle.decode()!r} x{data.count(needle)}")
        for match in JWT_PATTERN.finditer(data):
            hits.append(f"{path}: a JWT {match.group(0)[:24].decode()}...")
    return hits


def _sqlite_text(path: Path) -> bytes:
    """The database's raw bytes plus every value, so compressed or paged text is seen too."""
    chunks = [path.read_bytes()]
    with contextlib.suppress(sqlite3.Error):
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            for (table,) in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                for row in connection.execute(f'SELECT * FROM "{table}"'):
                    chunks.append(repr(row).encode())
        finally:
            connection.close()
    return b"\n".join(chunks)


def run_files(workdir: Path) -> Iterator[Path]:
    """Every file the test's runs produced: outputs, logs, states, catalogs, databases."""
    for path in sorted(workdir.rglob("*")):
        # The configs we wrote hold the password on purpose: they are input, not output.
        if path.is_file() and path.name not in {"tap-config.json", "target-config.json"}:
            yield path


@dataclass
class SecretLedger:
    """Counts what the secret scan covered, for the scenario-6 summary."""

    files: int = 0
    bytes: int = 0
    hits: list[str] = field(default_factory=list)
