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

import os
from pathlib import Path
from typing import Any, Iterable, Optional

from triage.errors import UserError
from triage.store.db import Store

#: keyword filters of ``incidents_records``/``incidents`` (documented in docs/api.md)
INCIDENT_FILTERS = ("kind", "cluster", "process", "signature", "since", "until", "limit")
#: keyword filters of ``clusters_records``/``clusters`` (documented in docs/api.md)
CLUSTER_FILTERS = ("ids", "signature", "process", "since", "until", "min_count",
                   "include_merged", "limit")
#: options of ``report``/``report_frame`` (documented in docs/api.md)
REPORT_OPTIONS = ("since", "until", "process", "kind", "cluster", "platform", "with_incidents",
                  "with_context")


class Triage:
    def __init__(self, db: Optional[Path | str] = None, rule_files: Iterable[Path] = ()):
        from triage.cli_app import resolve_db_path

        self.store = Store.open(resolve_db_path(Path(db) if db is not None else None))
        self.rule_files = [Path(p) for p in rule_files]

    # ------------------------------------------------------------------ ingest (issue 2)
    def ingest(self, paths: Iterable[str | Path], *, journals: Iterable[Path] = (),
               dsym_paths: Iterable[Path] = (), progress: bool = False,
               on_problem=None) -> dict[str, Any]:
        """Ingest files/folders/globs/archives; returns the ``ingest --format json`` summary.
        ``paths``: a list of paths, or one path (a string is one path, never its characters)."""
        from triage.ingest import run_ingest

        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        return run_ingest(self.store, [str(p) for p in paths], journals=_paths(journals),
                          dsym_paths=_paths(dsym_paths), rule_files=self.rule_files,
                          progress=progress, on_problem=on_problem)

    def incidents_records(self, **filters) -> list[dict[str, Any]]:
        """The ``incidents --format json`` array. Filters (keyword, all optional; see
        docs/api.md): ``kind``, ``cluster``, ``process``, ``signature``, ``since``, ``until``,
        ``limit``. An unknown filter name or a bad value is a :class:`UserError`."""
        check_filter_names("incidents_records", filters, INCIDENT_FILTERS)
        return incident_rows(self.store, **filters)

    def incidents(self, **filters):
        check_filter_names("incidents", filters, INCIDENT_FILTERS)
        rows = self.incidents_records(**filters)
        import pandas as pd

        return pd.DataFrame(rows)

    def errors_records(self) -> list[dict[str, Any]]:
        from triage.store.queries import error_records

        return error_records(self.store)

    # ------------------------------------------------------------------ clusters (issue 4)
    def clusters_records(self, **filters) -> list[dict[str, Any]]:
        """The ``clusters --format json`` array. Filters (keyword, all optional; see
        docs/api.md): ``ids``, ``signature``, ``process``, ``since``, ``until``, ``min_count``,
        ``include_merged``, ``limit``. An unknown filter name or a bad value is a
        :class:`UserError`."""
        check_filter_names("clusters_records", filters, CLUSTER_FILTERS)
        return cluster_rows(self.store, **filters)

    def clusters(self, **filters):
        check_filter_names("clusters", filters, CLUSTER_FILTERS)
        rows = self.clusters_records(**filters)
        import pandas as pd

        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ context (issue 5)
    def original(self, incident_id: str, redact: bool = True) -> bytes:
        """The stored report file's bytes (``triage original``), redacted by default."""
        return original_bytes(self.store, _id_arg("original", incident_id, "incident"),
                              redact=redact)

    def show(self, cluster_id: str) -> dict[str, Any]:
        """The ``triage show CLUSTER_ID --format json`` object."""
        from triage.context.views import cluster_detail

        return cluster_detail(self.store, _id_arg("show", cluster_id, "cluster"))

    # ------------------------------------------------------------------ reports (issue 6)
    def report(self, **options) -> dict[str, Any]:
        """The ``triage report --format json`` object (see docs/reports.md).

        Options: ``since``/``until`` (OS build, ISO date or release alias), ``process``,
        ``kind`` (default "crash"), ``cluster``, ``platform``, ``with_incidents`` (True: every
        incident id in range; False: omit them), ``with_context`` (encodings/flags/...).
        """
        from triage.report.build import build_report

        check_filter_names("report", options, REPORT_OPTIONS)
        kind = options.get("kind", "crash")
        check_kind(kind)
        check_report_kind(self.store, kind)
        from triage.report.builds import Bound

        for name in ("since", "until"):
            if name in options and not isinstance(options[name], Bound):
                options[name] = _bound_text(name, options[name])
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

    def releases_records(self, kind: Optional[str] = None) -> list[dict[str, Any]]:
        """The ``triage releases --format json`` array: OS builds seen (``seen: true``) and
        alias targets with no report yet (``seen: false``), in build order."""
        from triage.report.builds import releases_records

        check_kind(kind)
        return releases_records(self.store, kind=kind)

    def releases(self, kind: Optional[str] = None):
        """:meth:`releases_records` as a DataFrame (same columns)."""
        rows = self.releases_records(kind=kind)
        import pandas as pd

        return pd.DataFrame(rows)

    def set_alias(self, alias: str, build: str, platform: Optional[str] = None) -> None:
        """Store a release alias (``triage releases alias``)."""
        from triage.report.builds import set_alias

        set_alias(self.store, alias, build, platform)

    def export(self, tracker: str, out_dir: Path | str, **options) -> list[dict[str, Any]]:
        """Write bug-tracker drafts (``triage export``); returns the index of drafts written.
        ``options``: the keyword arguments of :func:`triage.report.export.export_drafts`; an
        unknown name is a :class:`UserError`."""
        import inspect

        from triage.report.export import export_drafts

        accepted = [n for n, p in inspect.signature(export_drafts).parameters.items()
                    if p.kind is p.KEYWORD_ONLY]
        check_filter_names("export", options, accepted, "option")
        return export_drafts(self.store, tracker, out_dir, **options)

    def filed(self, cluster_id: str, url: str) -> dict[str, Any]:
        """Record where a cluster was filed (``triage filed``): later exports write updates."""
        from triage.report.export import record_filed

        cluster_id = _id_arg("filed", cluster_id, "cluster")
        if not isinstance(url, str):
            raise UserError(f"filed: the URL must be a string, not {type(url).__name__}")
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


# ----------------------------------------------------------------------------- shared checks
# The CLI commands call these too (``option`` is then the flag, e.g. "--kind"), so the library
# and the CLI refuse the same inputs with the same one-line UserError.

def _label(option: str, value: Any) -> str:
    return f"{option} {value}" if option.startswith("--") else f"{option}={value!r}"


def _paths(value) -> list:
    """One path or a list of paths, as a list (a string is one path)."""
    return [value] if isinstance(value, (str, os.PathLike)) else list(value)


def check_filter_names(method: str, given: Iterable[str], accepted: Iterable[str],
                       what: str = "filter") -> None:
    """UserError naming the first keyword not in ``accepted`` (never silently ignored)."""
    accepted = tuple(accepted)
    for name in given:
        if name not in accepted:
            raise UserError(f"{method}: unknown {what} {name!r} (accepted: "
                            f"{', '.join(accepted)})")


def check_kind(kind: Optional[str], option: str = "kind") -> None:
    """An unknown report kind is an error (it used to give an empty result)."""
    from triage.records import KINDS

    if kind is not None and kind not in KINDS:
        raise UserError(f"{_label(option, kind)}: unknown kind (use one of {', '.join(KINDS)})")


def check_report_kind(store, kind: Optional[str], option: str = "kind") -> None:
    """``report`` of kind hang|jetsam|panic|resource: only crashes are clustered (docs/
    clustering.md), so such a report would always be empty; say so and point at the listing
    of those reports (unless the store does hold clustered ones)."""
    if kind is None or kind == "crash":
        return
    if store.conn.execute("SELECT 1 FROM incidents WHERE kind=? AND cluster_id IS NOT NULL "
                          "LIMIT 1", (kind,)).fetchone():
        return
    where = f"`triage incidents --kind {kind}`" if option.startswith("--") else \
        f"t.incidents_records(kind={kind!r})"
    raise UserError(f"{_label(option, kind)}: `triage report` covers crashes only ({kind} "
                    f"reports are not clustered into bugs); list them with {where}")


def _id_arg(method: str, value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        got = "nothing" if value is None or value == "" else repr(value)
        article = "an" if what[0] in "aeiou" else "a"
        raise UserError(f"{method}: give {article} {what} id (got {got}; see `triage {what}s`)")
    return value.strip()


def _bound_text(name: str, value: Any) -> Optional[str]:
    """``since``/``until`` as the CLI takes them: an OS build, an ISO date/time or a release
    alias (a ``datetime.date``/``datetime`` is taken as its ISO form)."""
    import datetime as dt

    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    raise UserError(f"{name}={value!r}: expected an OS build (26A5353q), an ISO date/time "
                    "(2026-09-01) or a release alias (beta5)")


def _limit_arg(name: str, value: Any, minimum: int) -> Optional[int]:
    if value is None and name == "limit":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{name}={value!r}: expected a whole number >= {minimum}")
    return value


def _str_arg(name: str, value: Any) -> Optional[str]:
    if value is not None and not isinstance(value, str):
        raise UserError(f"{name}={value!r}: expected a string")
    return value


def range_incident_ids(store, since: Any = None, until: Any = None,
                       kind: Optional[str] = None) -> Optional[set[str]]:
    """Ids of the reports inside ``since``/``until`` (None when neither is given), with the
    bound rules of ``triage report`` (docs/reports.md): each bound an OS build, an ISO
    date/time (a plain date: start of the day for ``since``, its end for ``until``) or a release
    alias, resolved by :func:`triage.report.builds.resolve_bound`; a build bound compares
    builds of the same platform (carried over to other platforms as the report does);
    reports without a capture time (time bound) or an OS build (build bound) are outside."""
    from triage.report.build import Span, _check_order, _map_platforms, _position
    from triage.report.builds import resolve_bound

    sb = resolve_bound(_bound_text("since", since), store)
    ub = resolve_bound(_bound_text("until", until), store, end=True)
    if sb is None and ub is None:
        return None
    _check_order(sb, ub)
    kind_sql, kparams = ("WHERE kind = ?", [kind]) if kind else ("", [])
    if (sb is not None and sb.kind == "build") or (ub is not None and ub.kind == "build"):
        spans = [Span(b, p, t0, t1, n, 0) for b, p, t0, t1, n in store.conn.execute(
            "SELECT os_build, platform, min(captured_ts), max(captured_ts), count(*) "
            f"FROM incidents {kind_sql}{' AND' if kind_sql else 'WHERE'} os_build IS NOT NULL "
            "GROUP BY os_build, platform", kparams)]
        scratch: dict = {}
        sb = _map_platforms(sb, spans, True, scratch, "since_builds")
        ub = _map_platforms(ub, spans, False, scratch, "until_builds")
    out: set[str] = set()
    for iid, build, plat, ts in store.conn.execute(
            f"SELECT incident_id, os_build, platform, captured_ts FROM incidents {kind_sql}",
            kparams):
        ok = True
        for b, is_since in ((sb, True), (ub, False)):
            if b is None or not ok:
                continue
            if b.kind == "time":
                ok = ts is not None and (ts >= b.ts if is_since else ts <= b.ts)
            else:
                ok = _position(build, plat, 0, b, is_since) == 0
        if ok:
            out.add(iid)
    return out


def incident_rows(store, kind: Optional[str] = None, cluster: Optional[str] = None,
                  process: Optional[str] = None, signature: Optional[str] = None,
                  since: Any = None, until: Any = None,
                  limit: Optional[int] = None) -> list[dict[str, Any]]:
    """``triage incidents --format json`` (and ``Triage.incidents_records``): the filters
    checked (UserError), ``cluster`` resolved like ``show`` (an unknown id is an error)."""
    from triage.store.queries import incident_records

    check_kind(kind)
    for name, v in (("cluster", cluster), ("process", process), ("signature", signature)):
        _str_arg(name, v)
    limit = _limit_arg("limit", limit, 1)
    if cluster is not None:
        from triage.context.views import resolve_cluster_id

        cluster = resolve_cluster_id(store, _id_arg("incidents", cluster, "cluster"))
    ids = range_incident_ids(store, since, until, kind)
    return incident_records(store, kind=kind, cluster=cluster, process=process,
                            signature=signature, limit=limit,
                            incident_ids=None if ids is None else sorted(ids))


def cluster_rows(store, ids: Any = None, signature: Optional[str] = None,
                 process: Optional[str] = None, since: Any = None, until: Any = None,
                 min_count: int = 0, include_merged: bool = False,
                 limit: Optional[int] = None) -> list[dict[str, Any]]:
    """``triage clusters --format json`` (and ``Triage.clusters_records``), filters checked."""
    from triage.cluster_views import cluster_records

    if isinstance(ids, str):
        ids = [ids]
    if ids is not None:
        if not isinstance(ids, (list, tuple, set)) or \
                not all(isinstance(i, str) and i.strip() for i in ids):
            raise UserError(f"ids={ids!r}: expected a cluster id or a list of cluster ids")
        ids = [i.strip() for i in ids] or None
    _str_arg("signature", signature)
    _str_arg("process", process)
    min_count = _limit_arg("min_count", min_count, 0)
    limit = _limit_arg("limit", limit, 1)
    if not isinstance(include_merged, bool):
        raise UserError(f"include_merged={include_merged!r}: expected True or False")
    return cluster_records(store, ids=ids, signature=signature, process=process,
                           min_count=min_count, include_merged=include_merged, limit=limit,
                           incident_ids=range_incident_ids(store, since, until))
