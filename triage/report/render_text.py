"""Text renderers of the report dict: table (100 columns), markdown (GitHub), csv, json.

All take the dict returned by :func:`triage.report.build.build_report` and return a string.
"""

from __future__ import annotations

import csv
import io
from typing import Any

CSV_COLUMNS = ["id", "status", "signature", "count", "count_total", "first_seen", "last_seen",
               "first_build", "last_build", "builds", "builds_total", "processes",
               "hardware_models", "frames", "encodings", "flags", "finding", "regression",
               "incidents"]


TABLE_SIGNATURE_MAX = 100     # characters of signature in the table (full text: other formats)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def _range_text(report: dict) -> str:
    def one(v):
        if v is None:
            return None
        if isinstance(v, dict):
            if "build" in v:
                return f"{v['alias']} ({v['build']})"
            return f"{v['alias']} (" + ", ".join(f"{p or 'any'} {b}" for p, b in
                                              v["builds"].items()) + ")"
        return str(v)

    s, u = one(report.get("since")), one(report.get("until"))
    if s and u:
        return f"from {s} to {u}"
    if s:
        return f"since {s}"
    if u:
        return f"until {u}"
    ref = report.get("status_reference")
    refs = report.get("status_references") or {}
    if len(refs) > 1:
        return ("all reports (status against the newest build of each platform: "
                + ", ".join(f"{p} {b}" for p, b in refs.items()) + ")")
    return f"all reports (status against the newest build, {ref})" if ref else "all reports"


def _short_counts(d: dict[str, int], limit: int = 3) -> str:
    items = list(d.items())
    text = ", ".join(f"{k} {v}" for k, v in items[:limit])
    if len(items) > limit:
        text += f", +{len(items) - limit}"
    return text


def _builds_span(c: dict) -> str:
    fb, lb = c.get("first_build"), c.get("last_build")
    if not fb:
        return ""
    return fb if fb == lb else f"{fb}..{lb}"


def render_table(report: dict, width: int | None = None) -> str:
    """A rich table that fits ``width`` (default: 100 columns, or the terminal's when a tty)."""
    from rich.markup import escape

    from triage.cli_app import render_table as table

    rows = []
    for c in report["clusters"]:
        rows.append({
            "status": c["status"],
            "id": c["id"],
            "count": f"{c['count']}/{c['count_total']}",
            "builds": _builds_span(c),
            "processes": _short_counts(c.get("processes") or {}, 2),
            "signature": escape(_clip(c.get("signature") or "", TABLE_SIGNATURE_MAX)),
        })
    n = len(report["clusters"])
    title = f"{n} cluster{'s' if n != 1 else ''}, {_range_text(report)}"
    if not rows:
        return title + ": nothing to report\n"
    return table(rows, ["status", "id", "count", "builds", "signature"],
                 title=title, headers={"count": "in range/total", "id": "cluster"}, width=width)


def _md_escape(text: Any) -> str:
    s = "" if text is None else str(text)
    return s.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def seen_text(c: dict, which: str) -> str:
    """``TIME (BUILD)`` for ``which`` = ``first``/``last``: the capture time of the cluster's
    first/last crash and the OS build of that same crash (``first_seen_build`` /
    ``last_seen_build``; ``first_build``/``last_build`` are the lowest/highest builds, which
    may be another crash's, even another platform's)."""
    b = c.get(f"{which}_seen_build")
    return f"{c.get(f'{which}_seen')}" + (f" ({b})" if b else "")


def render_markdown(report: dict) -> str:
    """GitHub-flavoured markdown: summary table, then one section per cluster."""
    out = [f"# Crash report: {_range_text(report)}", ""]
    counts: dict[str, int] = {}
    for c in report["clusters"]:
        counts[c["status"]] = counts.get(c["status"], 0) + 1
    out.append(", ".join(f"**{v}** {k}" for k, v in counts.items()) or "No clusters.")
    out.append("")
    if report["clusters"]:
        out += ["| status | cluster | in range | total | builds | signature |",
                "|---|---|---:|---:|---|---|"]
        for c in report["clusters"]:
            out.append(f"| {c['status']} | `{c['id']}` | {c['count']} | {c['count_total']} | "
                       f"{_md_escape(_builds_span(c))} | {_md_escape(c.get('signature'))} |")
        out.append("")
    for c in report["clusters"]:
        out.append(f"## {c['status']}: `{c['id']}` {_md_escape(c.get('signature'))}")
        out.append("")
        out.append(f"- **count**: {c['count']} in range, {c['count_total']} in total")
        out.append(f"- **first seen**: {seen_text(c, 'first')}; "
                   f"**last seen**: {seen_text(c, 'last')}")
        if c.get("regression"):
            r = c["regression"]
            out.append(f"- **regressed**: absent in {r['absent_in']} (compiles of the same "
                       f"configuration recorded), back in {r['back_in']}")
        if c.get("builds"):
            out.append("- **builds**: " + ", ".join(f"{b} ({n})" for b, n in c["builds"].items()))
        if c.get("builds_total") and c.get("builds_total") != c.get("builds"):
            out.append("- **builds (all time)**: " + ", ".join(
                f"{b} ({n})" for b, n in c["builds_total"].items()))
        if c.get("processes"):
            out.append("- **processes**: " + ", ".join(f"{_md_escape(p)} ({n})"
                                                       for p, n in c["processes"].items()))
        if c.get("hardware_models"):
            out.append("- **hardware**: " + ", ".join(f"{h} ({n})"
                                                     for h, n in c["hardware_models"].items()))
        if c.get("encodings"):
            out.append("- **encodings**: " + _md_escape(encodings_text(c["encodings"])))
        if c.get("flags"):
            out.append("- **flags**: " + _md_escape(flags_text(c["flags"])))
        if c.get("finding"):
            out.append(f"- **finding**: {_md_escape(c['finding'])}")
        if c.get("frames"):
            out += ["", "```", *c["frames"], "```"]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def encodings_text(encs: Any) -> str:
    """``[{"encoding", "label", "count"}]`` (triage.context) -> ``linear int4 per_block (2), ...``."""
    if isinstance(encs, list):
        parts = []
        for e in encs:
            if isinstance(e, dict):
                label = e.get("label") or _flat(e.get("encoding"))
                parts.append(f"{label} ({e['count']})" if "count" in e else str(label))
            else:
                parts.append(str(e))
        return ", ".join(parts)
    return _flat(encs)


def flags_text(flags: Any) -> str:
    """``{flag: {value: count}}`` -> ``preferred_compute: neural-engine (2), cpu (1); ...``."""
    if isinstance(flags, dict):
        parts = []
        for k, v in flags.items():
            if isinstance(v, dict):
                parts.append(f"{k}: " + ", ".join(f"{val} ({n})" for val, n in v.items()))
            else:
                parts.append(f"{k}: {v}")
        return "; ".join(parts)
    return _flat(flags)


def _flat(value: Any) -> str:
    """Compact text of a context value (dict of counts, list of dicts, ...)."""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_flat(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(_flat(v) for v in value)
    return "" if value is None else str(value)


def render_csv(report: dict) -> str:
    """One row per cluster; nested values as compact JSON (incidents space-separated)."""
    import orjson

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for c in report["clusters"]:
        row = []
        for col in CSV_COLUMNS:
            v = c.get(col)
            if col == "incidents":
                row.append(" ".join(v or []))
            elif col == "frames":
                row.append(" | ".join(v or []))
            elif isinstance(v, (dict, list)):
                row.append(orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS).decode())
            else:
                row.append("" if v is None else str(v))
        w.writerow(row)
    return buf.getvalue()


def render_json(report: dict) -> str:
    from triage.cli_app import dumps_json

    return dumps_json(report) + "\n"
