"""The dashboard's HTML: one self-contained page (inline CSS and SVG, no scripts, no external assets).

Key figures carry ``data-metric`` attributes so tests (and anyone scraping the page) can find them
without depending on layout. Everything from the database passes through ``html.escape``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any

from migration_engine.dashboard import charts
from migration_engine.dashboard.charts import COLORS, Series, Threshold

STATUS_LABELS = {
    "ok": "OK", "warning": "Warning", "critical": "Critical", "no_data": "No data", "low_volume": "Low volume",
    "passed": "Passed", "failed": "Failed", "waiting": "Waiting", "running": "Running", "unknown": "Unknown",
    "none": "None",
}

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 0; padding: 16px 20px 40px; color: #212121; background: #f5f6f8; }
h1 { font-size: 20px; margin: 0 0 2px; }
h2 { font-size: 16px; margin: 0 0 8px; }
h3 { font-size: 14px; margin: 12px 0 6px; }
.sub { color: #616161; font-size: 12px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: 10px; margin: 14px 0; }
.card { background: #fff; border-radius: 8px; padding: 10px 12px; border-left: 5px solid #9e9e9e;
        box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.card .label { font-size: 12px; color: #616161; }
.card .value { font-size: 24px; font-weight: 600; margin: 2px 0; }
.card .detail { font-size: 12px; color: #424242; }
section { background: #fff; border-radius: 8px; padding: 12px 14px; margin: 12px 0;
          box-shadow: 0 1px 2px rgba(0,0,0,.08); }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eceff1; vertical-align: top; }
th { color: #616161; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px;
         font-weight: 600; white-space: nowrap; }
.note { color: #616161; font-style: italic; }
.error { background: #ffebee; border-left: 5px solid #c62828; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
.figs { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; color: #37474f; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 12px; }
svg.chart { max-width: 900px; display: block; }
svg .grid { stroke: #eceff1; stroke-width: 1; }
svg .tick { fill: #616161; font-size: 11px; }
svg .thr { font-size: 11px; }
svg .empty { fill: #9e9e9e; font-size: 13px; }
svg .big { fill: #212121; font-size: 18px; font-weight: 600; }
a { color: #1565c0; }
"""


# --- formatting -----------------------------------------------------------------------------
def fmt_pct(v: float | None, decimals: int = 2) -> str:
    return "—" if v is None else f"{v:.{decimals}f}%"


def fmt_int(v: int | None) -> str:
    return "—" if v is None else f"{int(v):,}"


def fmt_ms(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f} ms"


def fmt_time(t: datetime | None) -> str:
    if t is None:
        return "—"
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    if s < 90:
        return f"{s} s ago"
    if s < 90 * 60:
        return f"{s // 60} min ago"
    if s < 48 * 3600:
        return f"{s // 3600} h ago"
    return f"{s // 86400} d ago"


def fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str, sort_keys=True)
    return str(v)


def figures_text(figures: dict[str, Any] | None) -> str:
    if not figures:
        return ""
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in figures.items())


def badge(status: str, label: str | None = None) -> str:
    color = COLORS.get(status, COLORS["unknown"])
    text_color = "#212121" if status == "none" else "#fff"
    label = label or STATUS_LABELS.get(status, status.replace("_", " ").capitalize())
    return (f'<span class="badge" style="background:{color};color:{text_color}" data-status="{escape(status)}">'
            f'{escape(label)}</span>')


def _metric(name: str, text: str) -> str:
    return f'<span data-metric="{escape(name)}">{escape(text)}</span>'


def _card(label: str, metric: str, value: str, status: str, detail: str = "") -> str:
    color = COLORS.get(status, COLORS["unknown"])
    return (f'<div class="card" style="border-left-color:{color}"><div class="label">{escape(label)}</div>'
            f'<div class="value">{_metric(metric, value)}</div>'
            f'<div class="detail">{badge(status)} {detail}</div></div>')


def _table(headers: list[str], rows: list[list[str]], *, num_cols: set[int] = frozenset(), table_id: str = "",
           empty: str = "nothing yet") -> str:
    if not rows:
        return f'<p class="note" id="{escape(table_id)}">{escape(empty)}</p>'
    head = "".join(f'<th class="{"num" if i in num_cols else ""}">{escape(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f'<td class="{"num" if i in num_cols else ""}">{cell}</td>' for i, cell in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f'<table id="{escape(table_id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _hour_labels(points: list[dict[str, Any]]) -> list[str]:
    return [p["t"].astimezone(UTC).strftime("%H:00") for p in points]


def _minute_labels(points: list[dict[str, Any]]) -> list[str]:
    return [p["t"].astimezone(UTC).strftime("%H:%M") for p in points]


# --- sections -------------------------------------------------------------------------------
def _cards(v: dict[str, Any]) -> str:
    dw, sh, rr, wc, cons = v["dual_write"], v["shadow"], v["read_rollout"], v["write_cutover"], v["consistency"]
    latest = cons["latest"]
    cons_status = latest["status"] if latest else "no_data"
    cons_value = STATUS_LABELS.get(cons_status, cons_status) if latest else "—"
    cons_detail = (escape(fmt_time(latest["at"])) if latest else escape(cons["note"]))
    crit_alerts = sum(1 for a in v["alerts"] if a["severity"] == "critical")
    return '<div class="cards">' + "".join([
        _card("Dual-write success (24 h)", "dual_write_success_pct_24h", fmt_pct(dw["success_pct"]), dw["status"],
              f'{_metric("dual_write_failures_24h", fmt_int(dw["failures"]))} failed of '
              f'{_metric("dual_write_attempts_24h", fmt_int(dw["attempts"]))}'),
        _card("Consistency check (latest)", "consistency_latest", cons_value, cons_status, cons_detail),
        _card("Shadow-read match (24 h)", "shadow_match_pct_24h", fmt_pct(sh["match_pct"]), sh["status"],
              f'{_metric("shadow_mismatches_24h", fmt_int(sh["mismatches"]))} of '
              f'{_metric("shadow_reads_24h", fmt_int(sh["reads_compared"]))} reads differ'),
        _card("Reads from new tables", "read_new_pct", f'{rr["read_new_pct"]}%', rr["status"],
              "new-path error rate (1 h): "
              + _metric("read_new_error_pct_1h", fmt_pct(rr["paths"][1]["recent_error_pct"]))),
        _card("Write cutover", "write_cutover_state", wc["state"].replace("_", " "),
              "ok" if wc["state"] != "maintenance" else "critical", escape(wc["description"])),
        _card("Open alerts", "open_alerts", str(len(v["alerts"])),
              "critical" if crit_alerts else ("warning" if v["alerts"] else "ok"),
              f"{crit_alerts} critical"),
    ]) + "</div>"


def _dual_write(v: dict[str, Any]) -> str:
    dw = v["dual_write"]
    th = dw["thresholds"]
    hourly, minutely = dw["hourly"], dw["minutely"]
    thresholds = [Threshold(th["warn_below_pct"], f'warn {th["warn_below_pct"]:g}%', COLORS["warning"]),
                  Threshold(th["critical_below_pct"], f'critical {th["critical_below_pct"]:g}%', COLORS["critical"])]

    def tips(points, labels):
        return [f'{lab}: {fmt_pct(p["success_pct"])} ({fmt_int(p["failures"])} failed of {fmt_int(p["attempts"])})'
                if p["attempts"] is not None else f"{lab}: no data" for p, lab in zip(points, labels, strict=True)]

    hl, ml = _hour_labels(hourly), _minute_labels(minutely)
    chart_h = charts.line_chart(
        chart_id="chart-dual-write-hourly", title="Dual-write success rate per hour (UTC), last 24 h",
        labels=hl, series=[Series("success", [p["success_pct"] for p in hourly], tips=tips(hourly, hl))],
        thresholds=thresholds, y_ceil=100)
    chart_m = charts.line_chart(
        chart_id="chart-dual-write-minutely", title="Dual-write success rate per minute, last 60 min",
        labels=ml, series=[Series("success", [p["success_pct"] for p in minutely], tips=tips(minutely, ml))],
        thresholds=thresholds, y_ceil=100)
    rows = [[escape(e["entity"]) + ("" if e["configured"] else ' <span class="note">(not in config)</span>'),
             badge(e["status"]), fmt_pct(e["success_pct"]), fmt_int(e["attempts"]), fmt_int(e["failures"]),
             fmt_pct(e["recent_success_pct"]), fmt_ms(e["recent_p95_latency_ms"]), escape(fmt_time(e["last_bucket"]))]
            for e in dw["entities"]]
    return (
        '<section id="dual-write"><h2>Dual-write health</h2>'
        f'<p class="sub">Dual-write is <b>{"on" if dw["enabled"] else "off"}</b>. Warning below '
        f'{th["warn_below_pct"]:g}%, critical below {th["critical_below_pct"]:g}%, cutover needs '
        f'{th["cutover_min_success_pct"]:g}%; p95 latency warning above {th["latency_p95_warn_ms"]:g} ms. '
        f'Last hour: {_metric("dual_write_success_pct_1h", fmt_pct(dw["recent_success_pct"]))} of '
        f'{fmt_int(dw["recent_attempts"])} writes, '
        f'p95 {_metric("dual_write_p95_ms_1h", fmt_ms(dw["recent_p95_latency_ms"]))}; '
        f'last data {escape(fmt_time(dw["last_data_at"]))}.</p>'
        f'{chart_h}<h3>Last 60 minutes</h3>{chart_m}<h3>By entity</h3>'
        + _table(["entity", "status", "success 24 h", "attempts 24 h", "failures 24 h", "success 1 h", "p95 1 h",
                  "last data"], rows, num_cols={2, 3, 4, 5, 6}, table_id="dual-write-entities",
                 empty="no entities")
        + "</section>"
    )


def _consistency(v: dict[str, Any]) -> str:
    c = v["consistency"]
    cells = [(p["t"].astimezone(UTC).strftime("%H:00"), p["status"],
              f'{p["t"].astimezone(UTC).strftime("%H:00")} UTC: {p["status"]} ({p["runs"]} run(s))')
             for p in c["hourly"]]
    strip = charts.status_strip(chart_id="chart-consistency-hourly",
                                title="Consistency check results per hour (UTC), last 24 h", cells=cells)
    if not c["available"] or not c["runs"]:
        body = f'<p class="note" data-metric="consistency_note">{escape(c["note"])}</p>'
    else:
        rows = [[escape(fmt_time(r["at"])), badge(r["status"]), escape(str(r["label"])),
                 f'<span class="figs">{escape(figures_text(r["figures"]))}</span>'] for r in c["runs"][:24]]
        body = _table(["started", "result", "kind", "figures"], rows, table_id="consistency-runs")
    return ('<section id="consistency"><h2>Consistency checks (hourly)</h2>' + strip + body + "</section>")


def _shadow(v: dict[str, Any]) -> str:
    sh = v["shadow"]
    th = sh["thresholds"]
    hourly = sh["hourly"]
    labels = _hour_labels(hourly)
    chart = charts.line_chart(
        chart_id="chart-shadow-hourly", title="Shadow-read match rate per hour (UTC), last 24 h", labels=labels,
        series=[Series("match", [p["match_pct"] for p in hourly],
                       tips=[f'{lab}: {fmt_pct(p["match_pct"])} ({fmt_int(p["mismatches"])} of '
                             f'{fmt_int(p["reads_compared"])} differ)' if p["reads_compared"] is not None
                             else f"{lab}: no data" for p, lab in zip(hourly, labels, strict=True)])],
        thresholds=[Threshold(100 - th["mismatch_max_pct"], f'cutover {100 - th["mismatch_max_pct"]:g}%',
                              COLORS["critical"])],
        y_ceil=100)
    rows = [[escape(c["entity"]), escape(c["cohort"]), fmt_pct(c["match_pct"]), fmt_int(c["reads_compared"]),
             fmt_int(c["mismatches"]), escape(fmt_time(c["last_bucket"]))] for c in sh["cohorts"]]
    mism = [[escape(fmt_time(m["observed_at"])), escape(m["entity"]), f'<code>{escape(m["entity_key"])}</code>',
             escape(m["cohort"]), f'<span class="figs">{escape(fmt_value(m["diffs"]))}</span>']
            for m in sh["recent_mismatches"]]
    return (
        '<section id="shadow"><h2>Shadow reads</h2>'
        f'<p class="sub">Shadow reads on {_metric("shadow_read_pct", str(sh["shadow_read_pct"]) + "%")} of reads. '
        f'Cutover needs a mismatch rate of at most {th["mismatch_max_pct"]:g}% over at least '
        f'{fmt_int(th["min_reads"])} reads; '
        f'now {_metric("shadow_mismatch_pct_24h", fmt_pct(sh["mismatch_pct"], 3))}.</p>'
        + chart + "<h3>By cohort (24 h)</h3>"
        + _table(["entity", "cohort", "match", "reads compared", "mismatches", "last data"], rows,
                 num_cols={2, 3, 4}, table_id="shadow-cohorts", empty="no shadow reads in the last 24 h")
        + "<h3>Latest mismatches (sample)</h3>"
        + _table(["observed", "entity", "key", "cohort", "differences"], mism, table_id="shadow-mismatches",
                 empty="no mismatches recorded")
        + "</section>"
    )


def _path_table(paths: list[dict[str, Any]], table_id: str) -> str:
    rows = [[escape(p["path"]), fmt_int(p["recent_requests"]), fmt_int(p["recent_errors"]),
             f'<span data-metric="{escape(p["operation"])}_{escape(p["path"])}_error_pct_1h">'
             f'{fmt_pct(p["recent_error_pct"])}</span>',
             fmt_ms(p["recent_p95_latency_ms"]), fmt_int(p["requests"]), fmt_int(p["errors"]),
             f'<span data-metric="{escape(p["operation"])}_{escape(p["path"])}_error_pct_24h">'
             f'{fmt_pct(p["error_pct"])}</span>']
            for p in paths]
    return _table(["path", "requests 1 h", "errors 1 h", "error rate 1 h", "p95 1 h", "requests 24 h",
                   "errors 24 h", "error rate 24 h"], rows, num_cols={1, 2, 3, 4, 5, 6, 7}, table_id=table_id)


def _error_chart(chart_id: str, title: str, hourly: dict[str, list[dict[str, Any]]]) -> str:
    labels = _hour_labels(hourly["old"])
    return charts.line_chart(
        chart_id=chart_id, title=title, labels=labels, y_ceil=100,
        series=[Series("old path", [p["error_pct"] for p in hourly["old"]], color=charts.SERIES_COLORS[0]),
                Series("new path", [p["error_pct"] for p in hourly["new"]], color=charts.SERIES_COLORS[1])])


def _read_rollout(v: dict[str, Any]) -> str:
    rr = v["read_rollout"]
    gauge = charts.rollout_gauge(chart_id="chart-read-rollout", pct=rr["read_new_pct"], steps=rr["rollout_steps"])
    inc = rr["error_increase_points"]
    return (
        '<section id="read-rollout"><h2>Read cutover</h2>'
        f'<p class="sub">Reads served from the new tables (flag <code>read_new_pct</code>) and the rollout steps '
        f'from the config. The cutover rolls back when the new path\'s error rate exceeds the old one\'s by more '
        f'than {rr["thresholds"]["error_rate_max_increase_points"]:g} points; last hour: '
        f'{_metric("read_error_increase_points", "—" if inc is None else f"{inc:+.2f} points")} '
        f'{badge(rr["status"])}</p>'
        + gauge + "<h3>Error rate by path (cohort)</h3>" + _path_table(rr["paths"], "read-paths")
        + _error_chart("chart-read-errors-hourly", "Read error rate per hour by path (UTC), last 24 h", rr["hourly"])
        + "</section>"
    )


def _write_cutover(v: dict[str, Any]) -> str:
    wc = v["write_cutover"]
    flag_rows = [[f'<code>{escape(f["name"])}</code>', _metric(f'flag_{f["name"]}', json.dumps(f["value"])),
                  escape(fmt_time(f["updated_at"])), escape(str(f["updated_by"]))] for f in v["flags"]]
    return (
        '<section id="write-cutover"><h2>Write cutover</h2>'
        f'<p data-metric="write_cutover_description"><b>{escape(wc["description"])}</b></p>'
        + "<h3>Feature flags</h3>"
        + _table(["flag", "value", "changed", "by"], flag_rows, table_id="flags")
        + "<h3>Write errors by path</h3>" + _path_table(wc["paths"], "write-paths")
        + _error_chart("chart-write-errors-hourly", "Write error rate per hour by path (UTC), last 24 h",
                       wc["hourly"])
        + "</section>"
    )


def _phases(v: dict[str, Any]) -> str:
    blocks = []
    for p in v["phases"]:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(p["step_counts"].items())) or "no steps recorded"
        gate_rows = [[f'<code>{escape(g["gate"])}</code>', badge(g["status"]),
                      f'<span class="figs">{escape(figures_text(g["figures"]))}</span>', escape(g["reason"]),
                      f'<code>{escape(g["dag_id"] or "")}</code>',
                      escape(fmt_time(g["evaluated_at"])) + f'<br><span class="sub">{fmt_age(g["age_seconds"])}</span>']
                     for g in p["gates"]]
        gates_label = "no gates" if p["gate_state"] == "none" else "gates: " + p["gate_state"]
        blocks.append(
            f'<div class="phase" data-phase="{escape(p["phase"])}"><h3>{escape(p["title"])} '
            f'{badge(_phase_status(p["state"]), p["state"].capitalize())} {badge(p["gate_state"], gates_label)} '
            f'<span class="sub">steps: {escape(counts)}; updated {escape(fmt_time(p["updated_at"]))}</span></h3>'
            + (_table(["gate", "status", "figures", "reason", "DAG", "evaluated"], gate_rows,
                      table_id=f'gates-{p["phase"]}') if gate_rows else "")
            + "</div>")
    return '<section id="phases"><h2>Phases and gates</h2>' + "".join(blocks) + "</section>"


def _phase_status(state: str) -> str:
    return {"done": "passed", "failed": "failed", "in progress": "running", "reverted": "warning"}.get(state, "none")


def _alerts(v: dict[str, Any]) -> str:
    rows = [[badge(a["severity"]), escape(a["title"]), fmt_int(a["occurrences"]), escape(fmt_time(a["first_seen"])),
             escape(fmt_time(a["last_seen"])),
             escape(a["delivery_error"] or "")] for a in v["alerts"]]
    return ('<section id="alerts"><h2>Open alerts</h2>'
            + _table(["severity", "title", "occurrences", "first seen", "last seen", "Slack delivery error"], rows,
                     num_cols={2}, table_id="open-alerts", empty="no open alerts")
            + "</section>")


def _audit(v: dict[str, Any]) -> str:
    rows = [[escape(fmt_time(a["at"])), escape(a["actor"]), f'<code>{escape(a["action"])}</code>',
             escape(a["target"]), f'<span class="figs">{escape(fmt_value(a["details"]))}</span>', escape(a["reason"])]
            for a in v["audit"]]
    return ('<section id="audit"><h2>Recent audit entries</h2>'
            + _table(["at", "actor", "action", "target", "details", "reason"], rows, table_id="audit-entries",
                     empty="the audit ledger is empty")
            + "</section>")


def _shell(title: str, body: str, refresh_seconds: int | None) -> str:
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">' if refresh_seconds else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">{refresh}'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>{body}</body></html>")


def render(view: dict[str, Any], *, data_url: str = "dashboard/data", refresh_seconds: int | None = 60) -> str:
    header = (
        f'<h1>Migration health: <span data-metric="migration_name">{escape(view["migration"])}</span></h1>'
        f'<div class="sub">Control schema <code>{escape(view["control_schema"])}</code> via connection '
        f'<code>{escape(view["connection"])}</code>; generated {escape(fmt_time(view["generated_at"]))}'
        + (f"; refreshes every {int(refresh_seconds)} s" if refresh_seconds else "")
        + f'; <a href="{escape(data_url)}">JSON</a>'
        '; <a href="dashboard/performance" id="link-performance">database performance</a></div>'
    )
    body = "".join([
        header, _cards(view), _dual_write(view), _consistency(view), _shadow(view), _read_rollout(view),
        _write_cutover(view), _phases(view), _alerts(view), _audit(view),
    ])
    return _shell(f"Migration health: {view['migration']}", body, refresh_seconds)


def render_error(message: str, *, title: str = "Migration health", refresh_seconds: int | None = 60) -> str:
    body = (f"<h1>{escape(title)}</h1><section class=\"error\" id=\"dashboard-error\"><h2>The dashboard cannot load"
            f"</h2><p data-metric=\"error\">{escape(message)}</p></section>")
    return _shell(title, body, refresh_seconds)
