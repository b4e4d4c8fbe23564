"""Read back what a loader wrote, and compare it with the simulator's ground truth.

The ground truth names fields as the API does (XML element names, JSON keys); every column is
its field's name in snake_case (docs/architecture.md, "Record naming": ``UNIQUE_VULN_ID`` ->
``unique_vuln_id``, ``assetId`` -> ``asset_id``), which SQL loaders keep as it is, so a field is
looked up under exactly that name. Values are compared after normalising what loaders
legitimately change: JSON text for nested values (SQLite), native timestamps (Postgres), booleans
stored as 0/1, numbers as text or as numbers.
"""

from __future__ import annotations

import gzip
import json
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tap_qualys.naming import snake_case

# Streams and the ground truth's key fields (API names).
STREAMS: dict[str, tuple[str, ...]] = {
    "knowledge_base": ("QID",),
    "hosts": ("ID",),
    "host_detections": ("HOST_ID", "UNIQUE_VULN_ID"),
    "csam_assets": ("assetId",),
    "pcrs_policies": ("id",),
    "pcrs_policy_host_ids": ("policyId", "hostId"),
    "pcrs_posture_info": ("id",),
    "tags": ("id",),
}
NUMBER = re.compile(r"-?\d+(\.\d+)?")
ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


# --- readers ------------------------------------------------------------------------------------


def sqlite_rows(database: Path, table: str) -> list[dict[str, Any]]:
    connection = sqlite3.connect(database)
    connection.row_factory = sqlite3.Row
    try:
        exists = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        if not exists:
            return []
        return [dict(row) for row in connection.execute(f'SELECT * FROM "{table}"')]
    finally:
        connection.close()


def postgres_rows(connection: Any, schema: str, table: str) -> list[dict[str, Any]]:
    from psycopg2.extras import RealDictCursor  # noqa: PLC0415

    with connection.cursor(cursor_factory=RealDictCursor) as cursor:
        cursor.execute("SELECT to_regclass(%s) AS found", (f'"{schema}"."{table}"',))
        if cursor.fetchone()["found"] is None:
            return []
        cursor.execute(f'SELECT * FROM "{schema}"."{table}"')
        return [dict(row) for row in cursor.fetchall()]


def jsonl_records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def jsonl_dir_records(directory: Path, stream: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    # target-jsonl names its files <stream>-<timestamp>.jsonl
    for path in sorted(directory.glob(f"{stream}-*.jsonl")):
        records += jsonl_records(path.read_text())
    return records


def s3_records(client: Any, bucket: str, prefix: str, stream: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix}/{stream}/"
    ):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            if item["Key"].endswith(".gz"):
                body = gzip.decompress(body)
            records += jsonl_records(body.decode())
    return records


# --- normalisation ------------------------------------------------------------------------------


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str) and ISO_DATETIME.match(value):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def _as_number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, (int, float, Decimal)):
        return Decimal(str(value))
    if isinstance(value, str) and NUMBER.fullmatch(value.strip()):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def _decoded(value: Any) -> Any:
    """Nested values that a loader stored as JSON text, back as objects."""
    if isinstance(value, str) and value[:1] in {"{", "["}:
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def same(expected: Any, actual: Any) -> bool:
    expected, actual = _decoded(expected), _decoded(actual)
    if expected is None or actual is None:
        return expected is None and actual in (None, "")
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            same(value, actual.get(key)) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(same(e, a) for e, a in zip(expected, actual, strict=True))
        )
    expected_time, actual_time = _as_datetime(expected), _as_datetime(actual)
    if expected_time is not None or actual_time is not None:
        if expected_time is None or actual_time is None:
            # epoch milliseconds (CSAM) on one side, a timestamp on the other
            number = _as_number(expected if expected_time is None else actual)
            other = actual_time if expected_time is None else expected_time
            return (
                number is not None
                and other is not None
                and (Decimal(int(other.timestamp() * 1000)) == number)
            )
        return expected_time == actual_time
    expected_number, actual_number = _as_number(expected), _as_number(actual)
    if expected_number is not None and actual_number is not None:
        return expected_number == actual_number
    return str(expected).strip() == str(actual).strip()


def _key_value(value: Any) -> str:
    number = _as_number(value)
    return format(number.normalize(), "f") if number is not None else str(value)


# --- comparison ---------------------------------------------------------------------------------


def compare_stream(
    stream: str, truth: list[dict[str, Any]], loaded: Iterable[dict[str, Any]]
) -> list[str]:
    """Every key present, no extras, no duplicates, every ground-truth field equal."""
    keys = STREAMS[stream]
    names = [snake_case(key) for key in keys]
    rows = list(loaded)
    loaded_keys = Counter(tuple(_key_value(row.get(name)) for name in names) for row in rows)
    problems = [
        f"{stream}: key {key} loaded {count} times"
        for key, count in loaded_keys.items()
        if count > 1
    ]
    by_key = {tuple(_key_value(row.get(name)) for name in names): row for row in rows}
    truth_by_key = {tuple(_key_value(record[key]) for key in keys): record for record in truth}
    missing = sorted(set(truth_by_key) - set(by_key))
    extra = sorted(set(by_key) - set(truth_by_key))
    if missing:
        problems.append(
            f"{stream}: {len(missing)} of {len(truth)} keys missing, e.g. {missing[:5]}"
        )
    if extra:
        problems.append(f"{stream}: {len(extra)} keys not in the ground truth, e.g. {extra[:5]}")
    mismatches = []
    for key, record in truth_by_key.items():
        row = by_key.get(key)
        if row is None:
            continue
        for api_name, expected in record.items():
            name = snake_case(api_name)
            if not same(expected, row.get(name)):
                mismatches.append(f"{key} {name}: expected {expected!r}, loaded {row.get(name)!r}")
    if mismatches:
        problems.append(
            f"{stream}: {len(mismatches)} field mismatches, e.g. " + "; ".join(mismatches[:5])
        )
    return problems


def live_view(loaded: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """What a consumer reads as current: rows not soft-deleted (``_sdc_deleted_at`` null), and
    postures only of the policy memberships still live. The tap tombstones a host that left a
    policy in ``pcrs_policy_host_ids`` but not its postures (keyed by the posture id), so a
    consumer joins postures to the live memberships; a hard-deleting target needs that too."""
    view = {
        stream: [row for row in rows if not row.get("_sdc_deleted_at")]
        for stream, rows in loaded.items()
    }
    # Without membership rows (the stream not synced) there is nothing to join to.
    if view.get("pcrs_policy_host_ids") and "pcrs_posture_info" in view:
        members = {
            (_key_value(row.get("policy_id")), _key_value(row.get("host_id")))
            for row in view["pcrs_policy_host_ids"]
        }
        view["pcrs_posture_info"] = [
            row
            for row in view["pcrs_posture_info"]
            if (_key_value(row.get("policy_id")), _key_value(row.get("host_id"))) in members
        ]
    return view


def assert_matches_ground_truth(sim: Any, loaded: dict[str, list[dict[str, Any]]]) -> None:
    problems: list[str] = []
    loaded = live_view(loaded)
    for stream in STREAMS:
        truth = sim.ground_truth(stream)
        assert truth, f"the simulator's ground truth for {stream} is empty: the test proves nothing"
        problems += compare_stream(stream, truth, loaded.get(stream, []))
    assert not problems, "loaded data differs from the ground truth:\n" + "\n".join(problems)
