#!/usr/bin/env bash
# The whole pipeline on one machine, from a fresh clone, with nothing but Python 3.10+:
# installs Meltano and the plugins, starts the bundled Qualys simulator, runs
# `meltano run tap-qualys target-sqlite dbt-sqlite:build qualys-report:sqlite` (load, build and test
# the dbt models, write the HTML report), shows what was loaded, and stops the simulator.
# Environment: PYTHON (default python3), DEMO_HOSTS (default 100).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
PYTHON=${PYTHON:-python3}
DEMO_HOSTS=${DEMO_HOSTS:-100}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "demo: Python 3.10 or newer is needed ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
    exit 1
fi

echo "==> Installing Meltano into .venv-meltano"
[ -x .venv-meltano/bin/python ] || "$PYTHON" -m venv .venv-meltano
# uv (from PyPI; Meltano depends on it anyway) installs Meltano's ~100 packages in seconds.
.venv-meltano/bin/python -m pip install --quiet --disable-pip-version-check uv
.venv-meltano/bin/uv pip install --quiet --python .venv-meltano/bin/python -r requirements/meltano.txt
MELTANO=.venv-meltano/bin/meltano

echo "==> meltano install (tap-qualys, target-sqlite and qualys-report from this repository; dbt-sqlite from PyPI)"
"$MELTANO" install tap-qualys target-sqlite dbt-sqlite qualys-report

echo "==> Starting the Qualys simulator ($DEMO_HOSTS hosts)"
workdir=$(mktemp -d)
# The simulator (packages/qualys-simulator) uses only the standard library: no install needed, any
# Python 3.10+ runs it from its folder. Its output files exist before the wait loop reads them (the
# background job may open them later).
: >"$workdir/simulator.out"
PYTHONPATH=packages/qualys-simulator "$PYTHON" -m qualys_simulator --port 0 --hosts "$DEMO_HOSTS" --seed 7 >"$workdir/simulator.out" 2>"$workdir/simulator.err" &
simulator_pid=$!
trap 'kill "$simulator_pid" 2>/dev/null || true; wait "$simulator_pid" 2>/dev/null || true; rm -rf "$workdir"' EXIT
url=""
for _ in $(seq 1 150); do
    url=$(sed -n 's/^qualys-simulator listening on //p' "$workdir/simulator.out")
    [ -n "$url" ] && break
    kill -0 "$simulator_pid" 2>/dev/null || break
    sleep 0.2
done
if [ -z "$url" ]; then
    echo "demo: the simulator did not start:" >&2
    cat "$workdir/simulator.err" >&2
    exit 1
fi
echo "    listening on $url"

# meltano.yml's dev environment has the simulator's credentials; only the port differs.
export TAP_QUALYS_API_SERVER="$url" TAP_QUALYS_GATEWAY_URL="$url"
database=output/qualys.db

mkdir -p output
log=output/demo-meltano-run.log
echo "==> meltano run tap-qualys target-sqlite dbt-sqlite:build qualys-report:sqlite (log: $log)"
if ! "$MELTANO" run tap-qualys target-sqlite dbt-sqlite:build qualys-report:sqlite >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "demo: meltano run failed; the whole log is in $log" >&2
    exit 1
fi
grep -E "tap-qualys +[a-z_]+: done:" "$log" | sed 's/^.*tap-qualys */    /' || true
# What the dbt step added: from the loader's last log line to the report's (Meltano stamps each).
"$PYTHON" - "$log" <<'PY'
import re
import sys
from datetime import datetime

stamps = {}
for line in open(sys.argv[1], errors="replace"):
    found = re.match(r"(\S+Z) \[\w+ *\] (target-sqlite|qualys-report) ", line)
    if found:
        stamps.setdefault(found[2], []).append(datetime.fromisoformat(found[1][:26]))
summary = [line for line in open(sys.argv[1], errors="replace") if "Done. PASS=" in line]
if summary:
    print("    dbt:", summary[-1].split("Done. ", 1)[1].strip())
if "target-sqlite" in stamps and "qualys-report" in stamps:
    seconds = (stamps["qualys-report"][-1] - stamps["target-sqlite"][-1]).total_seconds()
    print(f"    dbt build and report: {seconds:.0f}s of the run")
PY

echo "==> Loaded into $database"
"$PYTHON" - "$database" <<'PY'
import sqlite3
import sys

streams = ["knowledge_base", "hosts", "host_detections", "csam_assets", "pcrs_policies",
           "pcrs_policy_host_ids", "pcrs_posture_info"]
db = sqlite3.connect(sys.argv[1])
empty = []
print(f"    {'table':<22}{'rows':>8}")
for stream in streams:
    found = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (stream,))
    count = db.execute(f'SELECT count(*) FROM "{stream}"').fetchone()[0] if found.fetchone() else 0
    print(f"    {stream:<22}{count:>8}")
    if not count:
        empty.append(stream)

print("\n==> Sample query: hosts with the most open severity 4-5 vulnerabilities")
query = """
SELECT h.id, h.dns, h.os, count(*) AS open_sev45
FROM host_detections d
JOIN hosts h ON h.id = d.host_id
JOIN knowledge_base kb ON kb.qid = d.qid
WHERE d.status <> 'Fixed' AND d.type = 'Confirmed' AND kb.severity_level >= 4
GROUP BY h.id ORDER BY open_sev45 DESC, h.id LIMIT 5
"""
print(query.strip())
for row in db.execute(query):
    print("   ", row)
if empty:
    sys.exit(f"demo: nothing was loaded into {', '.join(empty)}")
PY

report=output/report.html
[ -s "$report" ] || { echo "demo: the report $report was not written" >&2; exit 1; }
echo "==> Report: $PWD/$report (open it in a browser; it needs no server and no network)"

echo "==> Done in $(( $(date +%s) - started ))s. Query it yourself: python3 -m sqlite3 $database (Python 3.12+) or sqlite3 $database"
