"""CLI commands: ``triage frames`` and ``triage symbolicate`` (see docs/frames.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from triage.cli_app import (OutputFormat, app, checked_rule_files, emit, open_existing_store,
                            out, rule_files, warn)

FRAME_COLUMNS = ["#", "section", "raw_symbol", "module", "normalized", "inline", "rule"]
_HEADERS = {"raw_symbol": "raw symbol"}
_JSON_KEYS = ("section", "thread", "index", "raw_symbol", "symbol", "module", "offset",
              "symbol_offset", "function", "normalized", "inline", "rule", "symbolicated_by",
              "source_file", "source_line", "image_uuid")


def _load_target(target: str):
    """(report, source) for a stored incident id (or unique prefix) or a report file."""
    from triage.errors import UserError

    path = Path(target).expanduser()
    if path.is_file():
        import hashlib

        from triage.records import ParseError
        from triage.reports.detect import parse_bytes
        from triage.reports.discover import (MAX_REPORT_BYTES, TooLarge, read_file,
                                             too_large_reason)

        try:
            size = path.stat().st_size
            if size > MAX_REPORT_BYTES:       # refused before reading, as ingest does
                raise UserError(f"{path}: {too_large_reason(size)}")
            data = read_file(str(path))       # never reads past the limit (a growing file)
        except TooLarge as exc:
            raise UserError(f"{path}: {exc}")
        except OSError as exc:
            raise UserError(f"{path}: cannot read: {exc.strerror or exc}")
        try:
            report = parse_bytes(data, str(path.resolve()), hashlib.sha256(data).hexdigest())
        except ParseError as exc:
            raise UserError(f"{path}: not a readable crash report: {exc}")
        return report, "file"
    if path.exists():
        raise UserError(f"{path}: is not a file (give an incident id or a report file)")
    from triage.frames.stored import load_report, resolve_incident_id

    store = open_existing_store(f"{target}: no such file or incident id")
    try:
        iid = resolve_incident_id(store.conn, target)
        report = load_report(store.conn, iid) if iid else None
    finally:
        store.close()
    if report is None:
        raise UserError(f"{target}: no such incident id in the store, and no such file")
    return report, "store"


def frame_rows(report, rules, thread: Optional[int] = None) -> list[dict]:
    """Rows for the crashing (or chosen) thread, then the last exception backtrace."""
    from triage.errors import UserError
    from triage.frames.normalize import normalize_frame

    sections = []
    if thread is not None:
        if not (0 <= thread < len(report.threads)):
            raise UserError(f"--thread {thread}: the report has {len(report.threads)} threads")
        sections.append((f"thread {thread}", thread, report.threads[thread].frames))
    else:
        ct = report.crashing_thread
        if ct is not None and 0 <= ct < len(report.threads):
            sections.append((f"crashed thread {ct}", ct, report.threads[ct].frames))
        if report.last_exception_backtrace:
            sections.append(("last exception", None, report.last_exception_backtrace))
    rows = []
    for name, tindex, frames in sections:
        for i, f in enumerate(frames):
            normalize_frame(f, rules)
            rows.append({
                "#": i, "index": i, "section": name, "thread": tindex,
                "raw_symbol": f.raw_symbol if f.raw_symbol is not None else f.symbol,
                "symbol": f.symbol, "module": f.module, "offset": f.offset,
                "symbol_offset": f.symbol_offset, "function": f.function,
                "normalized": f.normalized, "inline": bool(f.inline), "rule": f.rule,
                "symbolicated_by": f.symbolicated_by, "source_file": f.source_file,
                "source_line": f.source_line, "image_uuid": f.image_uuid,
            })
    return rows


@app.command()
def frames(
    target: str = typer.Argument(..., metavar="INCIDENT_ID_OR_FILE",
                                 help="A stored incident id (or a unique prefix of one), or a "
                                 "report file (.ips / .crash) parsed on the fly."),
    thread: Optional[int] = typer.Option(None, "--thread", "-t", min=0,
                                         help="Show this thread instead of the crashed thread "
                                         "and the last exception backtrace."),
    dsym: list[Path] = typer.Option([], "--dsym", help="Symbolicate with dSYMs/Mach-O files "
                                    "under PATH first (display only; repeatable)."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f",
                                     help="table, json or csv."),
) -> None:
    """Show how each frame is normalized, and which rule changed it (for writing rules).

    Uses the shipped rules plus every --rules file / [rules] files entry.
    """
    from triage.frames.normalize import load_rules

    rules = load_rules(rule_files())
    report, source = _load_target(target)
    if dsym:
        from triage.frames.symbolize import DsymIndex, symbolicate_report

        index = DsymIndex.from_paths(dsym)
        for p in index.problems:
            warn(f"triage: warning: {p}")
        symbolicate_report(report, index)
    for note in report.notes or ():
        if note.startswith("stored original unreadable"):   # only the crashing thread is left
            warn(f"triage: warning: {report.incident_id}: {note}")
    rows = frame_rows(report, rules, thread)
    if not rows:
        hint = f" ({len(report.threads)} threads: use --thread N)" if report.threads else ""
        warn(f"{target}: no crashed thread and no last exception backtrace in this report{hint}")
    if fmt == OutputFormat.json:
        emit(rows, fmt, FRAME_COLUMNS,
             json_obj=[{k: r[k] for k in _JSON_KEYS} for r in rows])
    elif fmt == OutputFormat.csv:
        emit(rows, fmt, list(_JSON_KEYS))
    else:
        import shutil
        import sys

        from triage.cli_app import render_table

        width = shutil.get_terminal_size((140, 24)).columns if sys.stdout.isatty() else 140
        cols = [c for c in FRAME_COLUMNS if c != "section"]
        out(f"{report.incident_id} ({source}: {report.process or '?'}); rules: "
            + ", ".join(Path(f).name for f in rules.files))
        for name in dict.fromkeys(r["section"] for r in rows):
            sys.stdout.write(render_table([r for r in rows if r["section"] == name], cols,
                                          title=name, headers=_HEADERS, width=width))


@app.command()
def symbolicate(
    dsym: list[Path] = typer.Option([], "--dsym", help="dSYM bundle, Mach-O file or folder "
                                    "searched recursively; repeatable."),
    incident: list[str] = typer.Option([], "--incident", help="Only this incident "
                                       "(repeatable; default: every stored report)."),
    peers: bool = typer.Option(True, "--peers/--no-peers", help="Also name unsymbolicated "
                               "frames from symbols seen in other reports of the same image "
                               "UUID (same OS build)."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f",
                                     help="table: one summary line; json: the summary object."),
) -> None:
    """Re-symbolicate stored reports (dSYM UUID must match the image), re-normalize their
    frames and recompute their signatures. Run `triage recluster` afterwards."""
    from triage.errors import UserError
    from triage.frames.resymbolicate import resymbolicate_store

    if not dsym and not peers:
        raise UserError("nothing to do: give --dsym PATH and/or --peers")
    files = checked_rule_files()    # a bad rule file: refused before the store is opened
    store = open_existing_store(f"{incident[0]}: no such incident" if incident else None)
    try:
        summary = resymbolicate_store(store, dsym, files, incident_ids=incident or None,
                                      use_peers=peers)
    finally:
        store.close()
    for p in summary.get("problems", []):
        warn(f"triage: warning: {p}")
    if fmt == OutputFormat.table:
        line = (f"{summary['reports_changed']} of {summary['reports_seen']} reports changed: "
                f"{summary['frames_dsym']} frames from dSYMs ({summary['dsym_files']} debug "
                f"files), {summary['frames_peer']} from peer reports; "
                f"{summary['signatures_changed']} signatures changed")
        out(line)
        if summary["signatures_changed"]:
            out("run `triage recluster` to regroup the changed signatures")
    else:
        emit([summary], fmt, list(summary), json_obj=summary)
