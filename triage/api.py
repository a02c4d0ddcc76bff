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
    def show(self, cluster_id: str) -> dict[str, Any]:
        from triage.context.views import cluster_detail

        return cluster_detail(self.store, cluster_id)

    # ------------------------------------------------------------------ reports (issue 6)
    def report(self, **options) -> dict[str, Any]:
        from triage.report.build import build_report

        return build_report(self.store, **options)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Triage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
