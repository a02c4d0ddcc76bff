"""Library API: what the CLI shows, a notebook can load.

    >>> import triage
    >>> t = triage.open("triage.db")          # or None for $TRIAGE_DB / the per-user default
    >>> t.ingest(["~/Library/Logs/DiagnosticReports"])
    >>> t.incidents()                          # pandas DataFrame, one row per report
    >>> t.clusters()                           # pandas DataFrame, one row per cluster
    >>> t.report(since="beta5")                # dict, the `triage report --format json` object

The CLI (``triage.cli``) is a thin layer over these methods. Methods returning lists of dicts
(``*_records``) give exactly the JSON the CLI prints; the DataFrame methods wrap them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

from triage.store.db import Store


class Triage:
    def __init__(self, db: Optional[Path | str] = None, rule_files: Iterable[Path] = ()):
        from triage.cli_app import resolve_db_path

        self.store = Store.open(resolve_db_path(Path(db) if db is not None else None))
        self.rule_files = [Path(p) for p in rule_files]

    # ------------------------------------------------------------------ ingest (issue 2)
    def ingest(self, paths: Iterable[str | Path], *, journals: Iterable[Path] = (),
               dsym_paths: Iterable[Path] = (), progress: bool = False,
               on_problem=None) -> dict[str, Any]:
        """Ingest files/folders/globs/archives; returns the ``ingest --format json`` summary."""
        from triage.ingest import run_ingest

        return run_ingest(self.store, [str(p) for p in paths], journals=list(journals),
                          dsym_paths=list(dsym_paths), rule_files=self.rule_files,
                          progress=progress, on_problem=on_problem)

    def incidents_records(self, **filters) -> list[dict[str, Any]]:
        """The ``incidents --format json`` array."""
        from triage.store.queries import incident_records

        return incident_records(self.store, **filters)

    def incidents(self, **filters):
        import pandas as pd

        return pd.DataFrame(self.incidents_records(**filters))

    def errors_records(self) -> list[dict[str, Any]]:
        from triage.store.queries import error_records

        return error_records(self.store)

    # ------------------------------------------------------------------ clusters (issue 4)
    def clusters_records(self, **filters) -> list[dict[str, Any]]:
        from triage.cluster_views import cluster_records

        return cluster_records(self.store, **filters)

    def clusters(self, **filters):
        import pandas as pd

        return pd.DataFrame(self.clusters_records(**filters))

    # ------------------------------------------------------------------ context (issue 5)
    def original(self, incident_id: str, redact: bool = True) -> bytes:
        """The stored report file's bytes (``triage original``), redacted by default."""
        return original_bytes(self.store, incident_id, redact=redact)

    def show(self, cluster_id: str) -> dict[str, Any]:
        from triage.context.views import cluster_detail

        return cluster_detail(self.store, cluster_id)

    # ------------------------------------------------------------------ reports (issue 6)
    def report(self, **options) -> dict[str, Any]:
        """The ``triage report --format json`` object (see docs/reports.md).

        Options: ``since``/``until`` (OS build, ISO date or release alias), ``process``,
        ``kind`` (default "crash"), ``cluster``, ``platform``, ``with_incidents`` (True: every
        incident id in range; False: omit them), ``with_context`` (encodings/flags/...).
        """
        from triage.report.build import build_report

        return build_report(self.store, **options)

    def report_frame(self, **options):
        """The report's clusters as a DataFrame (one row per cluster, report column names)."""
        import pandas as pd

        return pd.DataFrame(self.report(**options)["clusters"])

    def render_report(self, report: dict[str, Any], fmt: str = "markdown") -> str:
        """Render a report dict as ``table``, ``markdown``, ``json``, ``csv`` or ``html`` text."""
        from triage.report import render_html, render_text

        renderers = {"table": render_text.render_table, "markdown": render_text.render_markdown,
                     "json": render_text.render_json, "csv": render_text.render_csv,
                     "html": render_html.render_html}
        if fmt not in renderers:
            from triage.errors import UserError

            raise UserError(f"format {fmt!r}: choose one of {', '.join(renderers)}")
        return renderers[fmt](report)

    def releases(self):
        """OS builds seen, in build order, with counts and aliases (DataFrame)."""
        import pandas as pd

        from triage.report.builds import releases_records

        return pd.DataFrame(releases_records(self.store))

    def set_alias(self, alias: str, build: str, platform: Optional[str] = None) -> None:
        """Store a release alias (``triage releases alias``)."""
        from triage.report.builds import set_alias

        set_alias(self.store, alias, build, platform)

    def export(self, tracker: str, out_dir: Path | str, **options) -> list[dict[str, Any]]:
        """Write bug-tracker drafts (``triage export``); returns the index of drafts written."""
        from triage.report.export import export_drafts

        return export_drafts(self.store, tracker, out_dir, **options)

    def filed(self, cluster_id: str, url: str) -> dict[str, Any]:
        """Record where a cluster was filed (``triage filed``): later exports write updates."""
        from triage.report.export import record_filed

        return record_filed(self.store, cluster_id, url)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Triage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def original_bytes(store, incident: str, redact: bool = True) -> bytes:
    """The report file behind ``incident`` (id or unique prefix), byte for byte from the store
    (or from its path for reports ingested before the store kept them, if unchanged), with user
    names, home folders, host names, serials and crash reporter keys redacted unless
    ``redact=False``. UserError when the incident or its bytes cannot be found."""
    from triage.errors import UserError
    from triage.frames.stored import original_report, resolve_incident_id

    iid = resolve_incident_id(store.conn, incident)
    if iid is None:
        raise UserError(f"{incident}: no such incident id in the store")
    data, _source = original_report(store.conn, iid)
    if not redact:
        return data
    from triage.report.redact import redactor_for

    text = data.decode("utf-8", errors="surrogateescape")
    return redactor_for(store, [iid]).redact(text).encode("utf-8", "surrogateescape")
