"""The performance page's HTML: one self-contained page (inline CSS and SVG, no scripts, no external
assets), its own stylesheet (light and dark, following the browser's colour scheme), no horizontal
overflow from 1280 px up: cards wrap, charts scale to the column, long table names break.

Key figures carry ``data-metric`` attributes (``<db>.<figure>``, ``<db>.table.<schema.table>.p95_ms``)
so tests and scrapers need not depend on the layout. Everything from the database is escaped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from migration_engine.dashboard import charts
from migration_engine.dashboard.charts import COLORS, SERIES_COLORS, Series, Threshold

DB_TITLES = {"legacy": "Legacy database", "new": "New database"}
_SOURCE_LABELS = {"pg_stat_statements": "<code>pg_stat_statements</code>", "app_stats": "application stats "
                  "(<code>path_stats</code>)", "none": "no latency source"}

CSS = """
:root { color-scheme: light dark; --bg: #f5f6f8; --fg: #212121; --panel: #fff; --muted: #616161;
        --line: #e3e7ea; --note-bg: #fff8e1; --note-line: #ed6c02; --link: #1565c0; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #121417; --fg: #e6e8eb; --panel: #1d2126; --muted: #a0a7b0; --line: #323840;
          --note-bg: #2b2416; --note-line: #ffb74d; --link: #90caf9; }
}
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       padding: 16px 20px 40px; color: var(--fg); background: var(--bg); overflow-wrap: anywhere; }
h1 { font-size: 20px; margin: 0 0 2px; } h2 { font-size: 17px; margin: 0 0 8px; }
h3 { font-size: 14px; margin: 14px 0 6px; }
a { color: var(--link); }
.sub, .muted { color: var(--muted); font-size: 12px; }
section { background: var(--panel); border-radius: 8px; padding: 12px 14px; margin: 12px 0;
          box-shadow: 0 1px 2px rgba(0,0,0,.12); min-width: 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 10px; margin: 10px 0; }
.card { background: var(--bg); border-radius: 8px; padding: 8px 10px; border-left: 5px solid #9e9e9e; min-width: 0; }
.card .label { font-size: 12px; color: var(--muted); }
.card .value { font-size: 22px; font-weight: 600; margin: 2px 0; }
.card .detail { font-size: 12px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 560px), 1fr)); gap: 12px; }
.charts > figure { min-width: 0; margin: 0; }
figcaption { font-size: 13px; font-weight: 600; margin: 4px 0 2px; }
svg.chart { width: 100%; height: auto; display: block; }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .tick { fill: var(--muted); font-size: 11px; }
svg .thr { font-size: 11px; }
svg .empty { fill: var(--muted); font-size: 13px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; table-layout: auto; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.name { word-break: break-all; }
.note { background: var(--note-bg); border-left: 4px solid var(--note-line); padding: 6px 10px; margin: 8px 0;
        font-size: 13px; }
.unavailable { list-style: none; padding: 0; margin: 6px 0; }
.unavailable li { background: var(--note-bg); border-left: 4px solid var(--note-line); padding: 4px 10px;
                  margin: 4px 0; font-size: 13px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; font-weight: 600; }
.error { border-left: 5px solid #c62828; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
"""

STATUS_LABELS = {"ok": "OK", "warning": "Warning", "critical": "Critical", "no_data": "No data"}


# --- formatting ----------------------------------------------------------------------------------
def fmt_ms(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.2f} ms" if v < 10 else f"{v:,.1f} ms" if v < 100 else f"{v:,.0f} ms"


def fmt_pct(v: float | None, decimals: int = 2) -> str:
    return "—" if v is None else f"{v:.{decimals}f}%"


def fmt_int(v: int | float | None) -> str:
    return "—" if v is None else f"{int(v):,}"


def fmt_bytes(v: int | float | None) -> str:
    if v is None:
        return "—"
    size = float(v)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} TB"


def fmt_seconds(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.1f} s" if v < 120 else f"{v / 60:,.1f} min"


def fmt_duration(seconds: float) -> str:
    """A config duration as an operator writes it: 30 s, 5 min, 4 h, 30 d."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}" if (seconds / size) % 1 == 0 else f"{seconds / size:,.1f} {unit}"
    return f"{seconds:g} s"


def fmt_time(t: datetime | None) -> str:
    return "—" if t is None else t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _metric(name: str, text: str) -> str:
    return f'<span data-metric="{escape(name)}">{escape(text)}</span>'


def _badge(status: str) -> str:
    color = COLORS.get(status, COLORS["unknown"])
    return f'<span class="badge" style="background:{color}">{escape(STATUS_LABELS.get(status, status))}</span>'


def _card(label: str, metric: str, value: str, status: str, detail: str = "") -> str:
    color = COLORS.get(status, COLORS["unknown"])
    return (f'<div class="card" style="border-left-color:{color}"><div class="label">{escape(label)}</div>'
            f'<div class="value">{_metric(metric, value)}</div><div class="detail">{detail}</div></div>')


# --- sections ------------------------------------------------------------------------------------
def _cards(d: dict[str, Any]) -> str:
    db, c, r, h, io, disk = d["db"], d["connections"], d["replication"], d["hit_rates"], d["io"], d["backup_dir"]
    un = d["unavailable"]
    cards = [
        _card("Connections (cluster) / usable", f"{db}.connections_pct", fmt_pct(c["pct"], 1), c["status"],
              f'{_metric(f"{db}.connections", fmt_int(c["clients"]))} of {fmt_int(c["usable"])} usable '
              f'(max_connections {fmt_int(c["max_connections"])}); this database: {fmt_int(c["database_clients"])}, '
              f'{fmt_int(c["active"])} active, {fmt_int(c["idle_in_transaction"])} idle in transaction, '
              f'{fmt_int(c["waiting_on_locks"])} waiting on locks'
              if "connections" not in un else escape(un["connections"])),
        _card("Replication lag", f"{db}.replication_lag_seconds", fmt_seconds(r["lag_seconds"]),
              "no_data" if r["lag_seconds"] is None else "ok",
              escape(un["replication"]) if "replication" in un else (
                  "standby: behind its primary" if r["role"] == "standby" else
                  f"{len(r['replicas'])} replica(s) streaming" if r["replicas"] else
                  "not applicable: no replica streams from this server")),
        _card("Database size", f"{db}.database_bytes", fmt_bytes(d["database_bytes"]), "ok",
              escape(f"{d['database_name']}, PostgreSQL {d['server_version']}")),
        _card("Buffer hit rate", f"{db}.buffer_hit_pct", fmt_pct(h["buffer_hit_pct"]),
              "no_data" if h["buffer_hit_pct"] is None else "ok" if h["buffer_hit_pct"] >= 95 else "warning",
              escape(un.get("hit_rates") or h["basis"])),
        _card("Index hit rate", f"{db}.index_hit_pct", fmt_pct(h["index_hit_pct"]),
              "no_data" if h["index_hit_pct"] is None else "ok" if h["index_hit_pct"] >= 95 else "warning",
              escape(un.get("hit_rates") or h["basis"])),
        _card("Disk I/O (blocks/s)", f"{db}.reads_per_second",
              "—" if io.get("reads_per_second") is None else f"{io['reads_per_second']:,.1f} read",
              "no_data" if io.get("reads_per_second") is None else "ok",
              escape(un["io"]) if "io" in un else escape(
                  f"{'—' if io.get('writes_per_second') is None else format(io['writes_per_second'], ',.1f')} "
                  f"written/s; source: {io.get('source', '—')}"
                  + ("" if io.get("reads_per_second") is not None else "; rates need two samples"))),
    ]
    if disk:
        free = disk.get("free_pct")
        cards.append(_card(
            "Backup dir: free disk", f"{db}.backup_free_bytes", fmt_bytes(disk.get("free_bytes")),
            "no_data" if free is None else "critical" if free < 5 else "warning" if free < 15 else "ok",
            escape(disk["error"]) if disk.get("error") else escape(
                f"{fmt_pct(free, 1)} of {fmt_bytes(disk.get('total_bytes'))} free at {disk['path']}"
                + ("" if disk.get("exists") else f" (not created yet: measured at {disk.get('measured_at')})")
                + f", on worker {disk.get('host')}")))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _latency_table(d: dict[str, Any]) -> str:
    db = d["db"]
    rows = []
    for t in d["tables"]:
        name = t["table_name"]
        rows.append(
            f'<tr><td class="name">{escape(name)}</td>'
            f'<td class="num">{fmt_int(t["calls"])}</td>'
            f'<td class="num">{_metric(f"{db}.table.{name}.p50_ms", fmt_ms(t["p50_ms"]))}</td>'
            f'<td class="num">{_metric(f"{db}.table.{name}.p95_ms", fmt_ms(t["p95_ms"]))}</td>'
            f'<td class="num">{_metric(f"{db}.table.{name}.p99_ms", fmt_ms(t["p99_ms"]))}</td>'
            f'<td class="num">{fmt_ms(t["mean_ms"])}</td>'
            f'<td class="num">{fmt_bytes(t["total_bytes"])}</td>'
            f'<td class="num">{fmt_int(t["live_rows"])}</td>'
            f'<td class="num">{fmt_pct(t["buffer_hit_pct"], 1)}</td>'
            f'<td class="num">{fmt_pct(t["index_hit_pct"], 1)}</td>'
            f'<td class="num">{fmt_int(t["seq_scans"])} / {fmt_int(t["index_scans"])}</td></tr>')
    if not rows:
        return '<p class="note">no tables in the latest sample</p>'
    head = "".join(f'<th class="{"num" if i else ""}">{escape(h)}</th>' for i, h in enumerate(
        ["table", "calls", "p50", "p95", "p99", "mean", "size", "rows", "buffer hit", "index hit", "seq / idx scans"]))
    return f'<table id="{escape(db)}-tables"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _labels(points: list[dict[str, Any]]) -> list[str]:
    return [p["t"].astimezone(UTC).strftime("%H:%M") for p in points]


def _charts(d: dict[str, Any]) -> str:
    db, s = d["db"], d["series"]
    labels = _labels(s)
    out: list[tuple[str, str]] = []

    def add(**kw) -> None:
        out.append((kw["title"], charts.line_chart(**kw)))

    if d["table_series"]:
        add(
            chart_id=f"chart-{db}-table-p95", title="p95 query latency by table (ms)", labels=labels,
            series=[Series(name.split(".", 1)[-1], values, SERIES_COLORS[i % len(SERIES_COLORS)])
                    for i, (name, values) in enumerate(d["table_series"].items())],
            y_suffix=" ms", decimals=2)
    warn = d["connections"]["warn_pct"]
    add(
        chart_id=f"chart-{db}-connections", title="Connections, % of usable", labels=labels,
        series=[Series("connections", [p["connections_pct"] for p in s])],
        thresholds=[Threshold(warn, f"warn {warn:g}%", COLORS["warning"])], y_ceil=100, decimals=1)
    add(
        chart_id=f"chart-{db}-hit-rates", title="Buffer and index hit rate per interval (%)", labels=labels,
        series=[Series("buffer", [p["buffer_hit_pct"] for p in s], SERIES_COLORS[0]),
                Series("index", [p["index_hit_pct"] for p in s], SERIES_COLORS[1])], y_ceil=100)
    add(
        chart_id=f"chart-{db}-io", title="Blocks read and written per second", labels=labels,
        series=[Series("read", [p["reads_per_second"] for p in s], SERIES_COLORS[0]),
                Series("written", [p["writes_per_second"] for p in s], SERIES_COLORS[1])], y_suffix="", decimals=2)
    add(
        chart_id=f"chart-{db}-lag", title="Replication lag (s)", labels=labels,
        series=[Series("lag", [p["replication_lag_seconds"] for p in s])], y_suffix=" s", decimals=1)
    return '<div class="charts">' + "".join(f'<figure><figcaption>{escape(title)}</figcaption>{svg}</figure>'
                                            for title, svg in out) + "</div>"


def _database(d: dict[str, Any]) -> str:
    db, un = d["db"], d["unavailable"]
    title = "Database (legacy and new: same_database)" if d.get("same_database") else DB_TITLES.get(db, db)
    stale = (f'<p class="note">The latest sample is {fmt_seconds(d["age_seconds"])} old: is the '
             "migration_db_performance_sampler DAG paused or failing?</p>") if d["stale"] else ""
    missing = "".join(f"<li data-unavailable=\"{escape(k)}\">{escape(k.replace('_', ' '))}: {escape(v)}</li>"
                      for k, v in sorted(un.items()))
    return (
        f'<section id="db-{escape(db)}"><h2>{escape(title)}: <code>{escape(d["database_name"])}</code></h2>'
        f'<div class="sub">latest sample {escape(fmt_time(d["sampled_at"]))}; {d["samples"]} sample(s) in the window'
        f"</div>{stale}"
        + (f'<ul class="unavailable">{missing}</ul>' if missing else "")
        + _cards(d)
        + f'<h3>Query latency by table</h3><p class="sub" data-latency-source="{escape(d["latency_source"])}">'
          f'<b>{_SOURCE_LABELS.get(d["latency_source"], escape(d["latency_source"]))}</b>'
        + (f" ({escape(d['latency_basis'])})" if d["latency_basis"] else "")
        + f': {escape(d["latency_note"])}</p>'
        + _latency_table(d) + "<h3>History</h3>" + _charts(d) + "</section>"
    )


def _shell(title: str, body: str, refresh_seconds: int | None) -> str:
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">' if refresh_seconds else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">{refresh}'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>{body}</body></html>")


def render(view: dict[str, Any], *, data_url: str = "performance/data", dashboard_url: str = "../dashboard",
           refresh_seconds: int | None = 60) -> str:
    header = (
        f'<h1>Database performance: {escape(view["migration"])}</h1>'
        f'<div class="sub">sampled every {fmt_duration(view["interval_seconds"])} by the '
        f"<code>migration_db_performance_sampler</code> DAG, kept {fmt_duration(view['retention_seconds'])}; "
        f'charts since {escape(fmt_time(view["window_start"]))}; generated {escape(fmt_time(view["generated_at"]))}; '
        f'<a href="{escape(dashboard_url)}">migration health dashboard</a> · <a href="{escape(data_url)}">JSON</a>'
        "</div>")
    dbs = [{**d, "same_database": view["same_database"]} for d in view["databases"]]
    body = header
    if view["note"]:
        body += f'<section><p class="note" id="perf-empty">{escape(view["note"])}</p></section>'
    for db in view["missing"] if view["databases"] else []:
        body += (f'<section><p class="note">{escape(DB_TITLES.get(db, db))}: no sample in the chart window '
                 "(see the sampler task's log)</p></section>")
    body += "".join(_database(d) for d in dbs)
    return _shell(f"Database performance: {view['migration']}", body, refresh_seconds)


def render_error(message: str, *, refresh_seconds: int | None = 60) -> str:
    body = ('<h1>Database performance</h1><section class="error" id="perf-error"><h2>The performance page cannot '
            f'load</h2><p data-metric="error">{escape(message)}</p></section>')
    return _shell("Database performance", body, refresh_seconds)
