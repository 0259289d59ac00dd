"""The dashboard's HTML: one self-contained page (inline CSS and SVG, no scripts, no external assets).

Key figures carry ``data-metric`` attributes so tests (and anyone scraping the page) can find them
without depending on layout. Everything from the database passes through ``html.escape``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any

from migration_engine.dashboard import charts, phases
from migration_engine.dashboard.charts import COLORS, Series, Threshold

STATUS_LABELS = {
    "ok": "OK", "warning": "Warning", "critical": "Critical", "no_data": "No data", "low_volume": "Low volume",
    "passed": "Passed", "failed": "Failed", "waiting": "Waiting", "running": "Running", "unknown": "Unknown",
    "none": "None",
}

# Light and dark palettes as variables: the page follows the viewer's `prefers-color-scheme`, and
# Airflow's own theme choice when it is known (``THEME_SCRIPT`` sets ``data-theme`` on <html>).
_LIGHT = """--bg: #f5f6f8; --panel: #fff; --text: #212121; --muted: #616161; --soft: #424242; --line: #eceff1;
  --link: #1565c0; --code: #37474f; --error-bg: #ffebee; --shadow: rgba(0,0,0,.08); --chip: #eef1f4;"""
_DARK = """--bg: #111317; --panel: #1b1e24; --text: #e6e8eb; --muted: #a4abb5; --soft: #c9ced6; --line: #2c313a;
  --link: #82b1ff; --code: #cfd8dc; --error-bg: #3b1d20; --shadow: rgba(0,0,0,.5); --chip: #262b33;"""
CSS = f"""
:root {{ color-scheme: light dark; {_LIGHT} }}
@media (prefers-color-scheme: dark) {{ :root:not([data-theme="light"]) {{ {_DARK} }} }}
:root[data-theme="dark"] {{ {_DARK} }}
:root[data-theme="light"] {{ color-scheme: light; }}
* {{ box-sizing: border-box; }}
html, body {{ max-width: 100%; overflow-x: hidden; }}
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 0; padding: 16px 20px 40px; color: var(--text); background: var(--bg);
       overflow-wrap: anywhere; }}
h1 {{ font-size: 20px; margin: 0 0 2px; }}
h2 {{ font-size: 16px; margin: 0; display: inline; }}
h3 {{ font-size: 14px; margin: 12px 0 6px; }}
.sub {{ color: var(--muted); font-size: 12px; }}
nav#page-nav ul {{ list-style: none; display: flex; flex-wrap: wrap; gap: 4px 14px; padding: 0; margin: 8px 0 0; }}
nav#page-nav a {{ font-size: 13px; }}
nav#page-nav li.page a {{ font-weight: 600; }}
.cards {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: 10px; margin: 14px 0; }}
.card {{ background: var(--panel); border-radius: 8px; padding: 10px 12px; border-left: 5px solid #9e9e9e;
        box-shadow: 0 1px 2px var(--shadow); min-width: 0; }}
.card .label {{ font-size: 12px; color: var(--muted); }}
.card .value {{ font-size: 24px; font-weight: 600; margin: 2px 0; }}
.card .detail {{ font-size: 12px; color: var(--soft); }}
section {{ background: var(--panel); border-radius: 8px; padding: 10px 14px; margin: 12px 0;
          box-shadow: 0 1px 2px var(--shadow); min-width: 0; }}
section > details > summary {{ cursor: pointer; padding: 2px 0 6px; }}
section > details[open] > summary {{ margin-bottom: 4px; }}
.scroll {{ max-width: 100%; overflow-x: auto; }}
table {{ border-collapse: collapse; width: 100%; font-size: 13px; }}
th, td {{ text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top;
         overflow-wrap: anywhere; }}
th {{ color: var(--muted); font-weight: 600; overflow-wrap: normal; }}
td.num, th.num {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
.badge {{ display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px;
         font-weight: 600; white-space: nowrap; }}
.note {{ color: var(--muted); font-style: italic; }}
.error {{ background: var(--error-bg); border-left: 5px solid #c62828; }}
code, .mono, pre {{ font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }}
pre {{ white-space: pre-wrap; overflow-wrap: anywhere; margin: 4px 0; color: var(--code); }}
.figs {{ font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; color: var(--code); }}
svg.chart {{ width: 100%; height: auto; display: block; }}
svg .grid {{ stroke: var(--line); stroke-width: 1; }}
svg .tick {{ fill: var(--muted); font-size: 11px; }}
svg .thr {{ font-size: 11px; }}
svg .empty {{ fill: var(--muted); font-size: 13px; }}
svg .big {{ fill: var(--text); font-size: 18px; font-weight: 600; }}
svg .step {{ stroke: var(--soft); }}
a {{ color: var(--link); }}
.phase {{ border-top: 1px solid var(--line); padding: 8px 0; }}
.phase-head {{ display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 10px; }}
.phase-head h3 {{ margin: 0; }}
.reason {{ margin: 4px 0; }}
.reason .why {{ white-space: pre-line; }}  /* a multi-line reason (phase 5's checklist) keeps its lines */
ul.gates, ul.audit {{ list-style: none; margin: 4px 0; padding: 0; }}
ul.gates > li, ul.audit > li {{ padding: 5px 0; border-bottom: 1px solid var(--line); }}
ul.gates > li:last-child, ul.audit > li:last-child {{ border-bottom: 0; }}
details.more > summary {{ cursor: pointer; color: var(--link); font-size: 12px; }}
dl.kv {{ display: grid; grid-template-columns: minmax(120px, max-content) 1fr; gap: 2px 12px; margin: 4px 0;
        font-size: 12px; }}
dl.kv dt {{ color: var(--muted); }}
dl.kv dd {{ margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace; }}
.chip {{ background: var(--chip); border-radius: 4px; padding: 0 5px; }}
.sep {{ color: var(--muted); padding: 0 2px; }}
"""

# Airflow's UI keeps its theme in localStorage["theme"] ("light" | "dark" | "system", next-themes) and
# marks its own <html> with a "dark"/"light" class; the page is shown in an iframe of the same origin,
# so it reads either and sets data-theme (else the CSS follows prefers-color-scheme). It also
# remembers which sections were collapsed across the page's auto-refresh.
THEME_SCRIPT = """(function(){var d=document.documentElement,m=null;
try{var p=window.parent&&window.parent!==window?window.parent.document.documentElement:null;
if(p){m=p.classList.contains('dark')?'dark':p.classList.contains('light')?'light':p.getAttribute('data-theme');}}catch(e){}
try{if(m!=='dark'&&m!=='light'){m=localStorage.getItem('theme');}}catch(e){}
if(m==='dark'||m==='light'){d.setAttribute('data-theme',m);}
document.addEventListener('DOMContentLoaded',function(){
document.querySelectorAll('section>details[data-key]').forEach(function(el){
var k='zdm-dashboard-closed:'+el.dataset.key;
try{if(localStorage.getItem(k)==='1'){el.open=false;}}catch(e){}
el.addEventListener('toggle',function(){try{localStorage.setItem(k,el.open?'0':'1');}catch(e){}});});});})();"""

# The page's navigation: its sections (anchor, label), then other pages of the plugin (href relative
# to this page, label). Another page joins the navigation with one line in PAGES.
SECTIONS: list[tuple[str, str]] = [
    ("dual-write", "Dual-write"), ("consistency", "Consistency"), ("shadow", "Shadow reads"),
    ("read-rollout", "Read cutover"), ("write-cutover", "Write cutover"), ("phases", "Phases and gates"),
    ("alerts", "Open alerts"), ("audit", "Audit"),
]
PAGES: list[tuple[str, str]] = [
    ("data-docs/", "Data Docs"),
    ("dashboard/performance", "Database performance"),
]


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
    return " · ".join(f"{k.replace('_', ' ')}: {fmt_value(v)}" for k, v in figures.items())


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
    return (f'<div class="scroll"><table id="{escape(table_id)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{body}</tbody></table></div>')


def _open(section_id: str, title: str, extra: str = "") -> str:
    """A collapsible section (open by default; the page remembers a collapsed one across refreshes)."""
    return (f'<section id="{escape(section_id)}"><details open data-key="{escape(section_id)}">'
            f'<summary><h2>{escape(title)}</h2>{extra}</summary>')


_CLOSE = "</details></section>"


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
        _open("dual-write", "Dual-write health") + (
        f'<p class="sub">Dual-write is <b>{"on" if dw["enabled"] else "off"}</b>. Warning below '
        f'{th["warn_below_pct"]:g}%, critical below {th["critical_below_pct"]:g}%, cutover needs '
        f'{th["cutover_min_success_pct"]:g}%; p95 latency warning above {th["latency_p95_warn_ms"]:g} ms. '
        f'Last hour: {_metric("dual_write_success_pct_1h", fmt_pct(dw["recent_success_pct"]))} of '
        f'{fmt_int(dw["recent_attempts"])} writes, '
        f'p95 {_metric("dual_write_p95_ms_1h", fmt_ms(dw["recent_p95_latency_ms"]))}; '
        f'last data {escape(fmt_time(dw["last_data_at"]))}.</p>'
        f'{chart_h}<h3>Last 60 minutes</h3>{chart_m}<h3>By entity</h3>')
        + _table(["entity", "status", "success 24 h", "attempts 24 h", "failures 24 h", "success 1 h", "p95 1 h",
                  "last data"], rows, num_cols={2, 3, 4, 5, 6}, table_id="dual-write-entities",
                 empty="no entities")
        + _CLOSE
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
    docs = ('<p class="sub">Great Expectations Data Docs of these runs: '
            '<a href="data-docs/" data-metric="data_docs_link">latest per suite</a></p>')
    return (_open("consistency", "Consistency checks (hourly)") + strip + docs + body + _CLOSE)


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
        _open("shadow", "Shadow reads") + (
        f'<p class="sub">Shadow reads on {_metric("shadow_read_pct", str(sh["shadow_read_pct"]) + "%")} of reads. '
        f'Cutover needs a mismatch rate of at most {th["mismatch_max_pct"]:g}% over at least '
        f'{fmt_int(th["min_reads"])} reads; '
        f'now {_metric("shadow_mismatch_pct_24h", fmt_pct(sh["mismatch_pct"], 3))}.</p>')
        + chart + "<h3>By cohort (24 h)</h3>"
        + _table(["entity", "cohort", "match", "reads compared", "mismatches", "last data"], rows,
                 num_cols={2, 3, 4}, table_id="shadow-cohorts", empty="no shadow reads in the last 24 h")
        + "<h3>Latest mismatches (sample)</h3>"
        + _table(["observed", "entity", "key", "cohort", "differences"], mism, table_id="shadow-mismatches",
                 empty="no mismatches recorded")
        + _CLOSE
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
        _open("read-rollout", "Read cutover") + (
        f'<p class="sub">Reads served from the new tables (flag <code>read_new_pct</code>) and the rollout steps '
        f'from the config. The cutover rolls back when the new path\'s error rate exceeds the old one\'s by more '
        f'than {rr["thresholds"]["error_rate_max_increase_points"]:g} points; last hour: '
        f'{_metric("read_error_increase_points", "—" if inc is None else f"{inc:+.2f} points")} '
        f'{badge(rr["status"])}</p>')
        + gauge + "<h3>Error rate by path (cohort)</h3>" + _path_table(rr["paths"], "read-paths")
        + _error_chart("chart-read-errors-hourly", "Read error rate per hour by path (UTC), last 24 h", rr["hourly"])
        + _CLOSE
    )


def _write_cutover(v: dict[str, Any]) -> str:
    wc = v["write_cutover"]
    flag_rows = [[f'<code>{escape(f["name"])}</code>', _metric(f'flag_{f["name"]}', json.dumps(f["value"])),
                  escape(fmt_time(f["updated_at"])), escape(str(f["updated_by"]))] for f in v["flags"]]
    return (
        _open("write-cutover", "Write cutover") + (
        f'<p data-metric="write_cutover_description"><b>{escape(wc["description"])}</b></p>')
        + "<h3>Feature flags</h3>"
        + _table(["flag", "value", "changed", "by"], flag_rows, table_id="flags")
        + "<h3>Write errors by path</h3>" + _path_table(wc["paths"], "write-paths")
        + _error_chart("chart-write-errors-hourly", "Write error rate per hour by path (UTC), last 24 h",
                       wc["hourly"])
        + _CLOSE
    )


def _dl(figures: dict[str, Any]) -> str:
    """Every figure as a key/value list; nested values pretty-printed (wrapped, never off the edge)."""
    items = []
    for key, value in figures.items():
        if isinstance(value, (dict, list)):
            text = f"<pre>{escape(json.dumps(value, default=str, indent=1, ensure_ascii=False))}</pre>"
        else:
            text = escape(fmt_value(value))
        items.append(f"<dt>{escape(str(key))}</dt><dd>{text}</dd>")
    return f'<dl class="kv">{"".join(items)}</dl>' if items else '<p class="note">no figures recorded</p>'


def _link(url: str | None, text: str) -> str:
    # target=_top: inside the Airflow UI the page is an iframe; the run opens in the UI itself.
    if not url:
        return escape(text)
    return f'<a href="{escape(url)}" target="_top">{escape(text)}</a>'


def _duration(start: datetime | None, end: datetime | None, now: datetime) -> str:
    if start is None:
        return ""
    secs = int(((end or now) - start).total_seconds())
    if secs < 120:
        return f"{secs} s"
    if secs < 7200:
        return f"{secs // 60} min"
    return f"{secs // 3600} h {secs % 3600 // 60:02d} min"


def _gate_item(g: dict[str, Any]) -> str:
    bits = [b for b in (g["window"], ("data: " + g["data"]) if g["data"] else None) if b]
    when = f'evaluated {escape(fmt_time(g["evaluated_at"]))}'
    if g["age_seconds"] is not None:
        when += f" ({escape(fmt_age(g['age_seconds']))})"
    if not g["this_run"]:
        when += " · from an earlier run" if g["run_id"] else ""
    if g["stale"]:
        when += " · the run is over: nobody waits on this any more"
    measured = ", ".join(f"{k.replace('_', ' ')} {fmt_value(v)}" for k, v in g["measured"].items())
    return (f'<li data-gate="{escape(g["gate"])}" data-status="{escape(g["status"])}">'
            f'{badge("none", "Was waiting") if g["stale"] else badge(g["status"])} <b>{escape(g["title"])}</b>: '
            f'<span class="gate-reason">{escape(g["reason"] or "(no reason recorded)")}</span>'
            + (f'<div class="sub">{escape("; ".join(bits))}</div>' if bits else "")
            + f'<div class="sub">{when}</div>'
            + f'<details class="more"><summary>all figures{(": " + escape(measured)) if measured else ""}'
              f"</summary>{_dl(g['figures'])}"
            + (f'<div class="sub">DAG <code>{escape(g["dag_id"] or "")}</code>, run '
               f'<code>{escape(g["run_id"] or "")}</code></div>')
            + "</details></li>")


def _phase_block(p: dict[str, Any], now: datetime) -> str:
    state = p["state"]
    label = phases.RUN_STATE_LABELS.get(state, state)
    run = p["run"]
    head = [f'<h3>{_link(p["dag_url"], p["title"])}</h3>',
            f'<span data-metric="phase_state_{escape(p["phase"])}" data-state="{escape(state)}">'
            f'{badge(phases.RUN_STATE_STATUS.get(state, "unknown"), label)}</span>']
    if run:
        when = f'started {fmt_time(run["start_date"])}' if run["start_date"] else f'queued {fmt_time(run["queued_at"])}'
        if run["end_date"]:
            when += f', ended {fmt_time(run["end_date"])}'
        dur = _duration(run["start_date"], run["end_date"], now)
        head.append(f'<span class="sub">latest run {_link(run["url"], run["run_id"])} · {escape(when)}'
                    + (f" · {escape(dur)}" if dur else "")
                    + (" · dry run" if run.get("dry_run") else "")
                    + (f' · newer dry run {escape(run["newer_dry_run"])}' if run.get("newer_dry_run") else "")
                    + "</span>")
    elif state == "none":
        head.append('<span class="sub">no run in Airflow yet</span>')
    body = []
    for t in p["failed_tasks"]:
        body.append(f'<p class="reason" data-failed-task="{escape(t["task"])}">{badge("failed", "Failed task")} '
                    f'{_link(t["url"], t["task"])}: <span class="why">{escape(t["reason"])}</span></p>')
    if state == "failed" and not p["failed_tasks"] and p["reason"]:
        body.append(f'<p class="reason"><span class="why">{escape(p["reason"])}</span></p>')
    if state == "unknown" and p["reason"]:
        body.append(f'<p class="reason note">{escape(p["reason"])}</p>')
    if p["active_tasks"]:
        items = ", ".join(f'{_link(t["url"], t["task"])} ({escape(str(t["state"]).replace("_", " "))})'
                          for t in p["active_tasks"])
        body.append(f'<p class="reason">Now: {items}</p>')
    if p["gates"]:
        body.append('<ul class="gates">' + "".join(_gate_item(g) for g in p["gates"]) + "</ul>")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(p["step_counts"].items()))
    tasks = ", ".join(f"{n} {s}" for s, n in sorted(p["task_counts"].items()))
    extra = "; ".join(x for x in (f"tasks: {tasks}" if tasks else "", f"steps: {counts}" if counts else "") if x)
    if extra:
        body.append(f'<div class="sub">{escape(extra)}</div>')
    return (f'<div class="phase" data-phase="{escape(p["phase"])}" data-dag="{escape(p["dag_id"])}" '
            f'data-state="{escape(state)}"><div class="phase-head">{"".join(head)}</div>{"".join(body)}</div>')


def _phases(v: dict[str, Any]) -> str:
    af = v.get("airflow") or {}
    note = ("" if af.get("available") else
            f'<p class="note" data-metric="airflow_runs_error">{escape(af.get("error") or "")}</p>')
    blocks = "".join(_phase_block(p, v["generated_at"]) for p in v["phases"])
    return (_open("phases", "Phases and gates",
                  ' <span class="sub">state = each DAG\'s latest run in Airflow; gates = their latest '
                  "evaluation</span>") + note + blocks + _CLOSE)


def _alerts(v: dict[str, Any]) -> str:
    rows = [[badge(a["severity"]), escape(a["title"]), fmt_int(a["occurrences"]), escape(fmt_time(a["first_seen"])),
             escape(fmt_time(a["last_seen"])),
             escape(a["delivery_error"] or "")] for a in v["alerts"]]
    return (_open("alerts", "Open alerts")
            + _table(["severity", "title", "occurrences", "first seen", "last seen", "Slack delivery error"], rows,
                     num_cols={2}, table_id="open-alerts", empty="no open alerts")
            + _CLOSE)


def _audit_item(a: dict[str, Any]) -> str:
    details = a["details"] if isinstance(a["details"], dict) else {"details": a["details"]}
    target = f' <span class="chip">{escape(a["target"])}</span>' if a.get("target") else ""
    return (f'<li class="audit-entry" data-action="{escape(a["action"])}">'
            f'<b class="who">{escape(a["actor"])}</b><span class="sep"> · </span>'
            f'<span class="what"><code>{escape(a["action"])}</code>{target}</span><span class="sep"> · </span>'
            f'<span class="when">{escape(fmt_time(a["at"]))}</span>'
            + (f'<span class="sep"> · </span><span class="why">{escape(a["reason"])}</span>' if a.get("reason") else "")
            + (f'<details class="more"><summary>details</summary>{_dl(details)}</details>' if details else "")
            + "</li>")


def _audit_routine(v: dict[str, Any]) -> str:
    """Progress and throttle entries (one a minute per range during a copy) as one row per action and
    target, so they do not push approvals and refusals off the list above."""
    rows = [[f'<code>{escape(r["action"])}</code>', escape(r["target"] or ""), escape(f'{r["entries"]:,}'),
             escape(f'{fmt_time(r["first_at"])} – {fmt_time(r["last_at"])}'), escape(r["latest_reason"] or "")]
            for r in v.get("audit_routine") or []]
    if not rows:
        return ""
    return ('<p class="note">Routine progress entries of the last 24 h (not listed above):</p>'
            + _table(["action", "target", "entries", "first – last", "latest reason"], rows, num_cols={2},
                     table_id="audit-routine"))


def _audit(v: dict[str, Any]) -> str:
    body = ('<ul class="audit" id="audit-entries">' + "".join(_audit_item(a) for a in v["audit"]) + "</ul>"
            if v["audit"] else '<p class="note" id="audit-entries">the audit ledger is empty</p>')
    return (_open("audit", "Recent audit entries", ' <span class="sub">who · what · when · why</span>')
            + body + _audit_routine(v) + _CLOSE)


def _nav(page_href_prefix: str = "") -> str:
    items = [f'<li><a href="#{escape(anchor)}">{escape(label)}</a></li>' for anchor, label in SECTIONS]
    items += [f'<li class="page"><a href="{escape(page_href_prefix + href)}">{escape(label)}</a></li>'
              for href, label in PAGES]
    return f'<nav id="page-nav" aria-label="Dashboard sections and pages"><ul>{"".join(items)}</ul></nav>'


def _shell(title: str, body: str, refresh_seconds: int | None) -> str:
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">' if refresh_seconds else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">{refresh}'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="color-scheme" content="light dark">'
            f"<title>{escape(title)}</title><style>{CSS}</style><script>{THEME_SCRIPT}</script></head>"
            f"<body>{body}</body></html>")


def render(view: dict[str, Any], *, data_url: str = "dashboard/data", refresh_seconds: int | None = 60) -> str:
    header = (
        f'<h1>Migration health: <span data-metric="migration_name">{escape(view["migration"])}</span></h1>'
        f'<div class="sub">Control schema <code>{escape(view["control_schema"])}</code> via connection '
        f'<code>{escape(view["connection"])}</code>; generated {escape(fmt_time(view["generated_at"]))}'
        + (f"; refreshes every {int(refresh_seconds)} s" if refresh_seconds else "")
        + f'; <a href="{escape(data_url)}">JSON</a></div>'
        + _nav()
    )
    body = "".join([
        header, _cards(view), _dual_write(view), _consistency(view), _shadow(view), _read_rollout(view),
        _write_cutover(view), _phases(view), _alerts(view), _audit(view),
    ])
    return _shell(f"Migration health: {view['migration']}", body, refresh_seconds)


def render_error(message: str, *, title: str = "Migration health", refresh_seconds: int | None = 60) -> str:
    body = (f'<h1>{escape(title)}</h1><section class="error" id="dashboard-error"><h2>'
            f'{"The dashboard cannot load" if title == "Migration health" else "Cannot show this page"}'
            f'</h2><p data-metric="error">{escape(message)}</p></section>')
    return _shell(title, body, refresh_seconds)


def render_data_docs(suites: list[Any], site: str) -> str:
    """The Data Docs index: each suite's latest validation page, its expectations, and GX's own index."""
    rows = []
    for s in suites:
        latest = (f'<a href="latest/{escape(s.suite)}" data-suite-latest="{escape(s.suite)}">latest validation</a>'
                  if s.latest else '<span class="note">not validated yet</span>')
        exp = f'<a href="site/{escape(s.expectations)}">expectations</a>' if s.expectations else ""
        rows.append([f"<code>{escape(s.suite)}</code>", latest, escape(fmt_time(s.validated_at)),
                     escape(s.run_name or ""), fmt_int(s.validations), exp])
    body = (f'<h1>Data Docs</h1><div class="sub">Great Expectations Data Docs of the consistency runs, from '
            f'<code>{escape(site)}</code> (<code>consistency.data_docs_dir</code>). '
            f'<a href="../dashboard">Back to the dashboard</a> · <a href="site/index.html">GX site index</a></div>'
            + _open("data-docs", "Latest per suite")
            + _table(["suite", "page", "validated", "run", "validations kept", "suite definition"], rows,
                     num_cols={4}, table_id="data-docs-suites",
                     empty="no Data Docs yet: the consistency DAGs build them on their first run")
            + _CLOSE)
    return _shell("Data Docs", body, None)
