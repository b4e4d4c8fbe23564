"""The dbt marts and the report, end to end: `meltano run qualys-to-sqlite` (tap, target, dbt,
report) against the simulator, each mart's numbers recomputed here in Python, the same marts on
PostgreSQL (`meltano run qualys-to-postgres`), and the report opened in headless Chromium.

The Python recomputation reads the raw tables only after checking them against the simulator's
ground truth (tests/e2e/loaded.py), so every expected number derives from the simulator's data;
the ground truth endpoint does not carry every field a mart uses (severity, tags, CVEs, software),
the raw rows do.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from qualys_simulator.testing import SimulatorProcess
from tests.e2e.conftest import (
    REPO,
    RUN_TIMEOUT_SECONDS,
    MeltanoSession,
    PostgresServer,
    unavailable,
)
from tests.e2e.loaded import STREAMS, assert_matches_ground_truth, sqlite_rows

pytestmark = pytest.mark.e2e

SIM_OPTIONS = {
    "hosts": 60,
    "seed": 7,
    "detections_per_host": 6,
    "kb_size": 300,
    "kb_extra": 50,
    "policies": 4,
}
SLA_DAYS = {5: 15, 4: 30, 3: 90, 2: 180, 1: 365}  # dbt_project.yml's defaults
OPEN_STATUSES = {"New", "Active", "Re-Opened"}
VULN_TYPES = {"Confirmed", "Potential"}
MARTS = [
    "open_detections",
    "detection_sla",
    "sla_breaches",
    "remediation_time",
    "reopen_rate",
    "host_risk",
    "compliance_by_policy",
    "compliance_by_control",
    "software_inventory",
]
ARTIFACTS = REPO / "output" / "test-artifacts"


@dataclass
class Built:
    """One `meltano run <job>`: its environment, its log and where it wrote."""

    env: dict[str, str]
    workdir: Path
    log: str
    report: Path
    database: Path | None = None


def run_meltano(session: MeltanoSession, env: dict[str, str], workdir: Path, *args: str) -> str:
    log = workdir / f"meltano-{'-'.join(args)}.log"
    with log.open("w") as out:
        result = subprocess.run(
            [str(session.executable), *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
        )
    text = log.read_text(errors="replace")
    if result.returncode != 0:
        tail = "\n".join(text.splitlines()[-60:])
        pytest.fail(f"meltano {' '.join(args)} exited {result.returncode}:\n{tail}")
    return text


@pytest.fixture(scope="module")
def marts_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(**SIM_OPTIONS) as simulator:
        yield simulator


def job_env(session: MeltanoSession, sim: SimulatorProcess, workdir: Path) -> dict[str, str]:
    env = session.base_env()
    env.update(
        MELTANO_DATABASE_URI=f"sqlite:///{workdir / 'meltano.db'}",
        TAP_QUALYS_USERNAME=sim.username,
        TAP_QUALYS_PASSWORD=sim.password,
        TAP_QUALYS_API_SERVER=sim.url,
        TAP_QUALYS_GATEWAY_URL=sim.url,
        TAP_QUALYS_TRUNCATION_LIMIT="25",
        TAP_QUALYS_HOST_BATCH_SIZE="20",
        QUALYS_REPORT_SQLITE_OUTPUT=str(workdir / "report.html"),
        QUALYS_REPORT_POSTGRES_OUTPUT=str(workdir / "report.html"),
    )
    for plugin in ("DBT_SQLITE", "DBT_POSTGRES"):
        env[f"{plugin}_TARGET_PATH"] = str(workdir / plugin.lower() / "target")
        env[f"{plugin}_LOG_PATH"] = str(workdir / plugin.lower() / "logs")
    return env


@pytest.fixture(scope="module")
def sqlite_built(
    meltano_session: MeltanoSession,
    marts_sim: SimulatorProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Built:
    """The README's SQLite job: tap-qualys target-sqlite dbt-sqlite:build qualys-report:sqlite."""
    workdir = tmp_path_factory.mktemp("marts-sqlite")
    database = workdir / "qualys.db"
    env = job_env(meltano_session, marts_sim, workdir)
    env.update(
        TARGET_SQLITE_DATABASE=str(database),
        DBT_SQLITE_DATABASE=str(database),
        QUALYS_REPORT_SQLITE_DATABASE=str(database),
    )
    meltano_session.install("tap-qualys", "target-sqlite", "dbt-sqlite", "qualys-report")
    log = run_meltano(meltano_session, env, workdir, "run", "qualys-to-sqlite")
    return Built(env, workdir, log, workdir / "report.html", database)


# --- the marts, read back -----------------------------------------------------------------------


def plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value


def sqlite_mart(database: Path, mart: str) -> list[dict[str, Any]]:
    rows = sqlite_rows(database, mart)
    assert rows, f"mart {mart} is empty: the test proves nothing"
    return [{key: plain(value) for key, value in row.items()} for row in rows]


# --- the expected numbers, from the raw tables ------------------------------------------------


def ts(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value


class Expected:
    """Each mart recomputed from the loaded raw rows (checked against the ground truth first)."""

    def __init__(self, raw: dict[str, list[dict[str, Any]]]) -> None:
        self.hosts = {row["id"]: row for row in raw["hosts"]}
        self.kb = {row["qid"]: row for row in raw["knowledge_base"]}
        self.detections = [d for d in raw["host_detections"] if d["host_id"] in self.hosts]
        self.postures = raw["pcrs_posture_info"]
        self.assets = raw["csam_assets"]
        self.tags = {
            host_id: sorted({tag["name"] for tag in decoded(host["tags"]) or []})
            for host_id, host in self.hosts.items()
        }
        self.as_of = max(ts(d["last_found_datetime"]) for d in self.detections)

    def severity(self, detection: dict[str, Any]) -> int:
        if detection["severity"] is not None:
            return int(detection["severity"])
        return int(self.kb[detection["qid"]]["severity_level"])

    def open_detections(self) -> dict[int, dict[str, Any]]:
        return {
            d["unique_vuln_id"]: d
            for d in self.detections
            if d["status"] in OPEN_STATUSES
            and d["type"] in VULN_TYPES
            and not d["is_ignored"]
            and not d["is_disabled"]
        }

    def sla(self) -> dict[int, tuple[int, int, str]]:
        """unique_vuln_id -> (age_days, sla_days, sla_status)."""
        result = {}
        for vuln_id, d in self.open_detections().items():
            age = int((self.as_of - ts(d["first_found_datetime"])).total_seconds() // 86400)
            sla = SLA_DAYS[self.severity(d)]
            status = (
                "breached" if age > sla else "due_soon" if sla - age <= sla * 0.25 else "within"
            )
            result[vuln_id] = (age, sla, status)
        return result


@pytest.fixture(scope="module")
def expected(sqlite_built: Built, marts_sim: SimulatorProcess) -> Expected:
    assert sqlite_built.database is not None
    raw = {stream: sqlite_rows(sqlite_built.database, stream) for stream in STREAMS}
    assert_matches_ground_truth(marts_sim, raw)
    return Expected(raw)


# --- one test per mart ----------------------------------------------------------------------------


def test_open_detections(sqlite_built: Built, expected: Expected) -> None:
    assert sqlite_built.database is not None
    mart = {
        row["unique_vuln_id"]: row for row in sqlite_mart(sqlite_built.database, "open_detections")
    }
    truth = expected.open_detections()
    assert set(mart) == set(truth)
    cves = defaultdict(set)
    for qid, entry in expected.kb.items():
        cves[qid] = {cve["id"] for cve in decoded(entry["cve_list"]) or []}
    for vuln_id, d in truth.items():
        row = mart[vuln_id]
        host = expected.hosts[d["host_id"]]
        assert row["severity"] == expected.severity(d), vuln_id
        assert row["title"] == expected.kb[d["qid"]]["title"], vuln_id
        assert set((row["cve_ids"] or "").split(",")) - {""} == cves[d["qid"]], vuln_id
        assert row["ip"] == host["ip"], vuln_id
        assert set((row["host_tags"] or "").split(",")) - {""} == set(expected.tags[d["host_id"]])
    # The simulator's real QIDs (Log4Shell) are open somewhere, CVE and all.
    assert any("CVE-2021-44228" in (row["cve_ids"] or "") for row in mart.values())


def test_detection_sla(sqlite_built: Built, expected: Expected) -> None:
    assert sqlite_built.database is not None
    mart = sqlite_mart(sqlite_built.database, "detection_sla")
    got = {
        row["unique_vuln_id"]: (row["age_days"], row["sla_days"], row["sla_status"]) for row in mart
    }
    want = expected.sla()
    assert got == want
    statuses = Counter(status for _, _, status in want.values())
    assert len(statuses) >= 2, f"every open detection is {statuses}: the test proves little"


def test_sla_breaches(sqlite_built: Built, expected: Expected) -> None:
    assert sqlite_built.database is not None
    want: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    opened = expected.open_detections()
    for vuln_id, (_, _, status) in expected.sla().items():
        d = opened[vuln_id]
        for tag in expected.tags[d["host_id"]] or ["(no tag)"]:
            counts = want[(tag, expected.severity(d))]
            counts[0] += 1
            counts[1] += status == "breached"
            counts[2] += status == "due_soon"
    mart = sqlite_mart(sqlite_built.database, "sla_breaches")
    got = {
        (row["tag_name"], row["severity"]): [
            row["open_detections"],
            row["breached"],
            row["due_soon"],
        ]
        for row in mart
    }
    assert got == dict(want)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def test_remediation_time(sqlite_built: Built, expected: Expected) -> None:
    assert sqlite_built.database is not None
    days: dict[tuple[int, str], list[float]] = defaultdict(list)
    for d in expected.detections:
        fixed, found = ts(d["last_fixed_datetime"]), ts(d["first_found_datetime"])
        if d["status"] == "Fixed" and d["type"] in VULN_TYPES and fixed and found:
            days[(expected.severity(d), fixed.strftime("%Y-%m"))].append(
                (fixed - found).total_seconds() / 86400
            )
    mart = sqlite_mart(sqlite_built.database, "remediation_time")
    assert {(row["severity"], row["fixed_month"]) for row in mart} == set(days)
    for row in mart:
        values = days[(row["severity"], row["fixed_month"])]
        assert row["fixed_count"] == len(values)
        assert row["mean_days"] == pytest.approx(sum(values) / len(values), abs=0.051)
        assert row["median_days"] == pytest.approx(median(values), abs=0.051)
        assert row["max_days"] == pytest.approx(max(values), abs=0.051)


def test_reopen_rate(sqlite_built: Built, expected: Expected) -> None:
    assert sqlite_built.database is not None
    want: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for d in expected.detections:
        if d["type"] in VULN_TYPES:
            want[expected.severity(d)][0] += 1
            want[expected.severity(d)][1] += (d["times_reopened"] or 0) > 0
    mart = sqlite_mart(sqlite_built.database, "reopen_rate")
    assert {row["severity"]: [row["detections"], row["reopened"]] for row in mart} == dict(want)
    assert sum(reopened for _, reopened in want.values()) > 0
    for row in mart:
        assert row["reopen_rate"] == pytest.approx(row["reopened"] / row["detections"], abs=1e-4)


def test_host_risk(sqlite_built: Built, expected: Expected) -> None:
    assert sqlite_built.database is not None
    opened = expected.open_detections()
    sla = expected.sla()
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    for vuln_id, d in opened.items():
        counter = counts[d["host_id"]]
        counter["open"] += 1
        counter[f"sev{expected.severity(d)}"] += 1
        counter["breached"] += sla[vuln_id][2] == "breached"
    ranking = sorted(
        expected.hosts,
        key=lambda host_id: (
            -(
                expected.hosts[host_id]["trurisk_score"]
                if expected.hosts[host_id]["trurisk_score"] is not None
                else -1
            ),
            -counts[host_id]["sev5"],
            -counts[host_id]["sev4"],
            host_id,
        ),
    )
    mart = sorted(sqlite_mart(sqlite_built.database, "host_risk"), key=lambda row: row["risk_rank"])
    assert [row["host_id"] for row in mart] == ranking
    for row in mart:
        counter = counts[row["host_id"]]
        assert (
            row["open_detections"],
            row["open_severity_5"],
            row["open_severity_4"],
            row["breached"],
        ) == (
            counter["open"],
            counter["sev5"],
            counter["sev4"],
            counter["breached"],
        )


def posture_counts(postures: list[dict[str, Any]], key: Any) -> dict[Any, list[int]]:
    counts: dict[Any, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for posture in postures:
        row = counts[key(posture)]
        row[0] += 1
        row[1] += posture["status"] == "Passed"
        row[2] += posture["status"] == "Failed"
        row[3] += posture["status"] == "Error"
    return dict(counts)


def test_compliance_by_policy(sqlite_built: Built, expected: Expected) -> None:
    assert sqlite_built.database is not None
    want = posture_counts(expected.postures, lambda p: p["policy_id"])
    mart = sqlite_mart(sqlite_built.database, "compliance_by_policy")
    got = {
        row["policy_id"]: [row["postures"], row["passed"], row["failed"], row["errors"]]
        for row in mart
    }
    assert got == want
    for row in mart:
        assert row["pass_rate"] == pytest.approx(row["passed"] / row["postures"], abs=1e-4)
    assert len({row["pass_rate"] for row in mart}) > 1


def test_compliance_by_control(sqlite_built: Built, expected: Expected) -> None:
    assert sqlite_built.database is not None
    want = posture_counts(expected.postures, lambda p: (p["policy_id"], p["control_id"]))
    mart = sqlite_mart(sqlite_built.database, "compliance_by_control")
    got = {
        (row["policy_id"], row["control_id"]): [
            row["postures"],
            row["passed"],
            row["failed"],
            row["errors"],
        ]
        for row in mart
    }
    assert got == want


def test_software_inventory(sqlite_built: Built, expected: Expected) -> None:
    assert sqlite_built.database is not None
    installs: Counter[tuple[str, str, str]] = Counter()
    assets: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for asset in expected.assets:
        for software in (decoded(asset["software_list_data"]) or {}).get("software") or []:
            key = (
                software.get("publisher") or "",
                software.get("product") or "",
                software.get("version") or "",
            )
            installs[key] += 1
            assets[key].add(asset["asset_id"])
    mart = sqlite_mart(sqlite_built.database, "software_inventory")
    got = {
        (row["publisher"], row["product"], row["version"]): (row["installations"], row["assets"])
        for row in mart
    }
    assert got == {key: (count, len(assets[key])) for key, count in installs.items()}


def test_dbt_ran_its_tests(sqlite_built: Built) -> None:
    """The build step ran the schema.yml tests, every one passed (the log says so)."""
    done = re.findall(r"Done\. PASS=(\d+) WARN=(\d+) ERROR=(\d+) SKIP=(\d+)", sqlite_built.log)
    assert done, "no dbt summary in the log"
    passed, warned, errors, skipped = map(int, done[-1])
    assert (warned, errors, skipped) == (0, 0, 0)
    assert passed >= 60
    assert "qualys-report: wrote" in sqlite_built.log


# --- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_built(
    meltano_session: MeltanoSession,
    marts_sim: SimulatorProcess,
    postgres_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Built, str]]:
    """The README's Postgres job on a fresh database of the real server."""
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.connect()
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    workdir = tmp_path_factory.mktemp("marts-postgres")
    env = job_env(meltano_session, marts_sim, workdir)
    env.update(
        TARGET_POSTGRES_HOST=postgres_server.host,
        TARGET_POSTGRES_PORT=str(postgres_server.port),
        TARGET_POSTGRES_USER=postgres_server.user,
        TARGET_POSTGRES_PASSWORD=postgres_server.password,
        TARGET_POSTGRES_DATABASE=name,
        DBT_POSTGRES_HOST=postgres_server.host,
        DBT_POSTGRES_PORT=str(postgres_server.port),
        DBT_POSTGRES_USER=postgres_server.user,
        DBT_POSTGRES_PASSWORD=postgres_server.password,
        DBT_POSTGRES_DBNAME=name,
        QUALYS_REPORT_POSTGRES_DSN=(
            f"host={postgres_server.host} port={postgres_server.port} "
            f"user={postgres_server.user} password={postgres_server.password} dbname={name}"
        ),
    )
    try:
        meltano_session.install(
            "tap-qualys--postgres", "target-postgres", "dbt-postgres", "qualys-report"
        )
        log = run_meltano(meltano_session, env, workdir, "run", "qualys-to-postgres")
        yield Built(env, workdir, log, workdir / "report.html"), name
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def comparable(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Rows as sorted tuples; floats to 3 places (SQLite real vs Postgres numeric)."""

    def norm(value: Any) -> Any:
        value = plain(value)
        if isinstance(value, float):
            return round(value, 3)
        return value

    return sorted(
        (tuple((key, norm(value)) for key, value in sorted(row.items())) for row in rows),
        key=repr,
    )


def test_postgres_marts_equal_sqlite_marts(
    sqlite_built: Built, postgres_built: tuple[Built, str], postgres_server: PostgresServer
) -> None:
    built, database = postgres_built
    assert sqlite_built.database is not None
    assert "qualys-report: wrote" in built.log
    connection = postgres_server.connect(database)
    try:
        from psycopg2.extras import RealDictCursor  # noqa: PLC0415

        for mart in MARTS:
            with connection.cursor(cursor_factory=RealDictCursor) as cursor:
                cursor.execute(f"SELECT * FROM analytics.{mart}")
                postgres = [dict(row) for row in cursor.fetchall()]
            sqlite = sqlite_mart(sqlite_built.database, mart)
            assert len(postgres) == len(sqlite), mart
            assert comparable(postgres) == comparable(sqlite), mart
    finally:
        connection.close()


# --- the report in a real browser -------------------------------------------------------------


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    browser = find_chromium()
    if browser is None:
        unavailable("Chromium is not installed: apt-get install chromium")
    assert browser is not None
    flags = ["--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]
    if os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    return subprocess.run(
        [browser, *flags, *args], capture_output=True, text=True, timeout=120, check=False
    )


class MarkParser(HTMLParser):
    """The chart marks' data-chart/data-key/data-value attributes, and the KPI tiles."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: dict[str, dict[str, str]] = defaultdict(dict)
        self.svgs = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "svg":
            self.svgs += 1
        if values.get("data-chart"):
            self.marks[str(values["data-chart"])][str(values["data-key"])] = str(
                values["data-value"]
            )


def png_colours(path: Path) -> Counter[tuple[int, int, int]]:
    """Pixel colours of an 8-bit RGB(A) PNG (what Chromium writes), sampled every 4th pixel."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, header = 8, b"", b""
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        chunk = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        position += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    assert depth == 8, depth
    assert colour_type in (2, 6), colour_type
    channels = 3 if colour_type == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    previous = bytearray(stride)
    colours: Counter[tuple[int, int, int]] = Counter()
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + predictor) & 0xFF
        if row % 4 == 0:
            for x in range(0, width, 4):
                colours[tuple(line[x * channels : x * channels + 3])] += 1  # type: ignore[arg-type]
        previous = line
    return colours


def test_report_renders_the_marts_in_chromium(sqlite_built: Built) -> None:
    assert sqlite_built.database is not None
    report = sqlite_built.report
    size = report.stat().st_size
    assert size < 1_000_000, f"report is {size} bytes"
    html = report.read_text()
    # Self-contained: nothing to fetch, nothing to run.
    for needle in ("<script", "http://", "https://"):
        assert needle not in html, needle

    url = report.resolve().as_uri()
    # --dump-dom prints the DOM after the page has loaded: what the browser built, not the file.
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = MarkParser()
    parser.feed(dom.stdout)
    assert parser.svgs >= 4, "the charts did not render"

    connection = sqlite3.connect(sqlite_built.database)
    try:
        by_severity = dict(
            connection.execute("SELECT severity, count(*) FROM open_detections GROUP BY 1")
        )
        breached = dict(
            connection.execute(
                "SELECT severity, count(*) FROM detection_sla "
                "WHERE sla_status = 'breached' GROUP BY 1"
            )
        )
        medians = {
            f"{month}/{severity}": value
            for severity, month, value in connection.execute(
                "SELECT severity, fixed_month, median_days FROM remediation_time"
            )
        }
        pass_rates = dict(
            connection.execute("SELECT policy_id, pass_rate FROM compliance_by_policy")
        )
        top_hosts = [
            name
            for (name,) in connection.execute(
                "SELECT host_name FROM host_risk ORDER BY risk_rank LIMIT 12"
            )
        ]
    finally:
        connection.close()
    marks = parser.marks
    assert {int(k): int(v) for k, v in marks["open-by-severity"].items() if int(v)} == by_severity
    assert {int(k): int(v) for k, v in marks["sla-breached"].items()} == breached
    assert {k: float(v) for k, v in marks["remediation"].items()} == pytest.approx(medians)
    assert {int(k): float(v) for k, v in marks["compliance-rate"].items()} == pytest.approx(
        pass_rates
    )
    assert list(marks["riskiest-hosts"]) == top_hosts

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    shot = chromium("--window-size=1600,2400", f"--screenshot={screenshot}", url)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.is_file()
    shutil.copy(report, ARTIFACTS / "report.html")
    colours = png_colours(screenshot)
    # The severity-5 red, the severity-4 orange and the compliance green are on screen.
    for colour in [(0xE5, 0x48, 0x4D), (0xF7, 0x6B, 0x15), (0x30, 0xA4, 0x6C)]:
        assert colours[colour] > 200, f"colour {colour} barely on the screenshot"


def test_deleted_rows_are_left_out(
    meltano_session: MeltanoSession, sqlite_built: Built, tmp_path: Path
) -> None:
    """The delete contract: soft-deleted rows (`_sdc_deleted_at` set) and the detections of a
    host that is gone stay out of every model, on a copy of the loaded database."""
    assert sqlite_built.database is not None
    copy = tmp_path / "deleted.db"
    shutil.copy(sqlite_built.database, copy)
    connection = sqlite3.connect(copy)
    try:
        gone_host, purged_host = (
            row[0]
            for row in connection.execute(
                "SELECT host_id FROM open_detections "
                "GROUP BY host_id ORDER BY count(*) DESC, host_id LIMIT 2"
            )
        )
        gone_detection = connection.execute(
            "SELECT unique_vuln_id FROM open_detections WHERE host_id NOT IN (?, ?) LIMIT 1",
            (gone_host, purged_host),
        ).fetchone()[0]
        left_policy, left_host = connection.execute(
            "SELECT policy_id, host_id FROM pcrs_posture_info "
            "WHERE host_id NOT IN (?, ?) LIMIT 1",
            (gone_host, purged_host),
        ).fetchone()
        for table in ("hosts", "host_detections", "pcrs_policy_host_ids"):
            columns = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
            if "_sdc_deleted_at" not in columns:
                connection.execute(f"ALTER TABLE {table} ADD COLUMN _sdc_deleted_at TEXT")
        # A soft delete (the bundled target), a host removed with its detections left behind
        # (a hard delete without the cascade), and one soft-deleted detection.
        connection.execute(
            "UPDATE hosts SET _sdc_deleted_at = '2026-11-01T00:00:00Z' WHERE id = ?", (gone_host,)
        )
        connection.execute("DELETE FROM hosts WHERE id = ?", (purged_host,))
        connection.execute(
            "UPDATE host_detections SET _sdc_deleted_at = '2026-11-01T00:00:00Z' "
            "WHERE unique_vuln_id = ?",
            (gone_detection,),
        )
        # A host that left a policy: its membership is marked, its postures are not.
        connection.execute(
            "UPDATE pcrs_policy_host_ids SET _sdc_deleted_at = '2026-11-01T00:00:00Z' "
            "WHERE policy_id = ? AND host_id = ?",
            (left_policy, left_host),
        )
        connection.commit()
    finally:
        connection.close()
    env = {**sqlite_built.env, "DBT_SQLITE_DATABASE": str(copy)}
    run_meltano(meltano_session, env, tmp_path, "invoke", "dbt-sqlite", "build")
    connection = sqlite3.connect(copy)
    try:
        for model in ("stg_hosts", "host_risk"):
            found = connection.execute(
                f"SELECT count(*) FROM {model} WHERE host_id IN (?, ?)", (gone_host, purged_host)
            ).fetchone()[0]
            assert found == 0, model
        for model in ("stg_host_detections", "open_detections", "detection_sla"):
            found = connection.execute(
                f"SELECT count(*) FROM {model} WHERE host_id IN (?, ?) OR unique_vuln_id = ?",
                (gone_host, purged_host, gone_detection),
            ).fetchone()[0]
            assert found == 0, model
        left_postures = connection.execute(
            "SELECT count(*) FROM stg_pcrs_postures WHERE policy_id = ? AND host_id = ?",
            (left_policy, left_host),
        ).fetchone()[0]
        assert left_postures == 0
        other_postures = connection.execute(
            "SELECT count(*) FROM stg_pcrs_postures WHERE host_id = ?", (left_host,)
        ).fetchone()[0]
        raw_other = connection.execute(
            "SELECT count(*) FROM pcrs_posture_info WHERE host_id = ? AND policy_id <> ?",
            (left_host, left_policy),
        ).fetchone()[0]
        assert other_postures == raw_other  # the host's other policies keep their postures
        still_open = connection.execute("SELECT count(*) FROM open_detections").fetchone()[0]
    finally:
        connection.close()
    assert still_open > 0
