"""Cluster context views over the store: what ``triage show`` prints and reports embed.

``cluster_detail(store, cluster_id)`` -> one cluster object (``id``, ``signature``, ``count``,
``incidents``, ``first_seen``, ``last_seen``, ``linked``, ``unlinked`` + the context below).
``cluster_contexts(store, cluster_ids=None)`` -> ``{cluster_id: {"encodings", "flags",
"configurations", "correlations", "finding", "linked_compiles"}}`` for many clusters at once:
two SQL aggregates (links grouped by cluster and compile; all compiles) and in-memory counting
over compiles/configurations, never a Python loop over incident rows.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Iterable

import orjson

from triage.context.correlate import compute_contexts, encoding_label
from triage.context.journal import ENCODING_KEYS, EXTRA_ENCODING_KEYS, FLAG_KEYS
from triage.errors import UserError

_ENC_KEYS = ENCODING_KEYS + EXTRA_ENCODING_KEYS


def _load_compiles(store) -> list[dict]:
    rows = store.conn.execute("SELECT id, exit_code, config FROM compiles").fetchall()
    return [{"id": r[0], "exit_code": r[1], "config": orjson.loads(r[2]) if r[2] else {}}
            for r in rows]


def _links(store) -> list[tuple[str, int, int]]:
    """(cluster_id, compile_id, incidents) for linked crash incidents."""
    # GROUP BY in the order of the incidents_link index (kind, compile_id, cluster_id): an
    # index-only scan without a sort
    sql = ("SELECT cluster_id, compile_id, COUNT(*) FROM incidents "
           "WHERE kind='crash' AND compile_id IS NOT NULL AND cluster_id IS NOT NULL "
           "GROUP BY compile_id, cluster_id")
    return [tuple(r) for r in store.conn.execute(sql).fetchall()]


def cluster_contexts(store, cluster_ids: Iterable[str] | None = None, *,
                     links: list[tuple] | None = None,
                     compiles: list[dict] | None = None) -> dict[str, dict]:
    """Context (encodings, flags, configurations, correlations, finding) for many clusters.

    ``cluster_ids=None``: every cluster that has incidents. Clusters without linked compiles get
    empty lists and a finding saying so. ``links`` (``(cluster, compile id, crashes)``) and
    ``compiles`` default to everything stored; a report bounded by ``--until`` passes what it
    can see (``triage.report.build._bounded_context``)."""
    if links is None:
        links = _links(store)
    if cluster_ids is None:
        ids = [r[0] for r in store.conn.execute(
            "SELECT DISTINCT cluster_id FROM incidents WHERE cluster_id IS NOT NULL")]
    else:
        ids = list(cluster_ids)
    if compiles is None:
        compiles = _load_compiles(store)
    cfg_by_id = {c["id"]: c["config"] for c in compiles}
    ctx = compute_contexts(compiles, [(cid, cl) for cl, cid, _n in links], ids)

    enc_counts: dict[str, Counter] = defaultdict(Counter)
    flag_counts: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    wanted = set(ids)
    for cl, cid, n in links:
        if cl not in wanted:
            continue
        cfg = cfg_by_id.get(cid, {})
        enc_counts[cl][tuple(cfg.get(f"encoding.{k}") for k in _ENC_KEYS)] += n
        for k in FLAG_KEYS:
            v = cfg.get(f"flags.{k}")
            if v is not None:
                flag_counts[cl][k][str(v)] += n

    out: dict[str, dict] = {}
    for cl in ids:
        encodings = []
        for key, n in enc_counts.get(cl, Counter()).most_common():
            enc = {k: v for k, v in zip(_ENC_KEYS, key)}
            encodings.append({"encoding": enc, "label": encoding_label(enc), "count": n})
        flags = {k: dict(flag_counts[cl][k].most_common()) for k in FLAG_KEYS
                 if cl in flag_counts and flag_counts[cl].get(k)}
        c = ctx[cl]
        out[cl] = {
            "encodings": encodings,
            "flags": flags,
            "configurations": c["configurations"],
            "correlations": c["correlations"],
            "finding": c["finding"],
            "linked_compiles": c["compiles"],
        }
    return out


def resolve_cluster_id(store, cluster_id: str) -> str:
    """The cluster an id means now: ``merged_into`` followed, unless a later split moved the
    retired id's crashes to another cluster (then that one; see
    ``triage.cluster_views.resolve_current``); UserError for an id no cluster or incident has."""
    from triage.cluster_views import resolve_current

    cur = resolve_current(store, cluster_id)
    if cur is None:
        raise UserError(f"{cluster_id}: no such cluster (see `triage clusters`)")
    return cur


def cluster_detail(store, cluster_id: str) -> dict[str, Any]:
    """The cluster object of ``triage show CLUSTER_ID --format json``."""
    cid = resolve_cluster_id(store, cluster_id)
    rows = store.conn.execute(
        "SELECT incident_id, captured_at, captured_ts, signature, compile_id, link_note "
        "FROM incidents WHERE cluster_id=? ORDER BY captured_ts, incident_id", (cid,)).fetchall()
    from triage.cluster_views import cluster_signatures

    # the same signature as `triage clusters`, `report` and `export` (docs/clustering.md)
    signature = cluster_signatures(store, [cid]).get(cid) \
        or next((r[3] for r in rows if r[3]), None)
    timed = [r for r in rows if r[2] is not None]
    linked = sum(1 for r in rows if r[4] is not None)
    detail: dict[str, Any] = {
        "id": cid,
        "signature": signature,
        "count": len(rows),
        "incidents": [r[0] for r in rows],
        "first_seen": timed[0][1] if timed else None,
        "last_seen": timed[-1][1] if timed else None,
        "linked": linked,
        "unlinked": len(rows) - linked,
    }
    if cid != cluster_id:
        detail["requested_id"] = cluster_id
    detail.update(cluster_contexts(store, [cid])[cid])
    notes = Counter(r[5] for r in rows if r[4] is None and r[5])
    # always present (documented JSON field; empty when every unlinked crash has no note)
    detail["link_notes"] = [{"note": k, "count": v} for k, v in notes.most_common(10)]
    return detail
