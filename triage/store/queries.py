"""Read-side queries over the store: the ``incidents`` / ``incidents --errors`` JSON contracts.

``incident_records`` returns exactly what ``triage incidents --format json`` prints; the CLI and
``triage.api.Triage.incidents_records`` / the pandas ``incidents()`` DataFrame call it through
``triage.api.incident_rows`` (filter checks, ``since``/``until`` as build/date/alias).
"""

from __future__ import annotations

from typing import Any, Optional

from triage.store.db import Store, jload, load_frames, unpack

#: incidents columns copied as they are (the JSON contract; later issues add fields, never rename)
PLAIN_COLUMNS = (
    "incident_id", "path", "sha256", "format", "bug_type", "kind", "process", "process_path",
    "pid", "parent_process", "parent_pid", "responsible_process", "responsible_pid",
    "bundle_id", "app_version", "captured_at", "captured_ts", "launched_at", "os_version",
    "os_train", "os_build", "os_release_type", "platform", "hardware_model", "cpu_type",
    "exception_type", "signal", "exception_codes", "exception_subtype", "exception_message",
    "termination_namespace", "termination_code", "termination_indicator",
    "termination_by_process", "termination_by_pid", "crash_reporter_key", "crashing_thread",
    "signature", "proto_signature", "stack_id", "cluster_id", "compile_id", "link_note",
    "ingested_at",
)
#: the frame keys every element of ``frames`` has (first four are the issue-2 contract)
FRAME_KEYS = ("module", "symbol", "offset", "inline", "function", "normalized")


def _resolve_cluster(store: Store, cluster_id: str) -> list[str]:
    """``cluster_id``, the id it was merged into (if retired) and every id merged into those.

    Incidents normally carry their current cluster id; this also finds rows still carrying a
    retired id, and lets an old id keep working as a filter.
    """
    ids = [cluster_id]
    try:
        # follow merged_into forward (an old id names its successor)
        seen = {cluster_id}
        cur = cluster_id
        while True:
            row = store.conn.execute("SELECT merged_into FROM clusters WHERE cluster_id=?",
                                     (cur,)).fetchone()
            if not row or not row[0] or row[0] in seen:
                break
            cur = row[0]
            seen.add(cur)
            ids.append(cur)
        # and every retired id merged (directly or transitively) into any of these
        frontier = list(ids)
        while frontier:
            cur = frontier.pop()
            for (old,) in store.conn.execute(
                    "SELECT cluster_id FROM clusters WHERE merged_into=?", (cur,)):
                if old not in seen:
                    seen.add(old)
                    ids.append(old)
                    frontier.append(old)
    except Exception:  # noqa: BLE001 - clusters table shape owned elsewhere
        pass
    return ids


def _frames(text: Optional[str]) -> Optional[list[dict]]:
    frames = load_frames(text)
    if frames is None:
        return None
    for f in frames:
        for k in FRAME_KEYS:
            f.setdefault(k, False if k == "inline" else None)
    return frames


def incident_records(store: Store, kind: Optional[str] = None, cluster: Optional[str] = None,
                     limit: Optional[int] = None, *, since_ts: Optional[float] = None,
                     until_ts: Optional[float] = None, process: Optional[str] = None,
                     signature: Optional[str] = None, incident_ids: Optional[list[str]] = None,
                     detail: bool = False) -> list[dict[str, Any]]:
    """One dict per stored report, oldest capture first (then incident id).

    Filters: ``kind``, ``cluster`` (also matches reports of clusters merged into it),
    ``since_ts``/``until_ts`` (epoch seconds, on ``captured_ts``), ``process``, ``signature``,
    ``incident_ids``. ``detail=True`` adds ``threads``, ``images``, ``header``, ``extra`` and
    ``notes`` from the compressed detail blob (slow for big stores).
    """
    where, params = [], []
    if kind:
        where.append("i.kind = ?")
        params.append(kind)
    if cluster:
        ids = _resolve_cluster(store, cluster)
        where.append(f"i.cluster_id IN ({','.join('?' * len(ids))})")
        params.extend(ids)
    if since_ts is not None:
        where.append("i.captured_ts >= ?")
        params.append(since_ts)
    if until_ts is not None:
        where.append("i.captured_ts < ?")
        params.append(until_ts)
    if process:
        where.append("i.process = ?")
        params.append(process)
    if signature:
        where.append("i.signature = ?")
        params.append(signature)
    if incident_ids is not None:
        if not incident_ids:
            return []
        where.append(f"i.incident_id IN ({','.join('?' * len(incident_ids))})")
        params.extend(incident_ids)
    cols = ", ".join(f"i.{c}" for c in PLAIN_COLUMNS)
    sql = (f"SELECT {cols}, i.asi, i.frames, i.last_exception, c.raw"
           + (", i.detail, o.data" if detail else "")
           + " FROM incidents i LEFT JOIN compiles c ON c.id = i.compile_id"
           + (" LEFT JOIN originals o ON o.incident_id = i.incident_id" if detail else ""))
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY i.captured_ts IS NULL, i.captured_ts, i.incident_id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    out: list[dict[str, Any]] = []
    n = len(PLAIN_COLUMNS)
    for row in store.conn.execute(sql, params):
        rec = dict(zip(PLAIN_COLUMNS, row[:n]))
        rec["asi"] = jload(row[n])
        rec["frames"] = _frames(row[n + 1]) or []
        rec["last_exception"] = _frames(row[n + 2])
        rec["compile"] = jload(row[n + 3])
        if detail:
            d = unpack(row[n + 4]) or {}
            if "threads" not in d and row[n + 5] is not None:
                d = _detail_from_original(rec, row[n + 1], row[n + 2], row[n + 5], d)
            for k in ("threads", "images", "header", "extra", "notes"):
                rec[k] = d.get(k)
        out.append(rec)
    return out


def _detail_from_original(rec: dict, frames_json, le_json, original: bytes, d: dict) -> dict:
    """threads / images / notes of a lazily ingested report (see ``triage.frames.stored``), as
    the plain dicts the detail blob holds for other reports."""
    import orjson

    from triage.frames.stored import _from_original
    from triage.records import Report
    from triage.store.db import _default

    rep = Report(incident_id=rec.get("incident_id") or "", path=rec.get("path") or "",
                 sha256=rec.get("sha256") or "", format=rec.get("format") or "",
                 crashing_thread=rec.get("crashing_thread"))
    _from_original(rep, original, {"frames": frames_json, "last_exception": le_json}, jload)
    out = dict(d)
    notes = list(d.get("notes") or [])
    for k, v in (("threads", rep.threads), ("images", rep.images)):
        out[k] = orjson.loads(orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS, default=_default))
    out["notes"] = notes + [x for x in rep.notes if x not in notes]
    return out


def incident_detail(store: Store, incident_id: str) -> Optional[dict[str, Any]]:
    """One incident with its full detail (all threads, images, header, extra, notes)."""
    recs = incident_records(store, incident_ids=[incident_id], detail=True)
    return recs[0] if recs else None


def error_records(store: Store) -> list[dict[str, Any]]:
    """Bad inputs recorded by ingest: ``{"path", "reason", "seen_at"}``, by path."""
    return [{"path": p, "reason": r, "seen_at": s} for p, r, s in
            store.conn.execute("SELECT path, reason, seen_at FROM errors ORDER BY path")]


def counts_by_kind(store: Store) -> dict[str, int]:
    return {k: n for k, n in store.conn.execute(
        "SELECT kind, COUNT(*) FROM incidents GROUP BY kind ORDER BY kind")}
