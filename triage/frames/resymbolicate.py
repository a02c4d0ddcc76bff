"""``triage symbolicate``: re-symbolicate stored reports, re-normalize, recompute signatures.

Everything is written in one ``Store.transaction()``: either every changed report is rewritten
(``incidents.frames``, ``last_exception``, ``detail``, ``signature``, ``proto_signature``,
``stack_id``, the ``stacks`` counts and the ``symbol_map`` peer table) or nothing is.
Cluster assignments are left alone: ``triage recluster`` regroups changed signatures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

import orjson

from triage.records import KIND_CRASH
from triage.store.db import dump_frames, load_frames

_UPSERT_STACK = ("INSERT INTO stacks (stack_id, signature, proto_signature, frames, count) "
                 "VALUES (?, ?, ?, ?, 1) ON CONFLICT(stack_id) DO UPDATE SET count = count + 1")


def _dumps(obj: Any) -> bytes:
    try:
        from triage.ingest import _dumps as ingest_dumps  # same encoding as ingest

        return ingest_dumps(obj)
    except ImportError:  # pragma: no cover
        from triage.store.db import _default

        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS, default=_default)


def _jtext(obj: Any) -> Optional[str]:
    return None if obj is None else _dumps(obj).decode()


def _new_detail(old_blob: Optional[bytes], rep) -> bytes:
    """The detail blob with the report's new threads and notes; everything else (images in
    whichever form ingest stored them, header, extra) is carried over as stored."""
    from triage.store.db import compress_blob, decompress_blob

    detail: dict[str, Any] = {}
    if old_blob is not None:
        try:
            detail = orjson.loads(decompress_blob(old_blob))
        except Exception:  # noqa: BLE001 - unreadable old blob: rebuild it whole
            detail = {}
    if not isinstance(detail, dict) or not detail:
        detail = {"images": rep.images, "header": rep.header, "extra": rep.extra}
    elif "threads" not in detail:  # lazily ingested: threads and images came from ``original``
        detail["images"] = rep.images
    detail["threads"] = rep.threads
    detail["notes"] = rep.notes
    return compress_blob(_dumps(detail))


def _resign(conn, rep, signature, old: tuple, summary: dict) -> tuple:
    """Sign ``rep`` again (crashes only); ``old`` and the result are ``(signature,
    proto_signature, stack_id)``. Moves one from the old ``stacks`` count to the new stack and
    records a changed signature in ``summary``. A failing signature keeps ``old``."""
    sig = None
    if signature is not None and rep.kind == KIND_CRASH:
        try:
            sig = signature(rep)
        except Exception as exc:  # noqa: BLE001
            summary["problems"].append(f"{rep.incident_id}: signature failed: {exc}")
    new = (sig.signature, sig.proto_signature, sig.stack_id) if sig is not None else tuple(old)
    if sig is not None and new[2] != old[2]:
        if old[2]:
            conn.execute("UPDATE stacks SET count = MAX(count - 1, 0) WHERE stack_id=?", (old[2],))
        if new[2]:
            conn.execute(_UPSERT_STACK, (new[2], new[0] or "", new[1] or "",
                                         _jtext(list(sig.stack or []))))
    if new[0] != old[0]:
        summary["signatures_changed"] += 1
        summary["changed"].append(rep.incident_id)
    return new


def _signature_fn(rule_files: list[Path]):
    try:
        from triage.signature import compute_signature, load_siglists
    except ImportError:
        return None
    lists = load_siglists(list(rule_files))
    return lambda r: compute_signature(r, lists)


def resymbolicate_store(store, dsym_paths: Iterable[Path], rule_files: Iterable[Path] = (), *,
                        incident_ids: Optional[list[str]] = None,
                        use_peers: bool = True, learn_all: bool = True) -> dict[str, Any]:
    """Returns the summary: ``reports_seen``, ``reports_changed``, ``frames_dsym``,
    ``frames_peer``, ``signatures_changed``, ``dsym_files``, ``changed`` (incident ids whose
    signature changed), ``problems``.

    ``learn_all=False`` skips re-reading every stored report to learn peer symbols: ingest uses
    it, because it already saved what each new report teaches into ``symbol_map``."""
    from triage.errors import UserError
    from triage.frames.normalize import load_rules, normalize_report
    from triage.frames.stored import load_report, resolve_incident_id
    from triage.frames.symbolize import (DsymIndex, PeerSymbols, has_unresolved,
                                         symbolicate_report)

    dsym_paths = list(dsym_paths)
    rule_files = list(rule_files)
    index = DsymIndex.from_paths(dsym_paths) if dsym_paths else DsymIndex()
    if dsym_paths and not len(index):
        raise UserError(f"{dsym_paths[0]}: no Mach-O or dSYM file found"
                        + (" (and in the other --dsym paths)" if len(dsym_paths) > 1 else ""))
    rules = load_rules(rule_files)
    signature = _signature_fn(rule_files)
    summary: dict[str, Any] = {"reports_seen": 0, "reports_changed": 0, "frames_dsym": 0,
                               "frames_peer": 0, "signatures_changed": 0,
                               "dsym_files": len(index), "changed": [],
                               "problems": list(index.problems)}
    with store.transaction() as conn:
        if incident_ids:
            ids = []
            for text in incident_ids:
                iid = resolve_incident_id(conn, text)
                if iid is None:
                    raise UserError(f"{text}: no such incident id in the store")
                ids.append(iid)
        else:
            ids = [r[0] for r in conn.execute("SELECT incident_id FROM incidents "
                                              "ORDER BY incident_id")]
        peers = PeerSymbols.load(conn) if use_peers else None
        if peers is not None and learn_all:  # pass 1: learn from every stored report
            for iid in [r[0] for r in conn.execute("SELECT incident_id FROM incidents")]:
                rep = load_report(conn, iid)
                if rep is None:
                    continue
                symbolicate_report(rep, index)
                peers.observe(rep)
        for iid in ids:
            rep = load_report(conn, iid)
            if rep is None:
                continue
            summary["reports_seen"] += 1
            n_dsym = symbolicate_report(rep, index)
            n_peer = peers.apply(rep) if peers is not None else 0
            normalize_report(rep, rules)
            conn.execute("UPDATE incidents SET needs_symbols=? WHERE incident_id=?",
                         (1 if has_unresolved(rep) else 0, iid))
            old = conn.execute("SELECT frames, last_exception, signature, proto_signature, "
                               "stack_id, detail FROM incidents WHERE incident_id=?",
                               (iid,)).fetchone()
            new_frames = dump_frames(rep.crashing_frames())
            new_le = dump_frames(rep.last_exception_backtrace)
            same_frames = new_frames == old[0] and new_le == old[1]
            if not n_dsym and not n_peer and same_frames:
                continue
            detail = _new_detail(old[5], rep)
            if same_frames and detail == old[5]:    # named again exactly as stored: no change
                continue
            new_sig = _resign(conn, rep, signature, tuple(old[2:5]), summary)
            conn.execute("UPDATE incidents SET frames=?, last_exception=?, detail=?, "
                         "signature=?, proto_signature=?, stack_id=? WHERE incident_id=?",
                         (new_frames, new_le, detail, *new_sig, iid))
            summary["reports_changed"] += 1
            summary["frames_dsym"] += n_dsym
            summary["frames_peer"] += n_peer
        if peers is not None:
            peers.save(conn)
    return summary


def _nameable(row, peers) -> bool:
    """Whether ``peers`` can name at least one unsymbolicated frame of the stored crashing
    thread / last exception backtrace (a cheap look at the JSON, before any Frame is built)."""
    lookup = peers.lookup
    for col in ("frames", "last_exception"):
        text = row[col]
        if not text:
            continue
        try:
            frames = load_frames(text)
        except Exception:  # noqa: BLE001 - let the full path say what is wrong
            return True
        for f in frames if isinstance(frames, list) else ():
            if isinstance(f, dict) and f.get("symbol") is None:
                off = f.get("offset")
                if isinstance(off, int) and f.get("image_uuid") and \
                        lookup(f["image_uuid"], off) is not None:
                    return True
    return False


#: the columns ``triage.cluster.report_from_row`` reads (never the big ``original`` blob)
_CRASH_COLUMNS = ("incident_id", "path", "sha256", "format", "bug_type", "kind", "process",
                  "exception_type", "signal", "exception_codes", "exception_subtype",
                  "exception_message", "termination_indicator", "asi", "frames",
                  "last_exception", "detail", "signature", "proto_signature", "stack_id")


def peer_symbolicate_crashes(store, incident_ids: list[str], peers,
                             rule_files: Iterable[Path] = ()) -> dict[str, Any]:
    """Ingest's peer pass: name the unsymbolicated frames of the crashing thread and the last
    exception backtrace of ``incident_ids`` from ``peers`` (a ``PeerSymbols``), re-normalize,
    re-sign and rewrite ``frames``, ``last_exception``, the signature columns, ``stacks``
    counts and ``needs_symbols``, in one transaction. Only the stored columns are read (not the
    report's original bytes): signatures only depend on those frames. The other threads are
    named when a report is read in full (``triage symbolicate`` rewrites them all).

    Returns ``reports_seen``, ``reports_changed``, ``frames_peer``, ``signatures_changed``,
    ``changed``, ``problems``."""
    import sqlite3

    from triage.cluster import report_from_row
    from triage.frames.normalize import load_rules, normalize_report
    from triage.frames.symbolize import has_unresolved

    rule_files = list(rule_files)
    rules = load_rules(rule_files)
    signature = _signature_fn(rule_files)
    summary: dict[str, Any] = {"reports_seen": 0, "reports_changed": 0, "frames_peer": 0,
                               "signatures_changed": 0, "changed": [], "problems": []}
    cols = ", ".join(_CRASH_COLUMNS)
    left: set[str] = set()          # stacks the re-signed reports left
    with store.transaction() as conn:
        for start in range(0, len(incident_ids), 500):
            chunk = incident_ids[start:start + 500]
            cur = conn.execute(f"SELECT {cols} FROM incidents WHERE incident_id IN "
                               f"({','.join('?' * len(chunk))})", chunk)
            cur.row_factory = sqlite3.Row
            for row in cur.fetchall():
                summary["reports_seen"] += 1
                if not _nameable(row, peers):
                    continue
                rep = report_from_row(row)
                n_peer = peers.apply(rep)
                if not n_peer:
                    continue
                normalize_report(rep, rules)
                old = (row["signature"], row["proto_signature"], row["stack_id"])
                new_sig = _resign(conn, rep, signature, old, summary)
                if old[2] and new_sig[2] != old[2]:
                    left.add(old[2])
                conn.execute("UPDATE incidents SET frames=?, last_exception=?, signature=?, "
                             "proto_signature=?, stack_id=?, needs_symbols=? "
                             "WHERE incident_id=?",
                             (dump_frames(rep.crashing_frames()),
                              dump_frames(rep.last_exception_backtrace),
                              *new_sig, 1 if has_unresolved(rep) else 0, rep.incident_id))
                summary["reports_changed"] += 1
                summary["frames_peer"] += n_peer
        # a stack every report of which was re-signed here, and never clustered, is gone
        conn.executemany("DELETE FROM stacks WHERE stack_id=? AND count <= 0 AND "
                         "cluster_id IS NULL", [(sid,) for sid in sorted(left)])
    return summary
