"""Read-only views of clusters: the ``triage clusters --format json`` records."""

from __future__ import annotations

from collections import Counter
from typing import Any, Optional


def _as_list(v) -> list:
    if v is None:
        return []
    if isinstance(v, (list, tuple, set)):
        return list(v)
    return [v]


def cluster_records(store, *, ids: Optional[list[str]] = None, signature: Optional[str] = None,
                    process: Optional[str] = None, since: Optional[float] = None,
                    until: Optional[float] = None, min_count: int = 0,
                    include_merged: bool = False, limit: Optional[int] = None,
                    **_ignored) -> list[dict[str, Any]]:
    """One dict per cluster, largest first.

    Fields: ``id``, ``signature``, ``count``, ``incidents`` (incident ids, oldest first),
    ``first_seen``, ``last_seen`` (ISO times as reported), ``exception``, ``processes``,
    ``frames`` (top frames of the cluster's most common stack), ``signatures`` (each distinct
    signature with its count), ``os_builds``, ``stacks`` (distinct stacks), ``created_at``,
    ``merged_into``, ``note``. Filters: ``ids`` (ids or retired ids, resolved through merges),
    ``signature`` (substring), ``process``, ``since``/``until`` (epoch seconds on the capture
    time), ``min_count``, ``include_merged`` (also list retired ids, with ``merged_into``),
    ``limit``.
    """
    conn = store.conn
    meta = {r[0]: {"signature": r[1], "created_at": r[2], "merged_into": r[3], "note": r[4]}
            for r in conn.execute("SELECT cluster_id, signature, created_at, merged_into, note "
                                  "FROM clusters")}
    wanted: Optional[set[str]] = None
    if ids:
        from triage.cluster import load_overrides

        ov = load_overrides(conn)
        wanted = set()
        for i in _as_list(ids):
            wanted.add(i)
            wanted.add(ov.resolve(i))
    where = ["cluster_id IS NOT NULL"]
    params: list[Any] = []
    if since is not None:
        where.append("captured_ts >= ?")
        params.append(float(since))
    if until is not None:
        where.append("captured_ts < ?")
        params.append(float(until))
    if process:
        where.append("process = ?")
        params.append(process)
    agg: dict[str, dict] = {}
    sql = ("SELECT cluster_id, incident_id, captured_at, captured_ts, process, exception_type, "
           "signal, signature, stack_id, os_build FROM incidents WHERE " + " AND ".join(where)
           + " ORDER BY captured_ts IS NULL, captured_ts, incident_id")
    for cid, iid, cat, cts, proc, etype, sig_, sig, sid, build in conn.execute(sql, params):
        if wanted is not None and cid not in wanted:
            continue
        a = agg.get(cid)
        if a is None:
            a = agg[cid] = {"incidents": [], "first": None, "last": None, "procs": Counter(),
                            "exc": Counter(), "sigs": Counter(), "stacks": Counter(),
                            "builds": Counter()}
        a["incidents"].append(iid)
        if cts is not None:
            if a["first"] is None or cts < a["first"][0]:
                a["first"] = (cts, cat)
            if a["last"] is None or cts >= a["last"][0]:
                a["last"] = (cts, cat)
        if proc:
            a["procs"][proc] += 1
        exc = "/".join(p for p in (etype, sig_) if p)
        if exc:
            a["exc"][exc] += 1
        if sig:
            a["sigs"][sig] += 1
        if sid:
            a["stacks"][sid] += 1
        if build:
            a["builds"][build] += 1
    top_stacks = {a["stacks"].most_common(1)[0][0] for a in agg.values() if a["stacks"]}
    proto: dict[str, str] = {}
    if top_stacks:
        sids = list(top_stacks)
        for k in range(0, len(sids), 500):
            chunk = sids[k:k + 500]
            for sid, p in conn.execute(f"SELECT stack_id, proto_signature FROM stacks WHERE "
                                       f"stack_id IN ({','.join('?' * len(chunk))})", chunk):
                proto[sid] = p
    out: list[dict[str, Any]] = []
    for cid, a in agg.items():
        m = meta.get(cid, {})
        if signature and not any(signature in s for s in a["sigs"]):
            continue
        if len(a["incidents"]) < min_count:
            continue
        top_sid = a["stacks"].most_common(1)[0][0] if a["stacks"] else None
        p = proto.get(top_sid) or ""
        out.append({
            "id": cid,
            "signature": (a["sigs"].most_common(1)[0][0] if a["sigs"] else m.get("signature")),
            "count": len(a["incidents"]),
            "incidents": a["incidents"],
            "first_seen": a["first"][1] if a["first"] else None,
            "last_seen": a["last"][1] if a["last"] else None,
            "exception": a["exc"].most_common(1)[0][0] if a["exc"] else None,
            "processes": sorted(a["procs"]),
            "frames": p.split(" | ") if p else [],
            "signatures": [{"signature": s, "count": n} for s, n in a["sigs"].most_common()],
            "os_builds": sorted(a["builds"]),
            "stacks": len(a["stacks"]),
            "created_at": m.get("created_at"),
            "merged_into": m.get("merged_into"),
            "note": m.get("note"),
        })
    if include_merged:
        for cid, m in meta.items():
            if m.get("merged_into") and cid not in agg and (wanted is None or cid in wanted):
                out.append({"id": cid, "signature": m["signature"], "count": 0, "incidents": [],
                            "first_seen": None, "last_seen": None, "exception": None,
                            "processes": [], "frames": [], "signatures": [], "os_builds": [],
                            "stacks": 0, "created_at": m["created_at"],
                            "merged_into": m["merged_into"], "note": m["note"]})
    out.sort(key=lambda r: (-r["count"], r["id"]))
    if limit is not None:
        out = out[: int(limit)]
    return out
