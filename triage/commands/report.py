"""CLI commands: report, releases (+ alias), export, filed (see docs/reports.md)."""
from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from triage.cli_app import (app, emit, open_existing_store, open_store, out,
                            refuse_store_path, warn)
from triage.errors import UserError


class ReportFormat(str, Enum):
    table = "table"
    markdown = "markdown"
    json = "json"
    csv = "csv"
    html = "html"


class ListFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class Tracker(str, Enum):
    github = "github"
    jira = "jira"
    markdown = "markdown"


SINCE_HELP = ("OS build (26A5353q), ISO date/time (2026-09-01), or release alias (beta5) "
              "from triage.toml \\[releases] or `triage releases alias`.")


def _write_output(text: str, output: Optional[Path]) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.expanduser().write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{output}: cannot write: {exc.strerror or exc}")
    warn(f"wrote {output}")


def _check_kind(kind: Optional[str]) -> None:
    """An unknown --kind is an error (shared with the library API: ``triage.api.check_kind``)."""
    from triage.api import check_kind

    check_kind(kind, "--kind")


def _check_clustered_kind(store, kind: Optional[str]) -> None:
    """``report --kind hang|...``: shared with ``Triage.report`` (``triage.api``)."""
    from triage.api import check_report_kind

    check_report_kind(store, kind, "--kind")


@app.command("report")
def report_cmd(
    since: Optional[str] = typer.Option(None, "--since", help=SINCE_HELP),
    until: Optional[str] = typer.Option(None, "--until", help="Upper bound; same forms as --since."),
    process: Optional[str] = typer.Option(None, "--process", help="Only crashes of this process."),
    kind: str = typer.Option("crash", "--kind", help="Report kind: crash (only crashes are "
                             "clustered; list other kinds with `triage incidents --kind K`)."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="Only this cluster id."),
    platform: Optional[str] = typer.Option(None, "--platform",
                                           help="Only this platform (macOS, iOS); also picks "
                                                "the per-platform alias."),
    fmt: ReportFormat = typer.Option(ReportFormat.table, "--format", "-f",
                                     help="table | markdown | json | csv | html"),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Write to FILE instead of standard output."),
) -> None:
    """What is new, regressed, ongoing or gone since an OS build, per cluster."""
    from triage.report.build import build_report

    _check_kind(kind)
    if output is not None:
        refuse_store_path(output, "--output")
    store = open_existing_store()
    _check_clustered_kind(store, kind)
    f = fmt.value
    # Incident ids: all of them in JSON/CSV/HTML (the page shows the first 200 of each cluster);
    # not needed for table/markdown.
    with_inc = f in ("json", "csv", "html")
    rep = build_report(store, since=since, until=until, process=process, kind=kind,
                       cluster=cluster, platform=platform, with_incidents=with_inc,
                       with_context=True)
    if f == "json":
        from triage.report.render_text import render_json as r
    elif f == "csv":
        from triage.report.render_text import render_csv as r
    elif f == "markdown":
        from triage.report.render_text import render_markdown as r
    elif f == "html":
        from triage.report.render_html import render_html as r
    else:
        from triage.report.render_text import render_table as r
    _write_output(r(rep), output)


releases_app = typer.Typer(help="OS builds seen, in build order, with counts and aliases.",
                           no_args_is_help=False, invoke_without_command=True)
app.add_typer(releases_app, name="releases")


@releases_app.callback(invoke_without_command=True)
def releases_cmd(
    ctx: typer.Context,
    fmt: ListFormat = typer.Option(ListFormat.table, "--format", "-f", help="table | json | csv"),
    kind: Optional[str] = typer.Option(None, "--kind", help="Count only this report kind."),
) -> None:
    """List the OS builds seen, in build order, with counts and aliases."""
    if ctx.invoked_subcommand is not None:
        return
    from triage.report.builds import releases_records

    _check_kind(kind)
    store = open_existing_store()
    # the same array as Triage.releases_records(): seen builds and alias-only (seen: false) rows
    rows = releases_records(store, kind=kind)
    emit(rows, fmt, ["build", "count", "platforms", "aliases", "first_seen", "last_seen"],
         title="OS builds (oldest first)")


@releases_app.command("alias")
def releases_alias_cmd(
    alias: str = typer.Argument(..., help="Alias name, e.g. beta5, rc, 26.1b2."),
    build: str = typer.Argument(..., help="Apple build number, e.g. 26A5353q."),
    platform: Optional[str] = typer.Option(None, "--platform",
                                           help="Only for this platform (macOS, iOS, ...)."),
) -> None:
    """Store a release alias (beta5 -> 26A5353q), optionally per platform."""
    from triage.report.builds import set_alias

    store = open_store()
    set_alias(store, alias, build, platform)
    out(f"{alias}{' (' + platform + ')' if platform else ''} -> {build}")


#: names ``export`` writes into ``--out`` (index.json, C-ID.json/.md/.comment.*/.report.*)
_EXPORT_FILES = r"index\.json|C-.*\.(json|md|ips|crash|txt)"


@app.command("export")
def export_cmd(
    tracker: Tracker = typer.Option(..., "--tracker", help="github | jira | markdown"),
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the drafts into."),
    since: Optional[str] = typer.Option(None, "--since", help=SINCE_HELP),
    until: Optional[str] = typer.Option(None, "--until", help="Upper bound; same forms as --since."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="Only this cluster id."),
    process: Optional[str] = typer.Option(None, "--process", help="Only crashes of this process."),
    platform: Optional[str] = typer.Option(None, "--platform", help="Only this platform."),
    no_redact: bool = typer.Option(False, "--no-redact",
                                   help="Keep user names, home folders, host names, serial "
                                        "numbers and crash reporter keys."),
    project: Optional[str] = typer.Option(None, "--project",
                                          help="Jira project key (else [export] jira_project "
                                               "in triage.toml)."),
    label: list[str] = typer.Option([], "--label", help="Extra label (repeatable); default "
                                                        "labels: triage, crash. Not empty; "
                                                        "no spaces for Jira."),
    attach: bool = typer.Option(True, "--attach/--no-attach",
                                help="Write the newest crash report of each new draft's cluster "
                                     "next to it (CID.report.ips, redacted like the draft)."),
    fmt: ListFormat = typer.Option(ListFormat.table, "--format", "-f", help="table | json | csv"),
) -> None:
    """Write one bug-tracker draft per cluster (an update draft for clusters already filed)."""
    from triage.report.export import export_drafts

    # the folder itself, or a store inside it named like a file export writes there
    refuse_store_path(out_dir, "--out", files_inside=_EXPORT_FILES)
    store = open_existing_store()
    labels = ["triage", "crash"] + list(label)
    removed: list[str] = []
    index = export_drafts(store, tracker.value, out_dir, since=since, until=until,
                          cluster=cluster, process=process, platform=platform,
                          redact=not no_redact, project=project, labels=labels,
                          attach=attach, removed=removed)
    if removed:
        shown = ", ".join(removed[:6]) + (f", ... ({len(removed) - 6} more)"
                                          if len(removed) > 6 else "")
        warn(f"removed {len(removed)} stale draft file(s) of earlier exports from {out_dir}: "
             f"{shown}")
    from rich.markup import escape

    rows = [{**e, "title": escape(e["title"]) if fmt.value == "table" else e["title"],
             "files": [Path(f).name for f in e.get("files", [])]} for e in index]
    emit(rows, fmt, ["id", "kind", "status", "title", "files"], json_obj=index,
         title=f"{len(index)} draft(s) in {out_dir}")


@app.command("filed")
def filed_cmd(
    cluster: Optional[str] = typer.Argument(None, help="Cluster id (omit to list)."),
    url: Optional[str] = typer.Argument(None, help="Where it was filed (issue URL or key)."),
    fmt: ListFormat = typer.Option(ListFormat.table, "--format", "-f",
                                   help="table | json | csv (with CLUSTER URL: the recorded "
                                        "{id, url, filed_at, also_filed} object as JSON)"),
) -> None:
    """Record where a cluster was filed (later exports write updates); no arguments: list."""
    from triage.report.export import filed_records, record_filed

    if cluster is None:      # listing only reads
        rows = filed_records(open_existing_store())
        emit(rows, fmt, ["id", "cluster", "url", "filed_at"], title="Filed clusters")
        return
    if url is None:
        raise UserError("filed: give the cluster id and the URL (triage filed C-3f9a2c URL)")
    store = open_existing_store(f"{cluster}: no such cluster")   # never creates a store
    try:
        r = record_filed(store, cluster, url)
    finally:
        store.close()
    if fmt == ListFormat.json:      # the object Triage.filed() returns
        from triage.cli_app import dumps_json

        out(dumps_json(r))
    elif fmt == ListFormat.csv:
        emit([r], fmt, ["id", "url", "filed_at"])
    else:
        out(f"{r['id']} filed at {r['url']}")
    for o in r.get("also_filed") or []:
        warn(f"note: {o['id']} (merged into {r['id']}) was filed earlier at {o['url']}; "
             f"exports keep updating that earliest-filed issue (see docs/reports.md)")
