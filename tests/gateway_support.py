"""Helpers for the stream tests: run the tap on selected streams only (in-process or as a
command) and serve crafted answers from the simulator."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import subprocess
import sys
import typing as t
from datetime import datetime, timezone

from tap_qualys.tap import TapQualys

if t.TYPE_CHECKING:
    from pathlib import Path

    from qualys_simulator.testing import SimulatorProcess

Records = dict[str, list[dict[str, t.Any]]]

PCRS_STREAMS = ("pcrs_policies", "pcrs_policy_host_ids", "pcrs_posture_info")
GATEWAY_STREAMS = ("csam_assets", *PCRS_STREAMS)
#: What a JWT looks like anywhere in a log: two base64url JSON segments and a signature.
JWT_PATTERN = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+")


def gateway_config(sim: SimulatorProcess, **overrides: t.Any) -> dict[str, t.Any]:
    """A tap config for ``sim`` with fast retries."""
    return {
        "username": sim.username,
        "password": sim.password,
        "api_server": sim.url,
        "gateway_url": sim.url,
        "retry_backoff_seconds": 0.05,
        **overrides,
    }


def catalog(config: dict[str, t.Any], streams: t.Iterable[str]) -> dict[str, t.Any]:
    """The tap's catalog with only ``streams`` selected."""
    wanted = set(streams)
    document = TapQualys(config=config).catalog_dict
    for entry in document["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = entry["tap_stream_id"] in wanted
    return document


def parse_messages(output: str) -> tuple[Records, list[dict[str, t.Any]]]:
    """Records per stream and STATE values from Singer output."""
    records: Records = {}
    states: list[dict[str, t.Any]] = []
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        message = json.loads(line)
        if message["type"] == "RECORD":
            records.setdefault(message["stream"], []).append(message["record"])
        elif message["type"] == "STATE":
            states.append(message["value"])
    return records, states


def run_tap(
    config: dict[str, t.Any],
    streams: t.Iterable[str],
    state: dict[str, t.Any] | None = None,
) -> tuple[Records, list[dict[str, t.Any]]]:
    """A sync of ``streams`` in-process; records per stream and the STATE messages."""
    raw = io.BytesIO()
    # A text stream with a binary buffer underneath: the tap's message writer writes bytes
    # to sys.stdout.buffer.
    out = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
    with contextlib.redirect_stdout(out):
        TapQualys(config=config, catalog=catalog(config, streams), state=state or {}).sync_all()
    out.flush()
    return parse_messages(raw.getvalue().decode("utf-8"))


def tap_command(
    tmp_path: Path, config: dict[str, t.Any], streams: t.Iterable[str], state: t.Any = None
) -> list[str]:
    """The ``tap_qualys`` command line syncing ``streams``, its files written to ``tmp_path``."""
    command = [
        sys.executable,
        "-m",
        "tap_qualys",
        "--config",
        write_json(tmp_path / "config.json", config),
        "--catalog",
        write_json(tmp_path / "catalog.json", catalog(config, streams)),
    ]
    if state is not None:
        command += ["--state", write_json(tmp_path / "state.json", state)]
    return command


def run_cli(
    tmp_path: Path, config: dict[str, t.Any], streams: t.Iterable[str], state: t.Any = None
) -> subprocess.CompletedProcess[str]:
    """A sync of ``streams`` by the ``tap_qualys`` command (see ``tap_command``)."""
    command = tap_command(tmp_path, config, streams, state)
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def inject(sim: SimulatorProcess, endpoint: str, body: t.Any, times: int, **extra: t.Any) -> None:
    """The next ``times`` answers of ``endpoint`` are a 200 with ``body`` (JSON unless bytes)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    sim.admin_post(
        "/admin/inject",
        {
            "endpoint": endpoint,
            "status": 200,
            "content_type": extra.pop("content_type", "application/json"),
            "body_b64": base64.b64encode(raw).decode(),
            "times": times,
            **extra,
        },
    )


def write_json(path: Path, document: t.Any) -> str:
    """Write ``document`` to ``path``; return the path as a string for a command line."""
    path.write_text(json.dumps(document))
    return str(path)


def keyed(records: t.Iterable[dict[str, t.Any]], *keys: str) -> dict[tuple[t.Any, ...], dict]:
    """Index records by key; fail on a duplicate, which one sync must never emit."""
    index: dict[tuple[t.Any, ...], dict[str, t.Any]] = {}
    for record in records:
        key = tuple(record[k] for k in keys)
        assert key not in index, f"duplicate record {key}"
        index[key] = record
    return index


def merged(*runs: t.Iterable[dict[str, t.Any]], keys: tuple[str, ...]) -> dict[tuple, dict]:
    """What a target upserting on ``keys`` holds after loading the runs in order."""
    table: dict[tuple[t.Any, ...], dict[str, t.Any]] = {}
    for run in runs:
        for record in run:
            table[tuple(record[k] for k in keys)] = record
    return table


def epoch_ms_to_iso(value: int | None) -> str | None:
    """The tap's rendering of an epoch-milliseconds date."""
    if value is None:
        return None
    moment = datetime.fromtimestamp(value / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
