"""Running the real executables: timed, with their exact peak RSS, alone or as a pipe."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TAP = BIN / "tap-qualys"
TARGET_SQLITE = BIN / "target-qualys-sqlite"


class BenchmarkError(RuntimeError):
    """A run failed or produced the wrong data: the benchmark stops with the log tail."""


@dataclass
class Finished:
    seconds: float
    cpu_seconds: float
    #: Only with ``run(..., peak_rss=True)``: see :func:`measured_child`.
    peak_rss_mib: float = float("nan")


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _reap(process: subprocess.Popen[bytes], log: Path, started: float) -> Finished:
    """Wait with wait4(), whose rusage is this one child's own CPU time."""
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        msg = f"{process.args!r} exited {process.returncode}; log {log}:\n{_tail(log)}"
        raise BenchmarkError(msg)
    return Finished(elapsed, usage.ru_utime + usage.ru_stime)


def measured_child(report: Path, command: Sequence[str]) -> int:
    """Run ``command`` and write its own CPU time and peak RSS to ``report`` (JSON).

    A child's ru_maxrss counts the memory of the process it was forked from (Linux keeps the
    high-water mark of the address space it replaced at exec), and the harness holds whole
    cached answers in memory. Forked from this small process instead, the figure is the
    command's own.
    """
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    cpu = usage.ru_utime + usage.ru_stime
    report.write_text(json.dumps({"peak_rss_kib": usage.ru_maxrss, "cpu_seconds": cpu}))
    return os.waitstatus_to_exitcode(status)


def run(
    command: Sequence[str | Path],
    *,
    log: Path,
    stdin: Path | None = None,
    stdout: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    peak_rss: bool = False,
) -> Finished:
    """Run one process to the end; stdout to a file or /dev/null, stderr to ``log``.

    ``peak_rss`` runs it under :func:`measured_child` to learn its own peak RSS.
    """
    report = log.with_suffix(".rusage.json")
    if peak_rss:
        wrapper: list[str | Path] = [sys.executable, "-m", "benchmarks.processes", report, "--"]
        command = [*wrapper, *command]
    with contextlib.ExitStack() as files:
        err = files.enter_context(log.open("wb"))
        inp = files.enter_context((stdin or Path(os.devnull)).open("rb"))
        out = files.enter_context((stdout or Path(os.devnull)).open("wb"))
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(part) for part in command],
            stdin=inp,
            stdout=out,
            stderr=err,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
        finished = _reap(process, log, started)
    if peak_rss:
        usage = json.loads(report.read_text())
        finished.cpu_seconds = usage["cpu_seconds"]
        finished.peak_rss_mib = usage["peak_rss_kib"] / 1024
    return finished


def pipe(
    producer: Sequence[str | Path],
    consumer: Sequence[str | Path],
    *,
    logs: tuple[Path, Path],
    env: Mapping[str, str] | None = None,
) -> tuple[Finished, Finished, float]:
    """``producer | consumer`` as a shell would run it; returns both and the pipeline's wall."""
    with logs[0].open("wb") as first_err, logs[1].open("wb") as second_err:
        started = time.perf_counter()
        first = subprocess.Popen(
            [str(part) for part in producer],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=first_err,
            env=dict(env) if env is not None else None,
        )
        assert first.stdout is not None
        second = subprocess.Popen(
            [str(part) for part in consumer],
            stdin=first.stdout,
            stdout=subprocess.DEVNULL,
            stderr=second_err,
            env=dict(env) if env is not None else None,
        )
        first.stdout.close()  # the consumer holds the only read end now
        try:
            produced = _reap(first, logs[0], started)
        except BenchmarkError:
            second.kill()
            second.wait()
            raise
        consumed = _reap(second, logs[1], started)
        return produced, consumed, time.perf_counter() - started


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value, indent=1))
    return path


def select_streams(catalog: dict[str, Any], streams: Iterable[str]) -> dict[str, Any]:
    """A copy of a discovered catalog with exactly ``streams`` selected (all their fields)."""
    wanted = set(streams)
    selected = json.loads(json.dumps(catalog))
    for stream in selected["streams"]:
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = stream["tap_stream_id"] in wanted
    return selected


# --- tools that are not in the project's virtualenv ---------------------------------------------


def find_meltano() -> Path | None:
    """MELTANO_BIN, then the repository's .venv-meltano, then PATH (as the e2e tests look)."""
    for candidate in (
        os.environ.get("MELTANO_BIN", ""),
        str(REPO / ".venv-meltano" / "bin" / "meltano"),
        shutil.which("meltano") or "",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def meltano_env(sys_dir: Path) -> dict[str, str]:
    """Meltano's own files under the benchmarks' cache; nothing of the caller's setup leaks in."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TAP_QUALYS_", "TARGET_", "MELTANO_", "VIRTUAL_ENV"))
    }
    env.update(
        MELTANO_SYS_DIR_ROOT=str(sys_dir),
        MELTANO_ENVIRONMENT="dev",
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
        MELTANO_PROJECT_READONLY="true",
        NO_COLOR="1",
    )
    return env


def meltano_install(meltano: Path, sys_dir: Path, plugins: Sequence[str], log: Path) -> None:
    """`meltano install --clean`, again only when meltano.yml or a pyproject.toml has changed.

    The plugins are `pip_url: -e ...` editable, so a code change needs no reinstall; a change to
    how they are installed (meltano.yml's `env:`, say) or to their dependencies does, and only a
    clean one: uv leaves the packages it already has as they are (uncompiled, for one).
    """
    recipe = hashlib.sha256(
        b"".join(
            (REPO / name).read_bytes()
            for name in (
                "meltano.yml",
                "pyproject.toml",
                "packages/target-qualys-sqlite/pyproject.toml",
            )
        )
    ).hexdigest()[:16]
    marker = sys_dir / f"installed-{'-'.join(plugins)}"
    if marker.exists() and marker.read_text() == recipe:
        return
    sys_dir.mkdir(parents=True, exist_ok=True)
    run([meltano, "install", "--clean", *plugins], log=log, env=meltano_env(sys_dir), cwd=REPO)
    marker.write_text(recipe)


def meltano_plugin_executable(sys_dir: Path, kind: str, name: str, executable: str = "") -> Path:
    """The executable Meltano installed for the plugin (its `executable:`, default its name)."""
    return sys_dir / kind / name / "venv" / "bin" / (executable or name)


def pip_url_of(plugin: str) -> str:
    """The loader's pinned requirement, read from meltano.yml (one source of truth)."""
    lines = (REPO / "meltano.yml").read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip() == f"- name: {plugin}":
            for following in lines[index + 1 : index + 12]:
                if following.strip().startswith("pip_url:"):
                    return following.split(":", 1)[1].strip()
    msg = f"no pip_url for {plugin} in meltano.yml"
    raise BenchmarkError(msg)


def venv_tool(cache: Path, plugin: str, log: Path) -> Path:
    """An executable installed from PyPI into a virtualenv under the cache, once."""
    venv = cache / f"venv-{plugin}"
    executable = venv / "bin" / plugin
    if executable.exists():
        return executable
    run([sys.executable, "-m", "venv", venv], log=log)
    run([venv / "bin" / "pip", "install", "-q", pip_url_of(plugin)], log=log)
    return executable


if __name__ == "__main__":
    sys.exit(measured_child(Path(sys.argv[1]), sys.argv[3:]))
