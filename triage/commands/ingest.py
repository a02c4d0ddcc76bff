"""CLI commands: ``triage ingest``, ``triage incidents`` and ``triage original`` (see
docs/ingest.md)."""
from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from triage.cli_app import (OutputFormat, app, db_path, dumps_json, emit, open_existing_store,
                            open_store, out, refuse_store_path, rule_files, warn)

#: exit codes of ``triage ingest`` (documented in docs/ingest.md)
EXIT_OK = 0            # the run completed (bad files are reported, not fatal)
EXIT_MISSING_PATH = 1  # completed, but a path argument did not exist / a glob matched nothing
# 2: usage error (UserError), 130: interrupted (Ctrl-C; committed batches stay stored)

_MISSING_REASONS = ("no such file or folder", "no files match this pattern")


class IngestFormat(str, Enum):
    table = "table"
    json = "json"


def _summary_line(s: dict) -> str:
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(s["by_kind"].items()))
    parts = [f"ingested {s['ingested']} new report{'s' if s['ingested'] != 1 else ''}"
             + (f" ({kinds})" if kinds else ""),
             f"{s['already_known']} already known",
             f"{s['skipped']} skipped",
             f"{len(s['errors'])} error{'s' if len(s['errors']) != 1 else ''}"]
    if s.get("linked"):
        parts.append(f"{s['linked']} linked to compiles")
    if s.get("clusters_new"):
        parts.append(f"{s['clusters_new']} new clusters")
    return "; ".join(parts) + f" ({s['files_seen']} files in {s.get('seconds', 0):.1f} s)"


@app.command()
def ingest(
    paths: list[str] = typer.Argument(..., metavar="PATHS...",
                                      help="Report files, folders (walked recursively, incl. "
                                      "Retired/), globs, .zip/.tar.gz archives."),
    journal: list[Path] = typer.Option([], "--journal", help="Compile journal (JSONL) to link "
                                       "crashes to compile records; repeatable."),
    dsym: list[Path] = typer.Option([], "--dsym", help="dSYM bundle/folder used to symbolicate "
                                    "unsymbolicated frames; repeatable."),
    fmt: IngestFormat = typer.Option(IngestFormat.table, "--format", "-f",
                                     help="table: one summary line; json: the summary object."),
) -> None:
    """Read crash reports into the store (idempotent; unchanged files are skipped unread)."""
    from triage.errors import UserError
    from triage.ingest import run_ingest

    for opt, values in (("--journal", journal), ("--dsym", dsym)):
        for v in values:
            if not Path(v).expanduser().exists():
                raise UserError(f"{opt} {v}: no such file or folder")
    from triage.context.link import check_journals

    # the store itself (or its -wal/-shm) as --journal: one line, exit 2, before anything runs
    check_journals([j for j in journal if not Path(j).expanduser().is_dir()], db_path())
    store = open_store()
    try:
        summary = run_ingest(store, paths, journals=journal, dsym_paths=dsym,
                             rule_files=rule_files(), progress=True,
                             on_problem=lambda p, r: warn(f"{p}: {r}"))
    finally:
        store.close()
    for w in summary.get("warnings") or ():
        warn(f"triage: warning: {w}")
    if fmt == IngestFormat.json:
        out(dumps_json(summary))
    else:
        out(_summary_line(summary))
    if any(e["reason"] in _MISSING_REASONS for e in summary["errors"]):
        raise typer.Exit(EXIT_MISSING_PATH)


_TABLE_COLUMNS = ["id", "captured", "kind", "process", "exception", "top_frame", "cluster_id"]
_TABLE_HEADERS = {"id": "incident", "top_frame": "top frame", "cluster_id": "cluster"}
_CSV_COLUMNS = ["incident_id", "path", "sha256", "bug_type", "kind", "process", "pid",
                "captured_at", "os_version", "os_build", "exception_type", "signal",
                "crashing_thread", "top_frame", "signature", "cluster_id", "compile_id"]


_TABLE_WIDTHS = {"process": 18, "exception": 16, "top_frame": 34, "cluster_id": 12}


def _clip(value, width: int) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def top_frame(frames: list[dict]) -> str:
    """``module`symbol`` of the first frame (``module+0xOFF`` when unsymbolicated)."""
    if not frames:
        return ""
    f = frames[0]
    mod = f.get("module") or "???"
    if f.get("function") or f.get("symbol"):
        return f"{mod}`{f.get('function') or f.get('symbol')}"
    off = f.get("offset")
    return f"{mod}+{off:#x}" if isinstance(off, int) else mod


@app.command()
def incidents(
    kind: Optional[str] = typer.Option(None, "--kind", help="Only this kind: crash, hang, "
                                       "jetsam, panic, resource, unknown."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="Only reports in this cluster."),
    errors: bool = typer.Option(False, "--errors", help="List the bad inputs recorded by "
                                "ingest instead (path, reason)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most N rows."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f",
                                     help="table, json (the full contract) or csv."),
) -> None:
    """List stored reports, one row each (oldest first)."""
    from triage.api import check_kind, incident_rows

    check_kind(kind, "--kind")      # before the store is opened (shared with the library API)
    store = open_existing_store(f"{cluster}: no such cluster" if cluster is not None else None)
    try:
        if errors:
            from triage.store.queries import error_records

            rows = error_records(store)
            if limit:
                rows = rows[:limit]
            emit(rows, fmt, ["path", "reason", "seen_at"], title=None)
            return
        from triage.frames.stored import short_incident_id

        # the same function as Triage.incidents_records(); an unknown cluster id is an error,
        # as in show/report/merge/split
        recs = incident_rows(store, kind=kind, cluster=cluster, limit=limit)
    finally:
        store.close()
    if fmt == OutputFormat.json:
        emit(recs, fmt, [])
        return
    rows = []
    for r in recs:
        row = dict(r)
        row["id"] = short_incident_id(r["incident_id"])
        row["captured"] = (r["captured_at"] or "")[:16].replace("T", " ")
        row["exception"] = r.get("signal") or r.get("exception_type") or \
            r.get("termination_indicator") or ""
        row["top_frame"] = top_frame(r.get("frames") or [])
        if fmt == OutputFormat.table:
            for key, width in _TABLE_WIDTHS.items():
                row[key] = _clip(row.get(key), width)
        rows.append(row)
    if fmt == OutputFormat.csv:
        emit(rows, fmt, _CSV_COLUMNS)
    else:
        emit(rows, fmt, _TABLE_COLUMNS, headers=_TABLE_HEADERS)


@app.command()
def original(
    incident: str = typer.Argument(..., help="Incident id (or a unique prefix of 4+ characters)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Write to this file instead of standard output."),
    redact: bool = typer.Option(True, "--redact/--no-redact",
                                help="Remove user names, home folders, host names, serials and "
                                     "crash reporter keys (default on, as in exports)."),
) -> None:
    """The stored report file itself, byte for byte (redacted by default), e.g. to attach to a
    bug. Ingest keeps every report's bytes in the store, so this works after macOS has deleted
    the file."""
    from triage.api import original_bytes
    from triage.errors import UserError

    if output is not None:
        refuse_store_path(output, "--output")
    store = open_existing_store(f"{incident}: no such incident")
    try:
        data = original_bytes(store, incident, redact=redact)
    finally:
        store.close()
    if output is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    from triage.errors import refuse_special_file

    refuse_special_file(output)
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise UserError(f"{output}: cannot write: {exc.strerror or exc}") from None
