"""CLI commands: clusters, recluster, merge, split, eval (see docs/clustering.md)."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from triage.cli_app import (OutputFormat, app, checked_rule_files, dumps_json, emit,
                            open_existing_store, out, rule_files)

_COLUMNS = ["id", "count", "signature", "first_seen", "last_seen", "processes"]
_CSV_COLUMNS = ["id", "count", "signature", "exception", "first_seen", "last_seen", "processes",
                "os_builds", "stacks", "frames", "incidents", "created_at", "merged_into"]


def _short_time(iso: Optional[str]) -> Optional[str]:
    return iso[:16].replace("T", " ") if iso else iso


class TableJson(str, Enum):
    table = "table"
    json = "json"


@app.command()
def clusters(
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f",
                                     help="table, json (full records) or csv."),
    ids: list[str] = typer.Option([], "--id", help="Only this cluster (a retired id shows the "
                                  "cluster it was merged into); repeatable."),
    signature: Optional[str] = typer.Option(None, "--signature",
                                            help="Only clusters with a signature containing TEXT."),
    process: Optional[str] = typer.Option(None, "--process", help="Only crashes of PROCESS."),
    min_count: int = typer.Option(0, "--min-count", min=0,
                                  help="Only clusters with at least N crashes."),
    include_merged: bool = typer.Option(False, "--all", help="Also list retired ids "
                                        "(merged into another cluster), with merged_into."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1,
                                        help="At most N clusters (largest first)."),
) -> None:
    """List clusters (distinct bugs), largest first."""
    from triage.api import cluster_rows

    store = open_existing_store()
    try:   # the same function as Triage.clusters_records()
        rows = cluster_rows(store, ids=ids or None, signature=signature, process=process,
                               min_count=min_count, include_merged=include_merged, limit=limit)
    finally:
        store.close()
    cols = _CSV_COLUMNS if fmt == OutputFormat.csv else _COLUMNS
    if fmt == OutputFormat.table:   # compact times for the terminal; json/csv keep them whole
        rows = [{**r, "first_seen": _short_time(r["first_seen"]),
                 "last_seen": _short_time(r["last_seen"])} for r in rows]
    emit(rows, fmt, cols, title=None if fmt != OutputFormat.table else f"{len(rows)} clusters",
         headers={"first_seen": "first seen", "last_seen": "last seen"})


def _diff_lines(d: dict) -> list[str]:
    head = "would change" if d["dry_run"] else "reclustered"
    lines = [f"{head}: {d['incidents']} crashes, {d['signatures_changed']} signatures changed, "
             f"stacks {d['stacks_before']} -> {d['stacks_after']}, "
             f"clusters {d['clusters_before']} -> {d['clusters_after']} "
             f"({d['unchanged']} unchanged)"]
    for m in d["merged"]:
        lines.append(f"merged: {m['id']} -> {m['into']}")
    for sp in d["split"]:
        lines.append(f"split: {sp['id']} -> {', '.join(sp['into'])}")
    for n in d["new"]:
        lines.append(f"new: {n}")
    if d["dry_run"]:
        lines.append("(dry run: nothing written)")
    return lines


@app.command()
def recluster(
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would merge or split "
                                 "without writing."),
    full: bool = typer.Option(False, "--full", help="Re-cluster every stack from scratch "
                              "(e.g. after changing [cluster] settings); ids are still mapped."),
    fmt: TableJson = typer.Option(TableJson.table, "--format", "-f", help="table or json."),
) -> None:
    """Recompute normalization and signatures of every stored crash (after a rule change),
    re-cluster, and map old cluster ids onto the new clusters (ids never silently change)."""
    from triage.cluster import recluster as run

    files = checked_rule_files()    # a bad rule file: refused before the store is opened
    store = open_existing_store()   # nothing to recluster in an empty store: never create one
    try:
        diff = run(store, None, files, dry_run=dry_run, full=full).to_dict()
    finally:
        store.close()
    if fmt == TableJson.json:
        out(dumps_json(diff))
    else:
        out("\n".join(_diff_lines(diff)))


@app.command()
def merge(
    keep: str = typer.Argument(..., metavar="A", help="Cluster that stays."),
    other: str = typer.Argument(..., metavar="B", help="Cluster folded into A."),
    fmt: TableJson = typer.Option(TableJson.table, "--format", "-f", help="table or json."),
) -> None:
    """Merge cluster B into A (persisted; later ingests and reclusters respect it)."""
    from triage.cluster import merge as run

    store = open_existing_store(f"{keep}: no such cluster")
    try:
        res = run(store, keep, other)
    finally:
        store.close()
    if fmt == TableJson.json:
        out(dumps_json(res))
    else:
        out(f"merged {res['merged']} into {res['id']} ({res['count']} crashes)")


@app.command()
def split(
    cluster_id: str = typer.Argument(..., metavar="A", help="Cluster to split."),
    signature: Optional[str] = typer.Option(None, "--signature", help="Move the crashes with "
                                            "this signature (full text or its frame part)."),
    incidents: list[str] = typer.Option([], "--incident", help="Move this incident; repeatable."),
    fmt: TableJson = typer.Option(TableJson.table, "--format", "-f", help="table or json."),
) -> None:
    """Move matching crashes of cluster A to a new cluster (persisted)."""
    from triage.cluster import split as run
    from triage.errors import UserError

    if bool(signature) == bool(incidents):
        raise UserError("split: give exactly one of --signature SIG or --incident ID...")
    store = open_existing_store(f"{cluster_id}: no such cluster")
    try:
        res = run(store, cluster_id, signature=signature, incidents=incidents or None)
    finally:
        store.close()
    if fmt == TableJson.json:
        out(dumps_json(res))
    else:
        out(f"moved {res['moved']} crashes of {res['id']} to new cluster {res['new_id']}")


class Split(str, Enum):
    holdout = "holdout"
    tune = "tune"
    all = "all"


@app.command("eval")
def eval_(
    labels: Path = typer.Argument(..., metavar="LABELS.json",
                                  help="Labels file: {version, labels: {incident: bug}, split}."),
    reports: Optional[Path] = typer.Option(None, "--reports", help="Labelled reports folder "
                                           "(default: reports/ beside LABELS.json)."),
    split_: Split = typer.Option(Split.holdout, "--split", help="Which labelled part to score."),
    current_store: bool = typer.Option(False, "--current-store", help="Score the current store "
                                       "instead of ingesting the reports into a temporary one."),
    siggen: bool = typer.Option(True, "--siggen/--no-siggen", help="Also score Mozilla siggen "
                                "exact-signature grouping of the same reports."),
    details: bool = typer.Option(False, "--details", help="List over-merged clusters and "
                                 "over-split bugs (json)."),
    fmt: TableJson = typer.Option(TableJson.table, "--format", "-f", help="table or json."),
) -> None:
    """Score the clustering of a labelled report set (pairwise and B-cubed P/R/F1), side by
    side with siggen."""
    from triage.evaluate import evaluate, table_rows

    store = open_existing_store() if current_store else None
    try:
        res = evaluate(labels, reports=reports, split=split_.value, store=store,
                       rule_files=rule_files(), with_siggen=siggen, details=details)
    finally:
        if store is not None:
            store.close()
    if fmt == TableJson.json:
        out(dumps_json(res))
        return
    cols = ["metric", "triage"] + (["siggen"] if "siggen" in res else [])
    emit(table_rows(res), "table", cols,
         title=f"{res['split']}: {res['reports']} labelled crashes, {res['true_bugs']} true bugs"
         + (f" ({res['missing']} labelled ids not found)" if res.get("missing") else ""))
