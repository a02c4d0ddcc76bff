"""Build the report: per cluster status, counts, builds, processes, frames and context.

``build_report(store, since=..., until=...)`` returns the ``triage report --format json`` object
(contract in docs/reports.md). It is built from a handful of indexed SQL aggregate queries
(``GROUP BY cluster_id, os_build, platform, process, hardware_model``) reduced with pandas, plus
one representative incident per cluster for the frames: its cost grows with the number of
clusters x builds x processes, not with the number of reports.
"""

from __future__ import annotations

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
    "(kind, cluster_id, os_build, platform, process, hardware_model, captured_ts)",
    "CREATE INDEX IF NOT EXISTS incidents_compile ON incidents(compile_id, os_build, cluster_id)",
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
    """Follow ``merged_into`` links; UserError for an id the store never had."""
    cid = cluster.strip()
    seen = set()
    while cid not in seen:
        seen.add(cid)
        row = store.conn.execute("SELECT merged_into FROM clusters WHERE cluster_id=?",
                                 (cid,)).fetchone()
        if row is None:
            if store.conn.execute("SELECT 1 FROM incidents WHERE cluster_id=? LIMIT 1",
                                  (cid,)).fetchone():
                return cid
            raise UserError(f"unknown cluster {cluster!r} (see `triage clusters`)")
        if not row[0]:
            return cid
        cid = row[0]
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
    k, t = build_key(build), build_key(target)
    if is_since:
        return -1 if k < t else 0
    return 1 if k > t else 0


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
    import pandas as pd

    ensure_indexes(store)
    sb = since if isinstance(since, Bound) or since is None else \
        resolve_bound(since, store, platform=platform)
    ub = until if isinstance(until, Bound) or until is None else \
        resolve_bound(until, store, end=True, platform=platform)
    cluster_ids = [resolve_cluster_id(store, cluster)] if cluster else None
    where, params = _filters(kind, process, platform, cluster_ids)

    # time position computed in SQL (only for time bounds): -1 before, 1 after, 0 inside.
    tcase = "0"
    tparams: list = []
    if (sb and sb.kind == "time") or (ub and ub.kind == "time"):
        parts = []
        if sb and sb.kind == "time":
            parts.append("WHEN captured_ts < ? THEN -1")
            tparams.append(sb.ts)
        if ub and ub.kind == "time":
            parts.append("WHEN captured_ts > ? THEN 1")
            tparams.append(ub.ts)
        tcase = "CASE WHEN captured_ts IS NULL THEN 9 " + " ".join(parts) + " ELSE 0 END"
    sql = (f"SELECT cluster_id, os_build, platform, process, hardware_model, {tcase} AS tpos, "
           "count(*) AS n, min(captured_ts) AS t0, max(captured_ts) AS t1 "
           f"FROM incidents WHERE {where} "
           "GROUP BY cluster_id, os_build, platform, process, hardware_model, tpos")
    rows = store.conn.execute(sql, tparams + params).fetchall()
    g = pd.DataFrame(rows, columns=["cid", "build", "platform", "process", "hw", "tpos",
                                    "n", "t0", "t1"])
    report: dict[str, Any] = {"since": bound_json(sb), "until": bound_json(ub),
                              "generated_at": _now_iso(), "clusters": []}
    if g.empty:
        return report

    # Positions: per distinct (build, platform, tpos) -- a few dozen, not per report.
    keys = g[["build", "platform", "tpos"]].drop_duplicates()
    pos_since, pos_until = {}, {}
    for b, p, tp in keys.itertuples(index=False):
        tpi = int(tp)
        k = (b, p, tp)
        ps = _position(b, p, tpi if tpi == 9 else min(tpi, 0), sb, True)
        pu = _position(b, p, tpi if tpi == 9 else max(tpi, 0), ub, False)
        pos_since[k] = ps
        pos_until[k] = pu
    kk = list(zip(g["build"], g["platform"], g["tpos"]))
    g["before"] = [pos_since[k] == -1 for k in kk]
    g["after"] = [pos_until[k] == 1 for k in kk]
    g["inside"] = [pos_since[k] == 0 and pos_until[k] == 0 for k in kk]
    g = g[~g["after"]]                      # beyond --until: invisible to this report
    if g.empty:
        return report

    # Status reference: --since, else the newest build in view ("what is new in the latest build").
    if sb is not None:
        g["st_before"] = g["before"]
        g["st_since"] = g["inside"]
    else:
        builds_seen = [b for b in g["build"].dropna().unique()]
        latest = max(builds_seen, key=build_key) if builds_seen else None
        if latest is not None:
            lk = build_key(latest)
            bk = {b: build_key(b) for b in builds_seen}
            g["st_before"] = [b is not None and not pd.isna(b) and bk[b] < lk for b in g["build"]]
            g["st_since"] = [b is not None and not pd.isna(b) and bk[b] >= lk for b in g["build"]]
        else:
            g["st_before"] = False
            g["st_since"] = True
        report["status_reference"] = latest

    gi = g[g["inside"]]
    per = g.groupby("cid", sort=False).agg(count_total=("n", "sum"), t0=("t0", "min"),
                                            t1=("t1", "max"))
    per["count"] = gi.groupby("cid", sort=False)["n"].sum()
    per["count"] = per["count"].fillna(0).astype(int)
    per["st_before"] = g[g["st_before"]].groupby("cid")["n"].sum()
    per["st_since"] = g[g["st_since"]].groupby("cid")["n"].sum()
    per = per.fillna({"st_before": 0, "st_since": 0})

    def counts(frame, col) -> dict[str, dict[str, int]]:
        s = frame.groupby(["cid", col], sort=False, dropna=True)["n"].sum()
        out: dict[str, dict[str, int]] = {}
        for (cid, v), n in s.items():
            out.setdefault(cid, {})[v] = int(n)
        return out

    builds_in = counts(gi, "build")
    builds_all = counts(g, "build")
    procs_in = counts(gi, "process")
    hw_in = counts(gi, "hw")

    cids = list(per.index)
    regressed = _regressed(store, g, cids)
    meta = _cluster_meta(store, cids)

    clusters = []
    for cid, r in per.iterrows():
        nb, ns = r["st_before"] > 0, r["st_since"] > 0
        if cid in regressed and ns:
            status = "regressed"
        elif ns and not nb:
            status = "new"
        elif ns and nb:
            status = "ongoing"
        else:
            status = "gone"
        ball = builds_all.get(cid, {})
        order = sorted(ball, key=build_key)
        bin_ = builds_in.get(cid, {})
        m = meta.get(cid, {})
        clusters.append({
            "id": cid,
            "signature": m.get("signature"),
            "status": status,
            "count": int(r["count"]),
            "count_total": int(r["count_total"]),
            "first_seen": iso_ts(None if pd.isna(r["t0"]) else r["t0"]),
            "last_seen": iso_ts(None if pd.isna(r["t1"]) else r["t1"]),
            "first_build": order[0] if order else None,
            "last_build": order[-1] if order else None,
            "builds": {b: bin_[b] for b in sorted(bin_, key=build_key)},
            "builds_total": {b: ball[b] for b in order},
            "processes": _by_count(procs_in.get(cid, {})),
            "hardware_models": _by_count(hw_in.get(cid, {})),
            "frames": m.get("frames", [])[:top_frames],
            "representative": m.get("representative"),
            "regression": regressed.get(cid),
        })
    clusters.sort(key=lambda c: (STATUS_ORDER[c["status"]], -c["count"], -c["count_total"],
                                 c["id"]))

    if with_incidents:
        ids = _incident_ids(store, where, params, g, sb, ub, tparams, tcase,
                            None if with_incidents is True else int(with_incidents))
        for c in clusters:
            c["incidents"] = ids.get(c["id"], [])
    ctx = _context(store, [c["id"] for c in clusters]) if with_context else {}
    for c in clusters:
        x = ctx.get(c["id"]) or {}
        c["encodings"] = x.get("encodings") or []
        c["flags"] = x.get("flags") or {}
        c["configurations"] = x.get("configurations") or []
        c["correlations"] = x.get("correlations") or []
        c["finding"] = x.get("finding")
    report["clusters"] = clusters
    return report


def _by_count(d: dict[str, int]) -> dict[str, int]:
    return dict(sorted(d.items(), key=lambda kv: (-kv[1], str(kv[0]))))


def _cluster_meta(store, cids: list[str]) -> dict[str, dict]:
    """Signature (clusters table, else the representative's) and top normalized frames."""
    from triage.store.db import jload

    out: dict[str, dict] = {}
    sigs = {}
    for i in range(0, len(cids), 500):
        chunk = cids[i:i + 500]
        for cid, sig in store.conn.execute(
                f"SELECT cluster_id, signature FROM clusters WHERE cluster_id IN "
                f"({','.join('?' * len(chunk))})", chunk):
            sigs[cid] = sig
    for cid in cids:
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
                frames = normalized_frames(jload(row[2]) or [])
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


def _incident_ids(store, where, params, g, sb, ub, tparams, tcase, cap) -> dict[str, list[str]]:
    """Incident ids in range per cluster (``group_concat`` in SQL: one string per cluster)."""
    extra = ""
    xparams: list = []
    if sb is not None or ub is not None:
        conds = []
        if tcase != "0":
            conds.append(f"({tcase}) = 0")
            xparams.extend(tparams)
        if (sb and sb.kind == "build") or (ub and ub.kind == "build"):
            inside = g[g["inside"]][["build", "platform"]].drop_duplicates()
            pairs = [(b, p) for b, p in inside.itertuples(index=False) if b is not None]
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
    if cap is None:
        sql = (f"SELECT cluster_id, group_concat(incident_id, ' ') FROM incidents "
               f"WHERE {where}{extra} GROUP BY cluster_id")
        for cid, s in store.conn.execute(sql, params + xparams):
            out[cid] = sorted(s.split(" ")) if s else []
    else:
        sql = (f"SELECT cluster_id, incident_id FROM (SELECT cluster_id, incident_id, "
               f"row_number() OVER (PARTITION BY cluster_id ORDER BY captured_ts DESC) AS rn "
               f"FROM incidents WHERE {where}{extra}) WHERE rn <= ?")
        for cid, iid in store.conn.execute(sql, params + xparams + [cap]):
            out.setdefault(cid, []).append(iid)
        for v in out.values():
            v.sort()
    return out


# ----------------------------------------------------------------------------- regressions

def _canon(config: str | None) -> str | None:
    if not config:
        return None
    try:
        return orjson.dumps(orjson.loads(config), option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONDecodeError:
        return config


def compile_builds(store) -> list[tuple[str, str | None, str | None]]:
    """``(config, build, cluster_id)`` for every recorded compile.

    A compile's OS build is that of the incident linked to it; else ``os_build`` in its record;
    else the newest build (in build order) whose first report is not later than the compile's
    start (the build the machine was running then). Cost grows with compiles, not reports.
    """
    rows = store.conn.execute(
        "SELECT c.id, c.config, c.started_ts, c.raw, i.os_build, i.cluster_id FROM compiles c "
        "LEFT JOIN (SELECT DISTINCT compile_id, os_build, cluster_id FROM incidents "
        "WHERE compile_id IS NOT NULL) i ON i.compile_id = c.id").fetchall()
    if not rows:
        return []
    firsts = store.conn.execute(
        "SELECT os_build, min(captured_ts) FROM incidents WHERE os_build IS NOT NULL "
        "GROUP BY os_build").fetchall()
    epochs = sorted(((b, t) for b, t in firsts if t is not None), key=lambda bt: build_key(bt[0]))
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
            for b, t in epochs:
                if t <= started:
                    build = b
        out.append((_canon(config), build, icluster))
    return out


def _regressed(store, g, cids: list[str]) -> dict[str, dict]:
    """Clusters seen, then absent for >= 1 later build with compiles of one of the cluster's
    configurations recorded, then seen again (the return in the status window)."""
    comp = compile_builds(store)
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
    seen = g.groupby("cid")["build"].agg(lambda s: set(x for x in s if x is not None))
    back_in_window = g[g["st_since"]].groupby("cid")["build"].agg(
        lambda s: set(x for x in s if x is not None))
    for cid in cids:
        configs = cluster_configs.get(cid)
        builds = seen.get(cid)
        if not configs or not builds:
            continue
        order = sorted(builds, key=build_key)
        tested = set()
        for c in configs:
            tested |= config_builds.get(c, set())
        window = back_in_window.get(cid, set())
        for gap in sorted(tested - builds, key=build_key):
            gk = build_key(gap)
            before = [b for b in order if build_key(b) < gk]
            after = [b for b in order if build_key(b) > gk and b in window]
            if before and after:
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
