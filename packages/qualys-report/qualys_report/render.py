"""The report as one HTML page: inline CSS and server-side SVG charts, no script, no CDN.

Every chart mark carries ``data-chart``/``data-key``/``data-value`` attributes with the number it
draws, so a test (or a curious reader) can check the picture against the marts.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone
from html import escape
from typing import Any

from qualys_report.data import Marts, Row

SEVERITY_NAMES = {5: "Urgent", 4: "Critical", 3: "Serious", 2: "Medium", 1: "Minimal"}
SEVERITY_COLOURS = {5: "#e5484d", 4: "#f76b15", 3: "#ffc53d", 2: "#3e63dd", 1: "#8b8d98"}
SLA_STATUSES = [
    ("breached", "Past SLA", "#e5484d"),
    ("due_soon", "Due soon", "#ffc53d"),
    ("within", "Within SLA", "#30a46c"),
]
COMPLIANCE = [
    ("passed", "Passed", "#30a46c"),
    ("failed", "Failed", "#e5484d"),
    ("errors", "Error", "#8b8d98"),
]
TEXT = "#edeef0"
MUTED = "#9ba1ad"
GRID = "#2e3340"
DASH = "\u2013"  # an en dash, for "no value"

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#0e1116;color:#edeef0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1560px;margin:0 auto;padding:28px 32px 40px}
header{display:flex;justify-content:space-between;align-items:flex-end;gap:24px;
border-bottom:1px solid #262b36;padding-bottom:16px;margin-bottom:22px}
h1{margin:0;font-size:30px;letter-spacing:-.01em}
h1 span{color:#e5484d}
.sub{color:#9ba1ad;margin-top:4px}
.stamp{color:#9ba1ad;text-align:right;font-size:13px}
.kpis{display:grid;grid-template-columns:repeat(6,1fr);gap:14px;margin-bottom:18px}
.kpi{background:#161a22;border:1px solid #262b36;border-radius:12px;padding:14px 16px;
border-top:4px solid var(--accent)}
.kpi .label{color:#9ba1ad;font-size:12px;text-transform:uppercase;letter-spacing:.06em}
.kpi .value{font-size:36px;font-weight:700;line-height:1.15;margin-top:4px}
.kpi .note{color:#9ba1ad;font-size:13px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:18px}
.card{background:#161a22;border:1px solid #262b36;border-radius:12px;padding:16px 18px}
.card.wide{grid-column:1/-1}
h2{font-size:16px;margin:0 0 2px}
.card .hint{color:#9ba1ad;font-size:12.5px;margin-bottom:10px}
svg{display:block;width:100%;height:auto}
svg text{font-family:inherit}
table{width:100%;border-collapse:collapse;font-size:13.5px}
th{color:#9ba1ad;font-weight:600;text-align:left;font-size:11.5px;text-transform:uppercase;
letter-spacing:.05em;border-bottom:1px solid #2e3340;padding:6px 8px}
td{border-bottom:1px solid #20242e;padding:6px 8px;vertical-align:middle}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.pill{display:inline-block;min-width:28px;text-align:center;border-radius:999px;padding:1px 8px;
font-weight:700;font-size:12.5px;color:#0e1116}
.zero{color:#4b5160}
.tags{color:#9ba1ad;font-size:12px}
.bar{height:8px;border-radius:4px;background:#e5484d;display:inline-block;vertical-align:middle}
.legend{display:flex;gap:16px;flex-wrap:wrap;color:#9ba1ad;font-size:12.5px;margin:2px 0 6px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
.empty{color:#9ba1ad;padding:24px 0;text-align:center}
footer{color:#6b7280;font-size:12px;margin-top:18px}
"""


def _num(value: Any) -> float:
    return float(value) if value is not None else 0.0


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def _attrs(chart: str, key: Any, value: Any) -> str:
    return f'data-chart="{chart}" data-key="{escape(str(key))}" data-value="{escape(str(value))}"'


def _legend(items: list[tuple[str, str]]) -> str:
    return (
        '<div class="legend">'
        + "".join(
            f'<span><i style="background:{colour}"></i>{escape(label)}</span>'
            for label, colour in items
        )
        + "</div>"
    )


def _empty(message: str) -> str:
    return f'<div class="empty">{escape(message)}</div>'


# --- charts -------------------------------------------------------------------------------------


def severity_bars(sla: list[Row]) -> str:
    """Open detections per severity: one horizontal bar each, in its severity's colour."""
    counts: dict[int, int] = defaultdict(int)
    for row in sla:
        counts[int(row["severity"])] += int(row["detections"])
    if not counts:
        return _empty("No open vulnerabilities.")
    top = max(counts.values())
    width, label_w, row_h = 640, 130, 40
    bars = []
    for index, severity in enumerate(sorted(SEVERITY_NAMES, reverse=True)):
        count = counts.get(severity, 0)
        y = index * row_h
        length = (width - label_w - 70) * count / top if top else 0
        bars.append(
            f'<text x="0" y="{y + 25}" fill="{TEXT}" font-size="15">'
            f'<tspan font-weight="700">{severity}</tspan> {SEVERITY_NAMES[severity]}</text>'
            f'<rect x="{label_w}" y="{y + 8}" width="{max(length, 2):.1f}" height="24" rx="4" '
            f'fill="{SEVERITY_COLOURS[severity]}" {_attrs("open-by-severity", severity, count)}/>'
            f'<text x="{label_w + max(length, 2) + 8:.1f}" y="{y + 26}" fill="{TEXT}" '
            f'font-size="16" font-weight="700">{count:,}</text>'
        )
    return (
        f'<svg viewBox="0 0 {width} {row_h * 5}" role="img" '
        f'aria-label="Open detections by severity">{"".join(bars)}</svg>'
    )


def sla_bars(sla: list[Row]) -> str:
    """Per severity, a 100% bar of open detections: past SLA, due soon, within SLA."""
    by_severity: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    sla_days: dict[int, int] = {}
    for row in sla:
        severity = int(row["severity"])
        by_severity[severity][str(row["sla_status"])] += int(row["detections"])
        sla_days[severity] = int(row["sla_days"])
    if not by_severity:
        return _empty("No open vulnerabilities.")
    width, label_w, row_h, right = 640, 150, 40, 64
    span = width - label_w - right
    rows = []
    for index, severity in enumerate(sorted(by_severity, reverse=True)):
        statuses = by_severity[severity]
        total = sum(statuses.values())
        y = index * row_h
        x = float(label_w)
        rows.append(
            f'<text x="0" y="{y + 20}" fill="{TEXT}" font-size="15">'
            f'<tspan font-weight="700" fill="{SEVERITY_COLOURS[severity]}">{severity}</tspan> '
            f"{SEVERITY_NAMES[severity]}</text>"
            f'<text x="0" y="{y + 35}" fill="{MUTED}" font-size="11.5">'
            f"SLA {sla_days[severity]} days</text>"
        )
        for status, _, colour in SLA_STATUSES:
            count = statuses.get(status, 0)
            if not count:
                continue
            length = span * count / total
            rows.append(
                f'<rect x="{x:.1f}" y="{y + 8}" width="{length:.1f}" height="24" fill="{colour}" '
                f"{_attrs('sla-' + status, severity, count)}/>"
            )
            if length > 34:
                rows.append(
                    f'<text x="{x + length / 2:.1f}" y="{y + 25}" text-anchor="middle" '
                    f'fill="#0e1116" font-size="13" font-weight="700">{count:,}</text>'
                )
            x += length
        breached = statuses.get("breached", 0)
        rows.append(
            f'<text x="{width - right + 10}" y="{y + 25}" fill="{TEXT}" font-size="14" '
            f'font-weight="700">{_pct(breached / total)}</text>'
        )
    legend = _legend(
        [(label, colour) for _, label, colour in SLA_STATUSES]
        + [("% = share past SLA", "transparent")]
    )
    height = row_h * len(by_severity)
    return (
        legend + f'<svg viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Open detections against their SLA">{"".join(rows)}</svg>'
    )


def remediation_chart(rows: list[Row]) -> str:
    """Median days to remediate per month of the fix (last 12 months), one bar per severity."""
    if not rows:
        return _empty("No fixed vulnerabilities yet.")
    months = sorted({str(row["fixed_month"]) for row in rows})[-12:]
    severities = sorted({int(row["severity"]) for row in rows}, reverse=True)
    values = {(str(row["fixed_month"]), int(row["severity"])): row for row in rows}
    top = max(_num(row["median_days"]) for row in rows if str(row["fixed_month"]) in months)
    top = max(top, 1.0)
    # A round axis maximum: 10, 20, 50, 100, 200, 500, ...
    step = 1.0
    while step * 5 < top:
        step *= 2 if str(int(step))[0] in "15" else 2.5
    axis_max = step * 5 if step * 5 >= top else top
    width, height, left, bottom, top_pad = 640, 250, 44, 34, 12
    plot_w, plot_h = width - left - 8, height - bottom - top_pad
    group_w = plot_w / len(months)
    bar_w = min(44.0, group_w * 0.8 / len(severities))
    parts = []
    for tick in range(6):
        value = axis_max * tick / 5
        y = top_pad + plot_h - plot_h * value / axis_max
        parts.append(
            f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}" '
            f'font-size="11">{_fmt(value)}</text>'
        )
    for m_index, month in enumerate(months):
        centre = left + group_w * (m_index + 0.5)
        start = centre - bar_w * len(severities) / 2
        for s_index, severity in enumerate(severities):
            row = values.get((month, severity))
            if row is None:
                continue
            median = _num(row["median_days"])
            bar_h = plot_h * median / axis_max
            x = start + s_index * bar_w
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{top_pad + plot_h - bar_h:.1f}" width="{bar_w - 2:.1f}" '
                f'height="{bar_h:.1f}" rx="2" fill="{SEVERITY_COLOURS[severity]}" '
                f"{_attrs('remediation', f'{month}/{severity}', row['median_days'])}>"
                f"<title>{month}, severity {severity}: median {_fmt(median)} days, "
                f"{int(row['fixed_count'])} fixed</title></rect>"
            )
            if len(months) <= 3:
                parts.append(
                    f'<text x="{x + bar_w / 2:.1f}" y="{top_pad + plot_h - bar_h - 5:.1f}" '
                    f'text-anchor="middle" fill="{TEXT}" font-size="12">{median:.0f}</text>'
                )
        parts.append(
            f'<text x="{centre:.1f}" y="{height - 12}" text-anchor="middle" fill="{MUTED}" '
            f'font-size="12">{escape(month)}</text>'
        )
    legend = _legend([(f"{s} {SEVERITY_NAMES[s]}", SEVERITY_COLOURS[s]) for s in severities])
    return (
        legend + f'<svg viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Median days to remediate by month">{"".join(parts)}</svg>'
    )


def compliance_chart(policies: list[Row]) -> str:
    """Per policy, a 100% bar of its postures: passed, failed, error; pass rate at the end."""
    if not policies:
        return _empty("No Policy Compliance results.")
    width, row_h, right = 640, 52, 58
    span = width - right
    parts = []
    for index, policy in enumerate(policies):
        y = index * row_h
        total = max(int(policy["postures"]), 1)
        title = str(policy["policy_title"] or policy["policy_id"])
        if len(title) > 64:  # leaves room for the hosts and controls counts
            title = title[:62] + "…"
        parts.append(
            f'<text x="0" y="{y + 15}" fill="{TEXT}" font-size="13">{escape(title)}</text>'
            f'<text x="{width}" y="{y + 15}" text-anchor="end" fill="{MUTED}" font-size="11.5">'
            f"{int(policy['hosts']):,} hosts · {int(policy['controls'])} controls</text>"
        )
        x = 0.0
        for key, _, colour in COMPLIANCE:
            count = int(policy[key])
            if not count:
                continue
            length = span * count / total
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 22}" width="{length:.1f}" height="18" fill="{colour}" '
                f"{_attrs('compliance-' + key, policy['policy_id'], count)}/>"
            )
            x += length
        rate = _num(policy["pass_rate"])
        parts.append(
            f'<text x="{width}" y="{y + 37}" text-anchor="end" fill="{TEXT}" font-size="15" '
            f'font-weight="700" {_attrs("compliance-rate", policy["policy_id"], rate)}>'
            f"{_pct(rate)}</text>"
        )
    legend = _legend([(label, colour) for _, label, colour in COMPLIANCE])
    return (
        legend + f'<svg viewBox="0 0 {width} {row_h * len(policies)}" role="img" '
        f'aria-label="Compliance by policy">{"".join(parts)}</svg>'
    )


# --- tables -------------------------------------------------------------------------------------


def _count_cell(value: Any, severity: int) -> str:
    count = int(value or 0)
    if not count:
        return '<td class="num zero">0</td>'
    return (
        f'<td class="num"><span class="pill" style="background:{SEVERITY_COLOURS[severity]}">'
        f"{count}</span></td>"
    )


def hosts_table(hosts: list[Row]) -> str:
    if not hosts:
        return _empty("No hosts.")
    top = max((_num(h["trurisk_score"]) for h in hosts), default=0.0) or 1.0
    rows = []
    for host in hosts:
        score = host["trurisk_score"]
        bar = (
            f'<span class="bar" style="width:{60 * _num(score) / top:.0f}px"></span> '
            if score is not None
            else ""
        )
        rows.append(
            f'<tr data-chart="riskiest-hosts" data-key="{escape(str(host["host_name"]))}" '
            f'data-value="{escape(str(score))}">'
            f'<td class="num">{int(host["risk_rank"])}</td>'
            f'<td><b>{escape(str(host["host_name"]))}</b><div class="tags">'
            f"{escape(str(host['ip'] or ''))} · {escape(str(host['os'] or ''))}</div></td>"
            f'<td class="num">{bar}<b>{DASH if score is None else int(score)}</b></td>'
            + _count_cell(host["open_severity_5"], 5)
            + _count_cell(host["open_severity_4"], 4)
            + f'<td class="num">{int(host["open_detections"])}</td>'
            + f'<td class="num">{int(host["breached"])}</td>'
            + f'<td class="tags">{escape(str(host["host_tags"] or "")).replace(",", ", ")}</td>'
            "</tr>"
        )
    return (
        "<table><thead><tr><th class=num>#</th><th>Host</th><th class=num>TruRisk</th>"
        "<th class=num>Sev 5</th><th class=num>Sev 4</th><th class=num>Open</th>"
        "<th class=num>Past SLA</th><th>Tags</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def tags_table(tags: list[Row]) -> str:
    if not tags:
        return _empty("No open vulnerabilities.")
    top = max(int(t["breached"]) for t in tags) or 1
    rows = "".join(
        f'<tr data-chart="breaches-by-tag" data-key="{escape(str(t["tag_name"]))}" '
        f'data-value="{int(t["breached"])}"><td>{escape(str(t["tag_name"]))}</td>'
        f'<td class="num">{int(t["open_detections"]):,}</td>'
        f'<td class="num"><span class="bar" style="width:{90 * int(t["breached"]) / top:.0f}px">'
        f"</span> <b>{int(t['breached']):,}</b></td></tr>"
        for t in tags
    )
    return (
        "<table><thead><tr><th>Tag</th><th class=num>Open</th><th class=num>Past SLA</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def controls_table(controls: list[Row]) -> str:
    if not controls:
        return _empty("No failed controls.")
    rows = "".join(
        f'<tr data-chart="failing-controls" data-key="{int(c["control_id"])}" '
        f'data-value="{int(c["failed"])}"><td class="num">{int(c["control_id"])}</td>'
        f'<td>{escape(str(c["control_statement"] or ""))}<div class="tags">'
        f"{escape(str(c['policy_title'] or ''))}</div></td>"
        f'<td class="tags">{escape(str(c["criticality"] or ""))}</td>'
        f'<td class="num"><b>{int(c["failed"])}</b> / {int(c["postures"])}</td></tr>'
        for c in controls
    )
    return (
        "<table><thead><tr><th class=num>CID</th><th>Control</th><th>Criticality</th>"
        f"<th class=num>Failed hosts</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def software_table(software: list[Row]) -> str:
    if not software:
        return _empty("No CSAM software inventory.")
    rows = "".join(
        f'<tr data-chart="software" data-key="{escape(str(s["product"]))}" '
        f'data-value="{int(s["installations"])}"><td><b>{escape(str(s["product"]))}</b>'
        f'<div class="tags">{escape(str(s["publisher"]))}</div></td>'
        f'<td class="num">{int(s["versions"])}</td>'
        f'<td class="tags">{escape(str(s["lifecycle_stage"] or ""))}</td>'
        f'<td class="num"><b>{int(s["installations"]):,}</b></td></tr>'
        for s in software
    )
    return (
        "<table><thead><tr><th>Product</th><th class=num>Versions</th><th>Lifecycle</th>"
        f"<th class=num>Installs</th></tr></thead><tbody>{rows}</tbody></table>"
    )


# --- page ---------------------------------------------------------------------------------------


def _kpi(label: str, value: str, note: str, accent: str, key: str) -> str:
    return (
        f'<div class="kpi" style="--accent:{accent}" data-kpi="{key}">'
        f'<div class="label">{escape(label)}</div><div class="value">{value}</div>'
        f'<div class="note">{note}</div></div>'
    )


def _as_of(marts: Marts) -> str:
    value = marts["as_of"][0]["as_of"] if marts["as_of"] else None
    if value is None and marts["last_found"]:
        value = marts["last_found"][0]["as_of"]
    if value is None:
        return "no detections"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return str(value)[:16].replace("T", " ") + " UTC"


def kpis(marts: Marts) -> str:
    sla = marts["sla"]
    open_total = sum(int(r["detections"]) for r in sla)
    urgent = sum(int(r["detections"]) for r in sla if int(r["severity"]) >= 4)
    breached = sum(int(r["detections"]) for r in sla if r["sla_status"] == "breached")
    hosts = marts["hosts"][0] if marts["hosts"] else {"hosts": 0, "exposed": 0}
    fixed = sum(int(r["fixed_count"]) for r in marts["remediation"])
    mean_days = (
        sum(_num(r["mean_days"]) * int(r["fixed_count"]) for r in marts["remediation"]) / fixed
        if fixed
        else 0.0
    )
    detections = sum(int(r["detections"]) for r in marts["reopen"])
    reopened = sum(int(r["reopened"]) for r in marts["reopen"])
    postures = sum(int(p["postures"]) for p in marts["policies"])
    passed = sum(int(p["passed"]) for p in marts["policies"])
    return (
        '<section class="kpis">'
        + "".join(
            [
                _kpi(
                    "Open vulnerabilities",
                    f"{open_total:,}",
                    f"{urgent:,} severity 4-5",
                    SEVERITY_COLOURS[4],
                    "open",
                ),
                _kpi(
                    "Past SLA",
                    f"{breached:,}",
                    f"{_pct(breached / open_total) if open_total else '0%'} of open",
                    SEVERITY_COLOURS[5],
                    "breached",
                ),
                _kpi(
                    "Hosts exposed",
                    f"{int(hosts['exposed'] or 0):,}",
                    f"with severity 4-5 open, of {int(hosts['hosts']):,}",
                    "#8e4ec6",
                    "exposed",
                ),
                _kpi(
                    "Mean time to fix",
                    f"{mean_days:.0f}<small> days</small>",
                    f"{fixed:,} fixed",
                    "#3e63dd",
                    "mttr",
                ),
                _kpi(
                    "Reopen rate",
                    _pct(reopened / detections) if detections else DASH,
                    f"{reopened:,} of {detections:,} detections",
                    SEVERITY_COLOURS[3],
                    "reopen",
                ),
                _kpi(
                    "Compliance",
                    _pct(passed / postures) if postures else DASH,
                    f"{passed:,} of {postures:,} postures passed",
                    "#30a46c",
                    "compliance",
                ),
            ]
        )
        + "</section>"
    )


def _card(title: str, hint: str, body: str, wide: bool = False) -> str:
    return (
        f'<section class="card{" wide" if wide else ""}"><h2>{escape(title)}</h2>'
        f'<div class="hint">{hint}</div>{body}</section>'
    )


def render(marts: Marts, source: str, now: datetime | None = None) -> str:
    generated = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    sla_days = {int(r["severity"]): int(r["sla_days"]) for r in marts["sla"]}
    sla_note = ", ".join(f"sev {s}: {d} d" for s, d in sorted(sla_days.items(), reverse=True))
    body = "".join(
        [
            _card(
                "Open vulnerabilities by severity",
                "Confirmed and potential, not ignored (mart open_detections)",
                severity_bars(marts["sla"]),
            ),
            _card(
                "Aging against the SLA",
                f"Days since first found vs. the SLA ({escape(sla_note) or 'dbt vars'}); "
                "mart detection_sla",
                sla_bars(marts["sla"]),
            ),
            _card(
                "Time to remediate",
                "Median days from first found to fixed, by month of the fix "
                "(mart remediation_time)",
                remediation_chart(marts["remediation"]),
            ),
            _card(
                "Compliance by policy",
                "Share of control postures passed (mart compliance_by_policy)",
                compliance_chart(marts["policies"]),
            ),
            _card(
                "Riskiest hosts",
                "Ranked by TruRisk score, then open severity 5 and 4 (mart host_risk)",
                hosts_table(marts["riskiest"]),
                wide=True,
            ),
            _card(
                "SLA breaches by tag",
                "Open vulnerabilities past their SLA, per host tag (mart sla_breaches)",
                tags_table(marts["tags"]),
            ),
            _card(
                "Most failed controls",
                "Controls failing on the most hosts (mart compliance_by_control)",
                controls_table(marts["controls"]),
            ),
            _card(
                "Software inventory",
                "Most installed products (mart software_inventory)",
                software_table(marts["software"]),
            ),
            _card(
                "Reopened vulnerabilities",
                "Share of detections Qualys re-opened after a fix (mart reopen_rate)",
                reopen_table(marts["reopen"]),
            ),
        ]
    )
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>Qualys vulnerability report · {escape(_as_of(marts))}</title>"
        f"<style>{CSS}</style></head><body><main>"
        "<header><div><h1>Vulnerability &amp; compliance report</h1>"
        f'<div class="sub">Qualys VM, Policy Compliance and CSAM · data as of '
        f"<b data-as-of>{escape(_as_of(marts))}</b></div></div>"
        f'<div class="stamp">Generated {generated}<br>from {escape(source)}</div></header>'
        + kpis(marts)
        + f'<div class="grid">{body}</div>'
        "<footer>Built by tap-qualys' dbt models (transform/) and qualys-report. "
        "Severities are Qualys levels: 5 Urgent, 4 Critical, 3 Serious, 2 Medium, 1 Minimal."
        "</footer></main></body></html>\n"
    )


def reopen_table(reopen: list[Row]) -> str:
    if not reopen:
        return _empty("No vulnerability detections.")
    rows = "".join(
        f"<tr {_attrs('reopen', int(r['severity']), int(r['reopened']))}>"
        f'<td><b style="color:{SEVERITY_COLOURS[int(r["severity"])]}">{int(r["severity"])}</b> '
        f'{SEVERITY_NAMES[int(r["severity"])]}</td><td class="num">{int(r["detections"]):,}</td>'
        f'<td class="num">{int(r["reopened"]):,}</td>'
        f'<td class="num"><b>{_pct(int(r["reopened"]) / int(r["detections"]))}</b></td></tr>'
        for r in reopen
        if int(r["detections"])
    )
    return (
        "<table><thead><tr><th>Severity</th><th class=num>Detections</th>"
        "<th class=num>Reopened</th><th class=num>Rate</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
