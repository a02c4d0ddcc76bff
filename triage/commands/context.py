"""CLI commands: context — record, inspect, link, show (see docs/context.md)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from triage.cli_app import OutputFormat, app, db_path, emit, out, refuse_store_path, warn
from triage.errors import UserError, refuse_special_file


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def record(
    ctx: typer.Context,
    journal: Optional[Path] = typer.Option(
        None, "--journal", help="Journal to append to (default: journal.jsonl beside the store)."),
) -> None:
    """Run a compile command unchanged and append its record to the journal.

    Usage: triage record [--journal FILE] -- COMMAND ARGS...
    """
    argv = list(ctx.args)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UserError("record: no command given (usage: triage record [--journal FILE] -- "
                        "COMMAND ARGS...)")
    from triage.context.journal import JOURNAL_NAME
    from triage.context.record import ChildStatus, run_and_record

    target = journal if journal is not None else db_path().parent / JOURNAL_NAME
    # A journal that cannot be written (a folder, an unwritable folder) never stops the
    # command: it runs, its exit status is ours, and one warning line names the journal.
    refuse_special_file(target)   # opening a FIFO would block forever: refused up front
    # appending JSON lines to the store (--journal s.db, or --db journal.jsonl) would corrupt it
    refuse_store_path(target, "--journal" if journal is not None else "journal")
    # the child's status, passed through quietly (no "interrupted" advice when it was Ctrl-C)
    raise ChildStatus(run_and_record(argv, target))


@app.command()
def inspect(
    model: Path = typer.Argument(..., help="A .mlpackage, .mlmodel (or .aimodel) path."),
    compression: Optional[str] = typer.Option(
        None, "--compression",
        help="Compression flag value to fall back on when the model cannot be read."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f",
                                     help="table, json or csv."),
) -> None:
    """Print the weight encoding of a Core ML model (read without running it)."""
    from triage.context.encoding import inspect_model

    res = inspect_model(model, {"compression": compression} if compression else None)
    enc = res.get("encoding")
    if enc is None:
        hint = "" if compression else " (give --compression TEXT to describe its encoding)"
        raise UserError(f"{res['path']}: {res.get('problem') or 'no encoding found'}{hint}")
    if res.get("problem"):
        warn(f"{res['path']}: {res['problem']}")
    rows = []
    for k in ("scheme", "nbits", "dtype", "granularity", "block_size", "group_size",
              "uncompressed_weights", "compressed_weights", "ops", "source"):
        if k in enc:
            rows.append({"field": k, "value": enc[k]})
    for k, v in enc.items():
        if k not in {r["field"] for r in rows}:
            rows.append({"field": k, "value": v})
    if (fmt.value if hasattr(fmt, "value") else fmt) == "table":
        out(res["path"])
    emit(rows, fmt, ["field", "value"], json_obj=res)


@app.command()
def link(
    journal: List[Path] = typer.Option(
        [], "--journal", help="Journal file to read (repeatable); the journal beside the store "
        "is always read."),
    relink: bool = typer.Option(False, "--relink",
                                help="Forget pid/time links first and link everything again."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f",
                                     help="table, json or csv."),
) -> None:
    """Load compile journals and link crash incidents to their compiles."""
    from triage.cli_app import open_existing_store
    from triage.context.link import check_journals, link_pending

    # the store itself (or its -wal/-shm) is no journal: refused like `record --journal s.db`
    check_journals(journal, db_path())
    store = open_existing_store()   # no incidents, nothing to link: never create a store
    try:
        # --relink: one call, one transaction, one summary (what it linked and found ambiguous)
        summary = link_pending(store, journal, [], unlinked_sidecars=True, relink=relink)
    finally:
        store.close()
    for p in summary["problems"]:
        warn(f"{p['path']}: {p['reason']}")
    for a in summary["ambiguities"]:
        was = (f" (was linked to #{a['linked_before']}; link withdrawn)"
               if a.get("linked_before") is not None else "")
        warn(f"{a['path']}: {a['reason']}{was}")
    rows = [{"field": k, "value": summary[k]}
            for k in ("records_loaded", "linked", "ambiguous", "unlinked", "changed")]
    rows.append({"field": "problems", "value": len(summary["problems"])})
    emit(rows, fmt, ["field", "value"], title="link", json_obj=summary)


@app.command()
def show(
    cluster_id: str = typer.Argument(..., help="Cluster id (see `triage clusters`)."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f",
                                     help="table, json or csv."),
) -> None:
    """Show one cluster with the encodings, flags and configurations of its crashes."""
    from triage.cli_app import open_existing_store
    from triage.context.views import cluster_detail

    store = open_existing_store(f"{cluster_id}: no such cluster")
    try:
        d = cluster_detail(store, cluster_id)
    finally:
        store.close()
    f = fmt.value if hasattr(fmt, "value") else fmt
    if f == "json":
        emit([], fmt, [], json_obj=d)
        return
    rows = []
    for c in d["configurations"]:
        row = dict(c["config"])
        row.update({k: c[k] for k in ("crashed", "crashed_other", "succeeded", "failed")})
        rows.append(row)
    if f == "csv":
        cols = sorted({k for r in rows for k in r if "." in k}) + \
            ["crashed", "crashed_other", "succeeded", "failed"]
        emit(rows, fmt, cols)
        return
    out(f"{d['id']}  {d['signature'] or ''}")
    out(f"  {d['count']} incidents, first {d['first_seen']}, last {d['last_seen']}; "
        f"{d['linked']} linked to compiles, {d['unlinked']} not")
    out(f"  finding: {d['finding']}")
    if d["encodings"]:
        out("  encodings: " + ", ".join(f"{e['label']} ({e['count']})" for e in d["encodings"]))
    for k, vals in d["flags"].items():
        out(f"  flags.{k}: " + ", ".join(f"{v} ({n})" for v, n in vals.items()))
    if d["correlations"]:
        emit([{**r, "support": f"{r['count_in_cluster']}/{r['cluster_compiles']} vs "
                              f"{r['count_overall']}/{r['compiles']}"}
              for r in d["correlations"][:10]], fmt,
             ["attribute", "value", "support", "score", "p_value"], title="correlations")
    if rows:
        from triage.context.correlate import encoding_label

        table = []
        for c in d["configurations"][:30]:
            cfg = c["config"]
            enc = {k.split(".", 1)[1]: v for k, v in cfg.items() if k.startswith("encoding.")}
            row = {"encoding": encoding_label(enc) if enc else ""}
            row.update({k.split(".", 1)[1]: v for k, v in cfg.items() if k.startswith("flags.")})
            row.update({k: c[k] for k in ("crashed", "crashed_other", "succeeded", "failed")})
            table.append(row)
        cols = ["encoding"] + [k for k in ("platform", "preferred_compute", "architecture",
                                           "compression") if any(k in r for r in table)]
        emit(table, fmt, cols + ["crashed", "crashed_other", "succeeded", "failed"],
             headers={"preferred_compute": "compute", "architecture": "arch",
                      "crashed_other": "other", "succeeded": "ok"}, title="configurations")
