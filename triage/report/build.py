"""Build the report: per cluster status, counts, builds, processes, frames and context.

``build_report(store, since=..., until=...)`` returns the ``triage report --format json`` object
(contract in docs/reports.md). It is built from a handful of indexed SQL aggregate queries
(``GROUP BY cluster_id, os_build, platform, process, hardware_model`` over one covering index)
whose few thousand result groups are reduced in plain Python (importing pandas alone would cost
0.4-0.5 s of the 2 s budget), plus one representative incident per cluster for the frames: the
cost grows with the number of clusters x builds x processes, not with the number of reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from triage.errors import UserError
from triage.report.builds import Bound, bound_json, build_key, iso_ts, resolve_bound

STATUS_ORDER = {"new": 0, "regressed": 1, "ongoing": 2, "gone": 3}
TOP_FRAMES = 10

# Created lazily too (stores made before these indexes were added to schema.sql).
REPORT_INDEXES = (
    "CREATE INDEX IF NOT EXISTS incidents_report ON incidents"
    "(kind, cluster_id, os_build, platform, process, hardware_model, captured_ts, incident_id)",
    "CREATE INDEX IF NOT EXISTS incidents_compile ON incidents"
    "(kind, cluster_id, compile_id, os_build) WHERE compile_id IS NOT NULL",
)


def ensure_indexes(store) -> None:
    """Create the report indexes if the store predates them (ignored on a read-only store)."""
    import sqlite3

    have = {r[0] for r in store.conn.execute(
        "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='incidents'")}
    if {"incidents_report", "incidents_compile"} <= have:
        return
    try:
        with store.transaction() as conn:
            for sql in REPORT_INDEXES:
                conn.execute(sql)
    except sqlite3.OperationalError:
        pass


def _now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def resolve_cluster_id(store, cluster: str) -> str:
    """The cluster an id means now (``merged_into`` followed, unless a later split moved the
    retired id's crashes on: see :func:`triage.cluster_views.resolve_current`); UserError for
    an id the store never had."""
    from triage.cluster_views import resolve_current

    cid = resolve_current(store, cluster)
    if cid is None:
        raise UserError(f"unknown cluster {cluster!r} (see `triage clusters`)")
    return cid


def _filters(kind, process, platform, cluster_ids) -> tuple[str, list]:
    where = ["cluster_id IS NOT NULL"]
    params: list = []
    if kind:
        where.insert(0, "kind = ?")
        params.insert(0, kind)
    if cluster_ids is not None:
        where.append(f"cluster_id IN ({','.join('?' * len(cluster_ids))})")
        params.extend(cluster_ids)
    if process:
        where.append("process = ?")
        params.append(process)
    if platform:
        where.append("platform = ?")
        params.append(platform)
    return " AND ".join(where), params


BEYOND = "\uffff beyond"      # per-platform bound above every build of that platform
BEFORE = "\uffff before"      # per-platform bound below every build of that platform


@dataclass(slots=True)
class Span:
    """Reports of one (OS build, platform) among all reports of the kind (``--cluster``,
    ``--process`` and ``--platform`` aside): what bounds are mapped and statuses measured on."""

    build: str
    platform: str | None
    t0: float | None          # first capture time (all reports)
    t1: float | None          # last capture time (all reports)
    n: int                    # reports
    n_after: int              # reports after a time --until


def _spans_from_raw(raw: list) -> list[Span]:
    """Spans from the report's own aggregate (when it saw every report of the kind)."""
    acc: dict[tuple, Span] = {}
    for _cid, b, p, _proc, _hw, n, t0, t1, _nb, na, *_ in raw:
        if b is None:
            continue
        sp = acc.get((b, p))
        if sp is None:
            acc[(b, p)] = Span(b, p, t0, t1, n, na or 0)
            continue
        if t0 is not None and (sp.t0 is None or t0 < sp.t0):
            sp.t0 = t0
        if t1 is not None and (sp.t1 is None or t1 > sp.t1):
            sp.t1 = t1
        sp.n += n
        sp.n_after += na or 0
    return list(acc.values())


def _spans_scan(store, kind, u_ts) -> list[Span]:
    """One scan of every clustered report of the kind, per (build, platform)."""
    where, params = _filters(kind, None, None, None)
    return [Span(b, p, t0, t1, n, na or 0) for b, p, t0, t1, n, na in store.conn.execute(
        "SELECT os_build, platform, min(captured_ts), max(captured_ts), count(*), "
        f"sum(captured_ts > ?) FROM incidents WHERE {where} AND os_build IS NOT NULL "
        "GROUP BY os_build, platform",
        [u_ts if u_ts is not None else float("inf")] + params)]


def _map_platforms(bound: Bound | None, spans: list[Span], is_since: bool, report: dict,
                   key: str) -> Bound | None:
    """Carry a build bound over to the platforms it does not name.

    Build numbers of different platforms do not compare (macOS ``26A5353q`` vs iOS
    ``23A5318c``). When the bound's build (given directly, or by an alias without a
    ``[releases.<platform>]`` entry for Q) was seen on some platform but never on platform Q,
    the bound for Q becomes, for ``--since``, Q's first build whose first report is not earlier
    than the bound build's first report (12 h tolerance); for ``--until``, Q's newest build whose
    first report is not later than the bound build's last report. ``spans`` cover every report
    of the kind, so ``--cluster``/``--process``/``--platform`` filter what is counted, never the
    mapping. The mapping used is returned in the report as ``since_builds`` / ``until_builds``.
    """
    if bound is None or bound.kind != "build":
        return bound
    by_pb = {((sp.platform or ""), sp.build): sp for sp in spans if sp.t0 is not None}
    generic = bound.builds.get("")
    on_generic = {p for (p, b) in by_pb if generic is not None and b == generic}
    if generic is not None and not on_generic:
        return bound                        # bound build never seen: compare numbers as given
    # the bound's builds that were seen, on the platforms they apply to
    seen = [by_pb[(p, b)] for (p, b) in by_pb
            if (p in bound.builds and bound.builds[p] == b) or (p in on_generic and b == generic)]
    if not seen:
        return bound                        # an alias whose builds were never seen
    t_first = min(sp.t0 for sp in seen)
    t_last = max(sp.t1 if sp.t1 is not None else sp.t0 for sp in seen)
    platforms = {p for (p, _b) in by_pb}
    mapped = dict(bound.builds)
    added = {}
    for q in sorted(platforms - on_generic - (set(bound.builds) - {""})):
        if q == "" and generic is not None:
            continue                        # platform unknown: the generic build applies
        builds_q = sorted(((b, sp) for (p, b), sp in by_pb.items() if p == q),
                          key=lambda bs: build_key(bs[0]))
        if is_since:
            cand = [b for b, sp in builds_q if sp.t0 >= t_first - 12 * 3600]
            target = cand[0] if cand else BEYOND
        else:
            cand = [b for b, sp in builds_q if sp.t0 <= t_last]
            target = cand[-1] if cand else BEFORE
        mapped[q] = target                  # q "" (platform unknown) only without a generic
        added[q or "unknown"] = None if target in (BEYOND, BEFORE) else target
    if not added:
        return bound
    shown = {p or "unknown": generic for p in on_generic}
    shown.update({p: b for p, b in bound.builds.items() if p})
    shown.update(added)
    report[key] = dict(sorted(shown.items()))
    return Bound(bound.text, bound.kind, ts=bound.ts, builds=mapped)


def _newest_builds(spans: list[Span], ub: Bound | None, u_ts: float | None
                   ) -> dict[str | None, str]:
    """Per platform, the newest build with a report not after ``--until``."""
    out: dict[str | None, str] = {}
    keys: dict[str | None, tuple] = {}
    for sp in spans:
        if u_ts is not None and sp.n - sp.n_after <= 0:
            continue                        # every report of that build is after --until
        if ub is not None and ub.kind == "build" and \
                _position(sp.build, sp.platform, 0, ub, False) == 1:
            continue
        k = build_key(sp.build)
        if sp.platform not in keys or k > keys[sp.platform]:
            out[sp.platform], keys[sp.platform] = sp.build, k
    return out


def _position(build: str | None, plat: str | None, tpos: int | None,
              bound: Bound | None, is_since: bool) -> int | None:
    """-1 before ``since`` / +1 after ``until`` / 0 inside / None unknown (no build)."""
    if bound is None:
        return 0
    if bound.kind == "time":
        if tpos is None or tpos == 9:       # 9: no capture time
            return None
        return tpos
    target = bound.build_for(plat)
    if target is None or build is None:
        return None
    if target == BEYOND:                   # no build of this platform reaches the bound
        return -1 if is_since else 0
    if target == BEFORE:
        return 0 if is_since else 1
    k, t = build_key(build), build_key(target)
    if is_since:
        return -1 if k < t else 0
    return 1 if k > t else 0


def _check_order(sb: Bound | None, ub: Bound | None) -> None:
    """An inverted range is a usage error (it made negative in-range counts)."""
    if sb is None or ub is None or sb.kind != ub.kind:
        return
    if sb.kind == "time":
        bad = sb.ts is not None and ub.ts is not None and sb.ts > ub.ts
    else:
        bad = any(p in ub.builds and build_key(b) > build_key(ub.builds[p])
                  for p, b in sb.builds.items())
    if bad:
        raise UserError(f"--since {sb.text} is after --until {ub.text} (empty range)")


def build_report(store, since: str | Bound | None = None, until: str | Bound | None = None,
                 process: str | None = None, kind: str | None = "crash",
                 cluster: str | None = None, platform: str | None = None, *,
                 with_incidents: bool | int = True, with_context: bool = True,
                 top_frames: int = TOP_FRAMES) -> dict[str, Any]:
    """The report object: ``{"since", "until", "generated_at", "clusters": [...]}``.

    ``since``/``until``: an OS build, an ISO date/time, or a release alias (see
    :func:`triage.report.builds.resolve_bound`). ``with_incidents``: include every incident id
    in range (True), none (False: ``incidents`` is then omitted), or at most N per cluster.
    ``with_context``: add ``encodings``/``flags``/``configurations``/``correlations``/``finding``
    from ``triage.context`` (empty when that stage is unavailable).
    """
    ensure_indexes(store)
    sb = since if isinstance(since, Bound) or since is None else \
        resolve_bound(since, store, platform=platform)
    ub = until if isinstance(until, Bound) or until is None else \
        resolve_bound(until, store, end=True, platform=platform)
    _check_order(sb, ub)
    cluster_ids = [resolve_cluster_id(store, cluster)] if cluster else None
    where, params = _filters(kind, process, platform, cluster_ids)

    # One scan of the covering index, grouped in index order (no temp b-tree). Time bounds are
    # conditional sums, so the groups stay (cluster, build, platform, process, hardware): a few
    # thousand groups for a million reports. Everything below works on these groups.
    s_ts = sb.ts if sb is not None and sb.kind == "time" else None
    u_ts = ub.ts if ub is not None and ub.kind == "time" else None
    # t0/t1: first/last capture time of the group (for build time spans); vt0/vt1: the same
    # among the reports not after a time --until (what the report shows as first/last seen)
    u_arg = u_ts if u_ts is not None else float("inf")
    sql = ("SELECT cluster_id, os_build, platform, process, hardware_model, count(*), "
           "min(captured_ts), max(captured_ts), "
           "sum(captured_ts < ?), sum(captured_ts > ?), sum(captured_ts IS NULL), "
           "min(CASE WHEN captured_ts <= ? THEN captured_ts END), "
           "max(CASE WHEN captured_ts <= ? THEN captured_ts END) "
           f"FROM incidents WHERE {where} "
           "GROUP BY cluster_id, os_build, platform, process, hardware_model")
    raw = store.conn.execute(sql, [s_ts if s_ts is not None else float("-inf"),
                                   u_arg, u_arg, u_arg] + params).fetchall()
    report: dict[str, Any] = {"since": bound_json(sb), "until": bound_json(ub),
                              "generated_at": _now_iso(), "clusters": []}
    # Every (build, platform) of the kind: bounds are mapped across platforms and statuses are
    # measured on all reports, so --cluster/--process/--platform only filter what is counted
    # (a cluster's status is the same in a filtered and an unfiltered report). Taken from this
    # scan when it saw every report, else from one more scan (only when needed).
    filtered = bool(cluster_ids or process or platform)
    spans_cache: list = []

    def spans() -> list[Span]:
        if not spans_cache:
            spans_cache.append(_spans_scan(store, kind, u_ts) if filtered
                               else _spans_from_raw(raw))
        return spans_cache[0]

    if sb is not None and sb.kind == "build":
        sb = _map_platforms(sb, spans(), True, report, "since_builds")
    if ub is not None and ub.kind == "build":
        ub = _map_platforms(ub, spans(), False, report, "until_builds")
    timed = s_ts is not None or u_ts is not None
    pos_cache: dict[tuple, tuple] = {}
    g: list[Group] = []
    for cid, b, p, proc, hw, n, t0, t1, nb, na, nn, vt0, vt1 in raw:
        parts = ((0, n),) if not timed else \
            ((-1, nb or 0), (1, na or 0), (9, nn or 0),
             (0, n - (nb or 0) - (na or 0) - (nn or 0)))
        for tp, k in parts:
            if not k:
                continue
            key = (b, p, tp)
            pos = pos_cache.get(key)
            if pos is None:
                ps = _position(b, p, tp if tp == 9 else min(tp, 0), sb, True)
                pu = _position(b, p, tp if tp == 9 else max(tp, 0), ub, False)
                pos = pos_cache[key] = (ps == -1, pu == 1, ps == 0 and pu == 0)
            before, after, inside = pos
            if after:
                continue                    # beyond --until: invisible to this report
            g.append(Group(cid, b, p, proc, hw, k, vt0, vt1, before, inside))
    if not g:
        return report

    # Status reference: --since, else per platform the newest build among all reports of the
    # kind up to --until ("what is new in the latest build"); builds of different platforms do
    # not compare, so each incident is measured against its own platform's newest build.
    if sb is None:
        refs = _newest_builds(spans(), ub, u_ts)
        in_view = {x.platform for x in g if x.build is not None}
        shown = [refs[p] for p in in_view if p in refs]
        report["status_reference"] = max(shown, key=build_key) if shown else None
        report["status_references"] = {(p or "unknown"): refs[p] for p in
                                        sorted(in_view, key=lambda q: q or "") if p in refs}
        bk: dict[str, tuple] = {}
        for x in g:
            ref = refs.get(x.platform)
            if x.build is None or ref is None:
                x.st_before, x.st_since = False, ref is None and x.build is None and not refs
                continue
            k = bk.get(x.build)
            if k is None:
                k = bk[x.build] = build_key(x.build)
            rk = bk.get(ref)
            if rk is None:
                rk = bk[ref] = build_key(ref)
            x.st_before, x.st_since = k < rk, k >= rk

    per: dict[str, dict] = {}
    for x in g:
        c = per.get(x.cid)
        if c is None:
            c = per[x.cid] = {"count": 0, "count_total": 0, "t0": None, "t1": None,
                              "b0": None, "b1": None, "st_before": 0, "st_since": 0,
                              "builds": {}, "builds_total": {}, "processes": {},
                              "hardware_models": {}}
        c["count_total"] += x.n
        # first/last seen, each with the build of that same crash (ties: the higher build)
        if x.t0 is not None and (c["t0"] is None or x.t0 < c["t0"] or (
                x.t0 == c["t0"] and build_key(x.build) > build_key(c["b0"]))):
            c["t0"], c["b0"] = x.t0, x.build
        if x.t1 is not None and (c["t1"] is None or x.t1 > c["t1"] or (
                x.t1 == c["t1"] and build_key(x.build) > build_key(c["b1"]))):
            c["t1"], c["b1"] = x.t1, x.build
        if x.st_before:
            c["st_before"] += x.n
        if x.st_since:
            c["st_since"] += x.n
        if x.build is not None:
            c["builds_total"][x.build] = c["builds_total"].get(x.build, 0) + x.n
        if x.inside:
            c["count"] += x.n
            for field, v in (("builds", x.build), ("processes", x.process),
                             ("hardware_models", x.hw)):
                if v is not None:
                    c[field][v] = c[field].get(v, 0) + x.n

    cids = list(per)
    # Build time spans for placing compiles: every report of the kind (see spans() above),
    # read only when some compile needs its build placed by time.
    regressed = _regressed(store, g, cids, spans)
    meta = _cluster_meta(store, cids, {cid: (r["t1"], r["b1"]) for cid, r in per.items()})

    clusters = []
    for cid, r in per.items():
        nb, ns = r["st_before"] > 0, r["st_since"] > 0
        if cid in regressed and ns:
            status = "regressed"
        elif ns and not nb:
            status = "new"
        elif ns and nb:
            status = "ongoing"
        else:
            status = "gone"
        ball = r["builds_total"]
        order = sorted(ball, key=build_key)
        bin_ = r["builds"]
        m = meta.get(cid, {})
        clusters.append({
            "id": cid,
            "signature": m.get("signature"),
            "status": status,
            "count": r["count"],
            "count_total": r["count_total"],
            "first_seen": iso_ts(r["t0"]),
            "last_seen": iso_ts(r["t1"]),
            "first_seen_build": r["b0"],
            "last_seen_build": r["b1"],
            "first_build": order[0] if order else None,
            "last_build": order[-1] if order else None,
            "builds": {b: bin_[b] for b in sorted(bin_, key=build_key)},
            "builds_total": {b: ball[b] for b in order},
            "processes": _by_count(r["processes"]),
            "hardware_models": _by_count(r["hardware_models"]),
            "frames": m.get("frames", [])[:top_frames],
            "representative": m.get("representative"),
            "regression": regressed.get(cid),
        })
    clusters.sort(key=lambda c: (STATUS_ORDER[c["status"]], -c["count"], -c["count_total"],
                                 c["id"]))

    if with_incidents:
        ids = _incident_ids(store, where, params, g, sb, ub,
                            None if with_incidents is True else int(with_incidents))
        for c in clusters:
            c["incidents"] = ids.get(c["id"], [])
    ctx = {}
    if with_context:
        ids = [c["id"] for c in clusters]
        ctx = _context(store, ids) if ub is None else _bounded_context(store, ids, ub, u_ts)
    for c in clusters:
        x = ctx.get(c["id"]) or {}
        c["encodings"] = x.get("encodings") or []
        c["flags"] = x.get("flags") or {}
        c["configurations"] = x.get("configurations") or []
        c["correlations"] = x.get("correlations") or []
        c["finding"] = x.get("finding")
    report["clusters"] = clusters
    return report


@dataclass(slots=True)
class Group:
    """One aggregate row: crashes of one cluster on one build/platform/process/hardware model
    (and one side of a time bound)."""

    cid: str
    build: str | None
    platform: str | None
    process: str | None
    hw: str | None
    n: int
    t0: float | None
    t1: float | None
    before: bool              # before --since
    inside: bool              # within --since/--until
    st_before: bool = False   # before the status reference (--since, else the newest build)
    st_since: bool = False    # at/after the status reference

    def __post_init__(self):
        self.st_before = self.before
        self.st_since = self.inside


def _by_count(d: dict[str, int]) -> dict[str, int]:
    return dict(sorted(d.items(), key=lambda kv: (-kv[1], str(kv[0]))))


def _cluster_meta(store, cids: list[str], last: dict | None = None) -> dict[str, dict]:
    """Signature (:func:`triage.cluster_views.cluster_signatures`, else the representative's)
    and top normalized frames of the representative: the cluster's last crash in view
    (``last``: cid -> (capture time, build) of its last-seen crash, so nothing after
    ``--until`` is shown), else its newest crash."""
    from triage.cluster_views import cluster_signatures
    from triage.store.db import load_frames

    out: dict[str, dict] = {}
    sigs = cluster_signatures(store, cids)      # one rule for clusters/report/show/export
    for cid in cids:
        row = None
        t1, b1 = (last or {}).get(cid, (None, None))
        if t1 is not None:
            row = store.conn.execute(
                "SELECT incident_id, signature, frames FROM incidents WHERE cluster_id=? "
                "AND captured_ts=? AND os_build IS ? ORDER BY incident_id DESC LIMIT 1",
                (cid, t1, b1)).fetchone()
        if row is None:
            row = store.conn.execute(
                "SELECT incident_id, signature, frames FROM incidents WHERE cluster_id=? "
                "ORDER BY captured_ts DESC LIMIT 1", (cid,)).fetchone()
        frames: list[str] = []
        rep = None
        sig = sigs.get(cid)
        if row is not None:
            rep = row[0]
            sig = sig or row[1]
            try:
                frames = normalized_frames(load_frames(row[2]) or [])
            except (ValueError, TypeError):
                frames = []
        out[cid] = {"signature": sig, "frames": frames, "representative": rep}
    return out


def normalized_frames(frames: list) -> list[str]:
    """One display string per stored frame: normalized, else function/symbol, else module+off."""
    out = []
    for f in frames:
        if isinstance(f, str):
            out.append(f)
            continue
        if not isinstance(f, dict):
            continue
        text = f.get("normalized") or f.get("function") or f.get("symbol")
        if not text:
            mod = f.get("module") or "???"
            off = f.get("offset")
            text = f"{mod}+0x{int(off):x}" if isinstance(off, int) else mod
        out.append(text)
    return out


def _incident_ids(store, where, params, g, sb, ub, cap) -> dict[str, list[str]]:
    """Incident ids in range per cluster (``group_concat`` in SQL: one string per cluster)."""
    extra = ""
    xparams: list = []
    if sb is not None or ub is not None:
        conds = []
        if sb is not None and sb.kind == "time":
            conds.append("captured_ts >= ?")
            xparams.append(sb.ts)
        if ub is not None and ub.kind == "time":
            conds.append("captured_ts <= ?")
            xparams.append(ub.ts)
        if (sb and sb.kind == "build") or (ub and ub.kind == "build"):
            pairs = sorted({(x.build, x.platform) for x in g if x.inside and x.build is not None},
                           key=lambda bp: (bp[0], bp[1] or ""))
            if not pairs:
                return {}
            sub = []
            for b, p in pairs:
                if p is None:
                    sub.append("(os_build = ? AND platform IS NULL)")
                    xparams.append(b)
                else:
                    sub.append("(os_build = ? AND platform = ?)")
                    xparams.extend([b, p])
            conds.append("(" + " OR ".join(sub) + ")")
        extra = " AND " + " AND ".join(conds)
    out: dict[str, list[str]] = {}
    sql = (f"SELECT cluster_id, group_concat(incident_id, ' ') FROM incidents "
           f"WHERE {where}{extra} GROUP BY cluster_id")
    for cid, s in store.conn.execute(sql, params + xparams):
        ids = sorted(s.split(" ")) if s else []
        out[cid] = ids if cap is None else ids[:cap]
    return out


# ----------------------------------------------------------------------------- regressions

def _canon(config: str | None) -> str | None:
    if not config:
        return None
    try:
        return orjson.dumps(orjson.loads(config), option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONDecodeError:
        return config


def compile_builds(store, epochs_from=None, kind: str | None = None,
                   ) -> list[tuple[str, str | None, str | None]]:
    """``(config, build, cluster_id)`` for every recorded compile.

    A compile's OS build is that of the incident linked to it; else ``os_build`` in its record;
    else the build whose reports' time span contains the compile's start (the newest such), or
    the build whose span is nearest in time. Cost grows with compiles, not reports.
    """
    rows = store.conn.execute(
        "SELECT c.id, c.config, c.started_ts, c.raw, i.os_build, i.cluster_id FROM compiles c "
        "LEFT JOIN (SELECT DISTINCT compile_id, os_build, cluster_id FROM incidents "
        "WHERE compile_id IS NOT NULL) i ON i.compile_id = c.id").fetchall()
    if not rows:
        return []
    cache: list = []

    def ordered_spans() -> list[tuple[str, list[float]]]:
        """Build -> [first, last] report time, in build order (computed on first need)."""
        if cache:
            return cache[0]
        spans: dict[str, list[float]] = {}
        if epochs_from is not None:             # the report's spans: no extra scan
            for x in (epochs_from() if callable(epochs_from) else epochs_from):
                if x.build is None or x.t0 is None:
                    continue
                sp = spans.setdefault(x.build, [x.t0, x.t1 if x.t1 is not None else x.t0])
                sp[0] = min(sp[0], x.t0)
                sp[1] = max(sp[1], x.t1 if x.t1 is not None else x.t0)
        else:
            where, params = ("kind = ? AND ", [kind]) if isinstance(kind, str) else ("", [])
            for b, t0, t1 in store.conn.execute(
                    "SELECT os_build, min(captured_ts), max(captured_ts) FROM incidents "
                    f"WHERE {where}os_build IS NOT NULL GROUP BY os_build", params):
                if t0 is not None:
                    spans[b] = [t0, t1]
        cache.append(sorted(spans.items(), key=lambda kv: build_key(kv[0])))
        return cache[0]

    def build_at(t: float) -> str | None:
        """The build whose report time span contains ``t`` (newest if several), else the one
        whose span is nearest in time."""
        best, best_d = None, None
        for b, (t0, t1) in ordered_spans():
            d = 0.0 if t0 <= t <= t1 else min(abs(t - t0), abs(t - t1))
            if best_d is None or d <= best_d:
                best, best_d = b, d
        return best

    out = []
    for cid_, config, started, raw, ibuild, icluster in rows:
        build = ibuild
        if build is None and raw:
            try:
                rec = orjson.loads(raw)
                build = rec.get("os_build") if isinstance(rec, dict) else None
            except orjson.JSONDecodeError:
                build = None
        if build is None and started is not None:
            build = build_at(started)
        out.append((_canon(config), build, icluster))
    return out


def _regressed(store, g, cids: list[str], spans) -> dict[str, dict]:
    """Clusters seen, then absent for >= 1 later build with compiles of one of the cluster's
    configurations recorded, then seen again, the return (the first crash on the first build
    seen after the gap) being at/after the status reference. ``spans``: the build time spans
    (a list of :class:`Span`, or a function returning it) for placing compiles by time."""
    comp = compile_builds(store, spans)
    if not comp:
        return {}
    cluster_configs: dict[str, set] = {}
    config_builds: dict[str, set] = {}
    for config, build, cl in comp:
        if config is None:
            continue
        if cl is not None:
            cluster_configs.setdefault(cl, set()).add(config)
        if build is not None:
            config_builds.setdefault(config, set()).add(build)
    out = {}
    seen: dict[str, set] = {}
    back_in_window: dict[str, set] = {}
    back_before: dict[str, set] = {}
    for x in g:
        if x.build is None:
            continue
        seen.setdefault(x.cid, set()).add(x.build)
        if x.st_since:
            back_in_window.setdefault(x.cid, set()).add(x.build)
        if x.st_before:     # a crash on this build before the reference (time --since)
            back_before.setdefault(x.cid, set()).add(x.build)
    for cid in cids:
        configs = cluster_configs.get(cid)
        builds = seen.get(cid)
        if not configs or not builds:
            continue
        order = sorted(builds, key=build_key)
        tested = set()
        for c in configs:
            tested |= config_builds.get(c, set())
        # the return build counts only when its first crash is at/after the reference: with
        # a time --since, a build that came back before the date (and crashed again after it)
        # is a return before --since, so the bug is ongoing now
        window = back_in_window.get(cid, set()) - back_before.get(cid, set())
        for gap in sorted(tested - builds, key=build_key):
            gk = build_key(gap)
            before = [b for b in order if build_key(b) < gk]
            after = [b for b in order if build_key(b) > gk]
            # the return (first build seen after the gap) must be inside the status window:
            # a regression that came back before --since is just ongoing now
            if before and after and after[0] in window:
                out[cid] = {"absent_in": gap, "last_before": before[-1], "back_in": after[0]}
                break
    return out


# ----------------------------------------------------------------------------- context

def _context(store, cids: list[str]) -> dict[str, dict]:
    """Context facts per cluster from ``triage.context.views`` (issue 5), when available."""
    if not cids:
        return {}
    try:
        from triage.context import views
    except ImportError:
        return {}
    many = None
    for name in ("clusters_context", "cluster_details", "clusters_detail", "context_many",
                 "cluster_contexts"):
        many = getattr(views, name, None)
        if callable(many):
            break
        many = None
    if many is not None:
        try:
            res = many(store, cids)
        except Exception:  # noqa: BLE001 - context is an enrichment; never break the report
            res = None
        if isinstance(res, dict):
            return res
        if isinstance(res, list):
            return {d.get("id") or d.get("cluster_id"): d for d in res if isinstance(d, dict)}
    one = getattr(views, "cluster_detail", None)
    if one is None:
        return {}
    out = {}
    for cid in cids:
        try:
            out[cid] = one(store, cid)
        except Exception:  # noqa: BLE001
            out[cid] = {}
    return out


def _bounded_context(store, cids: list[str], ub: Bound, u_ts: float | None) -> dict[str, dict]:
    """The context fields as ``triage.context.views.cluster_contexts`` makes them, from what a
    report bounded by ``--until`` can see: crashes after the bound (and, with a time bound,
    compiles started after it; with a build bound, compiles linked only to later crashes) are
    left out, so encodings, flags, configurations, correlations and the finding never count
    them."""
    if not cids:
        return {}
    try:
        from triage.context import views
    except ImportError:
        return {}
    try:
        rows = store.conn.execute(
            "SELECT cluster_id, compile_id, os_build, platform, COUNT(*), sum(captured_ts > ?) "
            "FROM incidents WHERE kind='crash' AND compile_id IS NOT NULL "
            "AND cluster_id IS NOT NULL GROUP BY compile_id, cluster_id, os_build, platform",
            (u_ts if u_ts is not None else float("inf"),)).fetchall()
        links: dict[tuple, int] = {}
        linked, visible = set(), set()
        for cl, comp, b, p, n, n_after in rows:
            linked.add(comp)
            if ub.kind == "time":
                n -= n_after or 0
            elif _position(b, p, 0, ub, False) == 1:
                n = 0
            if n > 0:
                links[(cl, comp)] = links.get((cl, comp), 0) + n
                visible.add(comp)
        late: set = set()
        if ub.kind == "time":
            late = {r[0] for r in store.conn.execute(
                "SELECT id FROM compiles WHERE started_ts > ?", (u_ts,))}
        late |= linked - visible
        compiles = [c for c in views._load_compiles(store) if c["id"] not in late]
        seen_ids = {c["id"] for c in compiles}
        return views.cluster_contexts(
            store, cids, compiles=compiles,
            links=[(cl, comp, n) for (cl, comp), n in links.items() if comp in seen_ids])
    except Exception:  # noqa: BLE001 - context is an enrichment; never break the report
        return {}
