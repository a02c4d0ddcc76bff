"""One self-contained HTML file: inline CSS, an inline SVG chart drawn here, no script, no network.

The chart is a stacked bar chart of crashes per OS build (x, in build order) per cluster (colour;
the top clusters by total, the rest as "other"). Each cluster then gets a detail section with its
facts, top frames, context (encodings, flags, configurations, correlations, finding) and incident
ids (capped in the page; the JSON report has them all).
"""

from __future__ import annotations

from html import escape
from typing import Any

from triage.report.builds import build_key

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#d62728"]
OTHER_COLOUR = "#cccccc"
MAX_SERIES = len(PALETTE)
MAX_INCIDENTS_SHOWN = 200

CSS = """
body{font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif;
margin:2em auto;max-width:1100px;color:#1d1d1f;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f5f5f7}td.n{text-align:right}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
pre{background:#f5f5f7;padding:.6em;overflow:auto}
.status{display:inline-block;padding:0 .5em;border-radius:3px;color:#fff;font-size:.85em}
.st-new{background:#d62728}.st-regressed{background:#9467bd}.st-ongoing{background:#ff7f0e}
.st-gone{background:#7f7f7f}.muted{color:#6e6e73}.swatch{display:inline-block;width:.8em;
height:.8em;margin-right:.3em;vertical-align:middle}
details summary{cursor:pointer}
"""


def _series(report: dict) -> tuple[list[str], list[tuple[str, str, dict[str, int]]]]:
    """Builds in order, and (label, colour, {build: count}) series for the chart."""
    clusters = report["clusters"]
    builds = sorted({b for c in clusters for b in (c.get("builds_total") or c.get("builds") or {})},
                    key=build_key)
    ranked = sorted(clusters, key=lambda c: -c.get("count_total", 0))
    series = []
    for i, c in enumerate(ranked[:MAX_SERIES]):
        series.append((c["id"], PALETTE[i], dict(c.get("builds_total") or c.get("builds") or {})))
    rest = ranked[MAX_SERIES:]
    if rest:
        other: dict[str, int] = {}
        for c in rest:
            for b, n in (c.get("builds_total") or c.get("builds") or {}).items():
                other[b] = other.get(b, 0) + n
        series.append((f"other ({len(rest)} clusters)", OTHER_COLOUR, other))
    return builds, series


def render_chart(report: dict, width: int = 960, height: int = 320) -> str:
    """Inline SVG: stacked bars of crashes per build per cluster."""
    builds, series = _series(report)
    left, right, top, bottom = 56, 16, 16, 64
    pw, ph = width - left - right, height - top - bottom
    parts = [f'<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="crashes per build per cluster">']
    parts.append('<title>Crashes per OS build, per cluster</title>')
    if not builds:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                     'no crashes in view</text></svg>')
        return "".join(parts)
    totals = {b: sum(s[2].get(b, 0) for s in series) for b in builds}
    ymax = max(totals.values()) or 1
    step = _nice_step(ymax)
    ytop = step * (int(ymax * 1.08) // step + 1)          # headroom above the tallest bar
    # axes and grid
    t = 0
    while t <= ytop:
        y = top + ph - ph * t / ytop
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" '
                     f'stroke="#eee"/><text x="{left - 6}" y="{y + 4:.1f}" font-size="11" '
                     f'text-anchor="end">{t}</text>')
        t += step
    bw = pw / len(builds)
    for i, b in enumerate(builds):
        x = left + i * bw + bw * 0.15
        w = bw * 0.7
        y = top + ph
        for label, colour, counts in series:
            n = counts.get(b, 0)
            if not n:
                continue
            h = ph * n / ytop
            y -= h
            parts.append(f'<rect class="bar" data-cluster="{escape(label)}" data-build="{escape(b)}" '
                         f'x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
                         f'fill="{colour}"><title>{escape(label)} on {escape(b)}: {n}</title>'
                         '</rect>')
        cx = left + i * bw + bw / 2
        parts.append(f'<text x="{cx:.1f}" y="{top + ph + 14}" font-size="11" '
                     f'text-anchor="end" transform="rotate(-35 {cx:.1f} {top + ph + 14})">'
                     f'{escape(b)}</text>')
    parts.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" '
                 'stroke="#333"/>')
    sb = _since_build(report.get("since"))
    if sb is not None:
        # dashed marker before the first build at/after --since
        k = build_key(sb)
        idx = next((i for i, b in enumerate(builds) if build_key(b) >= k), None)
        if idx is not None:
            x = left + idx * bw
            parts.append(f'<line id="since-marker" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" '
                         f'y2="{top + ph}" stroke="#d62728" stroke-dasharray="4 3"/>'
                         f'<text x="{x + 4:.1f}" y="{top + 10}" font-size="11" fill="#d62728">'
                         f'since {escape(sb)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _since_build(since) -> str | None:
    """The (generic) build of the report's ``since``, when it is a build bound."""
    from triage.report.builds import parse_build

    if isinstance(since, str):
        return since if parse_build(since) else None
    if isinstance(since, dict):
        b = since.get("build") or (since.get("builds") or {}).get("")
        return b if b and parse_build(b) else None
    return None


def _nice_step(ymax: int) -> int:
    raw = max(1, ymax / 5)
    mag = 10 ** (len(str(int(raw))) - 1)
    for m in (1, 2, 5, 10):
        if m * mag >= raw:
            return int(m * mag)
    return int(10 * mag)


def _kv_table(d: dict[str, Any]) -> str:
    if not d:
        return '<span class="muted">none</span>'
    rows = "".join(f"<tr><td>{escape(str(k))}</td><td class=n>{escape(_text(v))}</td></tr>"
                   for k, v in d.items())
    return f"<table>{rows}</table>"


def _enc_table(encs: Any) -> str:
    if isinstance(encs, dict):
        return _kv_table(encs)
    if not encs:
        return '<span class="muted">none</span>'
    rows = []
    for e in encs:
        if isinstance(e, dict):
            label = e.get("label") or _text(e.get("encoding"))
            rows.append(f"<tr><td>{escape(str(label))}</td>"
                        f"<td class=n>{escape(str(e.get('count', '')))}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def _text(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={_text(x)}" for k, x in v.items())
    if isinstance(v, list):
        return "; ".join(_text(x) for x in v)
    return "" if v is None else str(v)


def _records_table(items: list[dict], columns: list[str]) -> str:
    if not items:
        return '<span class="muted">none</span>'
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(_text(it.get(c)))}</td>" for c in columns)
                   + "</tr>" for it in items)
    return f"<table><tr>{head}</tr>{body}</table>"


def _seen(c: dict, which: str) -> str:
    """``TIME (BUILD)``: the capture time of the first/last crash with that same crash's build."""
    b = c.get(f"{which}_seen_build")
    return f'{c.get(f"{which}_seen")}' + (f" ({b})" if b else "")


def _cluster_section(c: dict) -> str:
    cid = escape(c["id"])
    st = escape(c["status"])
    h = [f'<section class="cluster" id="cluster-{cid}" data-cluster="{cid}">',
         f'<h2><span class="status st-{st}">{st}</span> <code>{cid}</code> '
         f'{escape(c.get("signature") or "")}</h2>', "<table>"]
    facts = [("count in range", c["count"]), ("count total", c["count_total"]),
             ("first seen", _seen(c, "first")), ("last seen", _seen(c, "last"))]
    if c.get("regression"):
        r = c["regression"]
        facts.append(("regression", f"absent in {r['absent_in']} although compiles of the same "
                                    f"configuration were recorded; back in {r['back_in']}"))
    if c.get("finding"):
        facts.append(("finding", c["finding"]))
    for k, v in facts:
        h.append(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>")
    h.append("</table>")
    h.append("<h3>Builds</h3>" + _kv_table(c.get("builds_total") or c.get("builds") or {}))
    h.append("<h3>Processes</h3>" + _kv_table(c.get("processes") or {}))
    h.append("<h3>Hardware models</h3>" + _kv_table(c.get("hardware_models") or {}))
    h.append("<h3>Top frames</h3><pre>" + escape("\n".join(c.get("frames") or [])) + "</pre>")
    h.append("<h3>Encodings</h3>" + _enc_table(c.get("encodings")))
    h.append("<h3>Flags</h3>" + _kv_table({k: (", ".join(f"{val} ({n})" for val, n in v.items())
                                              if isinstance(v, dict) else v)
                                          for k, v in (c.get("flags") or {}).items()}))
    if c.get("configurations"):
        h.append("<h3>Configurations</h3>" + _records_table(
            c["configurations"], ["config", "crashed", "crashed_other", "succeeded"]))
    if c.get("correlations"):
        h.append("<h3>Correlations</h3>" + _records_table(
            c["correlations"], ["attribute", "value", "in_cluster", "overall", "score"]))
    inc = c.get("incidents")
    if inc is not None:
        shown = inc[:MAX_INCIDENTS_SHOWN]
        more = len(inc) - len(shown)
        h.append(f"<details><summary>Incidents in range ({len(inc)})</summary><pre>"
                 + escape("\n".join(shown))
                 + (f"\n... and {more} more (see --format json)" if more > 0 else "")
                 + "</pre></details>")
    h.append("</section>")
    return "\n".join(h)


def render_html(report: dict) -> str:
    from triage.report.render_text import _range_text

    title = f"triage report: {_range_text(report)}"
    builds, series = _series(report)
    legend = " ".join(f'<span><span class="swatch" style="background:{col}"></span>'
                      f'{escape(label)}</span>' for label, col, _ in series)
    rows = "".join(
        f'<tr><td><span class="status st-{escape(c["status"])}">{escape(c["status"])}</span></td>'
        f'<td><a href="#cluster-{escape(c["id"])}"><code>{escape(c["id"])}</code></a></td>'
        f'<td class=n>{c["count"]}</td><td class=n>{c["count_total"]}</td>'
        f'<td>{escape(c.get("first_build") or "")}..{escape(c.get("last_build") or "")}</td>'
        f'<td>{escape(c.get("signature") or "")}</td></tr>' for c in report["clusters"])
    summary = (f'<table id="summary"><tr><th>status</th><th>cluster</th><th>in range</th>'
               f'<th>total</th><th>builds</th><th>signature</th></tr>{rows}</table>'
               if report["clusters"] else "<p>No clusters in view.</p>")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">generated {escape(str(report.get("generated_at")))} by triage</p>',
        "<h2>Crashes per build per cluster</h2>",
        render_chart(report),
        f'<p class="legend">{legend}</p>',
        "<h2>Clusters</h2>",
        summary,
        *(_cluster_section(c) for c in report["clusters"]),
        "</body></html>",
    ]) + "\n"
