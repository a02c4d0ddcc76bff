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


# ----------------------------------------------------------------------------- cluster ids

def _follow_merges(conn, cid: str) -> str:
    seen = set()
    cur = cid
    while cur not in seen:
        seen.add(cur)
        row = conn.execute("SELECT merged_into FROM clusters WHERE cluster_id=?",
                           (cur,)).fetchone()
        if row is None or not row[0]:
            break
        cur = row[0]
    return cur


def current_homes(conn, cid: str) -> list[str]:
    """The clusters that now hold the crashes whose stacks were clustered as ``cid``.

    Empty when ``cid`` has no stacks of its own (never a cluster, or re-assigned by a
    recluster: then only ``merged_into`` tells where it went)."""
    rows = conn.execute(
        "SELECT DISTINCT i.cluster_id FROM incidents i WHERE i.stack_id IN "
        "(SELECT stack_id FROM stacks WHERE cluster_id=?) AND i.cluster_id IS NOT NULL",
        (cid,)).fetchall()
    return sorted(r[0] for r in rows)


def resolve_current(store, cluster_id: str) -> str | None:
    """The cluster an id refers to now: itself, or for a retired id (``merged_into`` set) the
    cluster that holds its crashes today. ``merged_into`` is followed, except when the crashes
    moved on since (``merge A B`` then ``split A --signature ...`` moving B's crashes to a new
    cluster: B then means that new cluster, not A). None for an id the store never had;
    UserError when the retired id's crashes are now spread over several clusters."""
    from triage.errors import UserError

    conn = store.conn
    cid = cluster_id.strip()
    cur = _follow_merges(conn, cid)
    if cur != cid:
        homes = current_homes(conn, cid)
        if len(homes) == 1:
            cur = homes[0]
        elif len(homes) > 1:
            raise UserError(f"{cid}: retired (merged into {cur}, then split): its crashes are "
                            f"now in {', '.join(homes)}; give one of those ids")
    if conn.execute("SELECT 1 FROM clusters WHERE cluster_id=?", (cur,)).fetchone() \
            or conn.execute("SELECT 1 FROM incidents WHERE cluster_id=? LIMIT 1",
                            (cur,)).fetchone():
        return cur
    return None


# ----------------------------------------------------------------------------- signatures

def _unsymbolicated(frames_json: str | None) -> int:
    """Frames of a stored stack without a symbol (``module!+0x...``)."""
    if not frames_json:
        return 0
    try:
        import orjson

        frames = orjson.loads(frames_json)
    except ValueError:
        return 0
    return sum(1 for f in frames if isinstance(f, str) and "!+0x" in f)


def cluster_signatures(store, cids=None) -> dict[str, str]:
    """The signature each cluster shows (``clusters``, ``report``, ``show``, ``export``).

    The most common signature among the cluster's crashes (their stacks, with merge/split
    overrides applied, weighted by crashes); ties go to the signature with fewer
    unsymbolicated frames, then to the one in the clusters table, then the first in text
    order. A cluster without crashes keeps the clusters table's signature. Cost: one read of
    the ``stacks`` table (distinct stacks, not reports) and of the split incidents.
    """
    from triage.cluster import load_overrides

    conn = store.conn
    want = None if cids is None else set(cids)
    table = {cid: sig for cid, sig in conn.execute("SELECT cluster_id, signature FROM clusters")
             if want is None or cid in want}
    ov = load_overrides(conn)
    counts: dict[str, Counter] = {}
    unsym: dict[str, int] = {}
    natural_of: dict[str, tuple[str, str]] = {}
    simple = not (ov.merged or ov.sig_splits or ov.inc_splits)
    if simple and want is not None:
        rows = []
        ids = sorted(want)
        for k in range(0, len(ids), 500):
            chunk = ids[k:k + 500]
            rows += conn.execute(
                "SELECT stack_id, cluster_id, signature, count, frames FROM stacks WHERE "
                f"cluster_id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
    else:
        rows = conn.execute("SELECT stack_id, cluster_id, signature, count, frames FROM stacks "
                            "WHERE cluster_id IS NOT NULL").fetchall()
    for sid, natural, sig, n, frames in rows:
        home = natural if simple else ov.for_stack(natural, sig)
        natural_of[sid] = (home, sig)
        if home is None or (want is not None and home not in want) or not n or n <= 0:
            continue
        counts.setdefault(home, Counter())[sig] += n
        u = _unsymbolicated(frames)
        unsym[sig] = min(u, unsym.get(sig, u))
    # crashes split off by id live elsewhere than their stack's cluster
    for _src, incs, _new in ov.inc_splits:
        for k in range(0, len(incs), 500):
            chunk = incs[k:k + 500]
            for sid, cur in conn.execute(
                    "SELECT stack_id, cluster_id FROM incidents WHERE incident_id IN "
                    f"({','.join('?' * len(chunk))})", chunk):
                home, sig = natural_of.get(sid, (None, None))
                if sig is None or home == cur:
                    continue
                if home in counts and counts[home][sig] > 0:
                    counts[home][sig] -= 1
                if cur is not None and (want is None or cur in want):
                    counts.setdefault(cur, Counter())[sig] += 1
    out = dict(table)
    for cid, cnt in counts.items():
        best = [(n, sig) for sig, n in cnt.items() if n > 0]
        if not best:
            continue
        out[cid] = min(best, key=lambda ns: (-ns[0], unsym.get(ns[1], 0),
                                             ns[1] != table.get(cid), ns[1]))[1]
    return out


def cluster_records(store, *, ids: Optional[list[str]] = None, signature: Optional[str] = None,
                    process: Optional[str] = None, since: Optional[float] = None,
                    until: Optional[float] = None, min_count: int = 0,
                    include_merged: bool = False, limit: Optional[int] = None,
                    incident_ids: Optional[set[str]] = None) -> list[dict[str, Any]]:
    """One dict per cluster, largest first.

    Fields: ``id``, ``signature``, ``count``, ``incidents`` (incident ids, oldest first),
    ``first_seen``, ``last_seen`` (ISO times as reported), ``exception``, ``processes``,
    ``frames`` (top frames of the cluster's most common stack), ``signatures`` (each distinct
    signature with its count), ``os_builds``, ``stacks`` (distinct stacks), ``created_at``,
    ``merged_into``, ``note``. Filters: ``ids`` (ids or retired ids, resolved through merges),
    ``signature`` (substring), ``process``, ``since``/``until`` (epoch seconds on the capture
    time), ``min_count``, ``include_merged`` (also list retired ids, with ``merged_into``),
    ``limit``, ``incident_ids`` (count only these reports: how ``triage.api`` applies a
    build/date/alias ``since``/``until``). Unknown keywords are a TypeError, never ignored.
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
            target = ov.resolve(i)
            if target != i:     # a retired id: where its crashes are now (docs/clustering.md)
                wanted.update(current_homes(conn, i) or [target])
            else:
                wanted.add(target)
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
        if incident_ids is not None and iid not in incident_ids:
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
    shown_sig = cluster_signatures(store, list(agg)) if agg else {}
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
            "signature": shown_sig.get(cid) or (a["sigs"].most_common(1)[0][0] if a["sigs"]
                                                else m.get("signature")),
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
