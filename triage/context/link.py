"""Link crash incidents to the compile records that produced them.

``link_pending(store, journals, report_paths)`` is called by ingest after every batch and by
``triage link``. It

1. reads the journals given, the journal beside the store (``<store folder>/journal.jsonl``, the
   default of ``triage record``) and every ``triage-journal.jsonl`` in a report's folder or its
   parents up to the ingest root (``roots``; default: the deepest folder common to all reports);
2. loads their records into ``compiles`` idempotently (``record_key`` = sha256 of the canonical
   JSON, so re-reading a journal adds nothing);
3. reads sidecars (``<report stem>.json`` beside a report) and links that report directly;
4. links every crash incident with ``compile_id IS NULL`` to the record whose pid matches the
   crash's pid (tier 0), parent pid (tier 1) or responsible pid (tier 2), whose process name is
   compatible, and whose ``[started - SKEW, ended + SKEW]`` window contains the capture time.
   The most direct tier wins; within it, a record whose window contains the time without the skew
   beats one that needs the skew. Two or more candidates left -> not linked, ``link_note`` says
   which records matched, and the incident is listed in ``ambiguities``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable

import orjson

from triage.context.journal import (JOURNAL_NAME, REPORTS_JOURNAL_NAME,
                                    read_journal_incremental, read_sidecar, record_row)
from triage.errors import UserError, refuse_special_file

SKEW_SECONDS = 5.0
TIER_NAMES = {0: "pid", 1: "parent pid", 2: "responsible pid"}
MAX_LISTED = 200  # ambiguities listed in the summary (all are stored in incidents.link_note)

# Created on first use by link_pending (IF NOT EXISTS): pid lookups when a journal arrives after
# the reports, the unlinked count, and the (cluster, compile) aggregate of the views.
INDEXES = (
    "CREATE INDEX IF NOT EXISTS incidents_pid ON incidents(pid)",
    "CREATE INDEX IF NOT EXISTS incidents_parent_pid ON incidents(parent_pid)",
    "CREATE INDEX IF NOT EXISTS incidents_responsible_pid ON incidents(responsible_pid)",
    "CREATE INDEX IF NOT EXISTS incidents_link ON incidents(kind, compile_id, cluster_id)",
)
META_INCIDENT = "context.link.incident_rowid"   # incidents up to this rowid were examined
META_COMPILE = "context.link.compile_id"        # ... against compiles up to this id
META_JOURNAL = "context.journal:"                # + abs path: how far a journal was read
META_KNOWN = "context.journals"                  # JSON list of journal paths read so far

_COLS = ("record_key", "source", "pid", "process", "started_ts", "ended_ts", "exit_code",
         "model", "config", "raw")


def load_records(store, records: Iterable[dict], source: str) -> list[int]:
    """Insert records into ``compiles`` (idempotent). Returns the compile ids (new or existing),
    in order. Must run inside a transaction or autocommit."""
    ids: list[int] = []
    conn = store.conn
    for rec in records:
        row = record_row(rec, source)
        cur = conn.execute(
            f"INSERT OR IGNORE INTO compiles({', '.join(_COLS)}) VALUES({', '.join('?' * len(_COLS))})",
            [row[c] for c in _COLS])
        if cur.rowcount:
            ids.append(cur.lastrowid)
        else:
            ids.append(conn.execute("SELECT id FROM compiles WHERE record_key=?",
                                    (row["record_key"],)).fetchone()[0])
    return ids


def _report_file(path: str) -> str:
    """For archive members (``/a/b.zip!member``) the archive file on disk."""
    return path.split("!", 1)[0]


def _common_root(paths: list[str]) -> str | None:
    dirs = [os.path.dirname(os.path.abspath(_report_file(p))) for p in paths]
    if not dirs:
        return None
    try:
        return os.path.commonpath(dirs)
    except ValueError:
        return None


class _DirCache:
    """One ``listdir`` per folder: sidecar and journal checks are set lookups."""

    def __init__(self):
        self._names: dict[str, frozenset[str]] = {}

    def names(self, d: str) -> frozenset[str]:
        got = self._names.get(d)
        if got is None:
            try:
                got = frozenset(os.listdir(d))
            except OSError:
                got = frozenset()
            self._names[d] = got
        return got


def discover_journals(report_paths: list[str], roots: list[str] | None = None) -> list[Path]:
    """``triage-journal.jsonl`` files in each report's folder and its parents up to its root."""
    if roots is None:
        root = _common_root(report_paths)
        roots = [root] if root else []
    roots = [os.path.abspath(r if os.path.isdir(r) else os.path.dirname(r)) for r in roots]
    cache = _DirCache()
    found: dict[str, None] = {}
    seen_dirs: set[str] = set()
    for p in report_paths:
        d = os.path.dirname(os.path.abspath(_report_file(p)))
        stop = next((r for r in roots if d == r or d.startswith(r.rstrip(os.sep) + os.sep)), d)
        while d not in seen_dirs:
            seen_dirs.add(d)
            if REPORTS_JOURNAL_NAME in cache.names(d):
                found[os.path.join(d, REPORTS_JOURNAL_NAME)] = None
            if d == stop or os.path.dirname(d) == d:
                break
            d = os.path.dirname(d)
    return [Path(f) for f in found]


def find_sidecars(report_paths: list[str]) -> list[tuple[str, str]]:
    """(report path, sidecar path) for reports with a ``<stem>.json`` beside them."""
    cache = _DirCache()
    out = []
    for p in report_paths:
        if "!" in p:
            continue  # archive members: no sidecar on disk
        d, name = os.path.split(os.path.abspath(p))
        stem, ext = os.path.splitext(name)
        if ext.lower() == ".json":
            continue
        side = stem + ".json"
        if side in cache.names(d):
            out.append((p, os.path.join(d, side)))
    return out


def link_pending(store, journals: list[Path] | None = None, report_paths: list[str] | None = None,
                 *, roots: list[str] | None = None, skew: float = SKEW_SECONDS,
                 store_journal: bool = True, incremental: bool = True,
                 unlinked_sidecars: bool = False, relink: bool = False) -> dict[str, Any]:
    """Load journals/sidecars and link unlinked crash incidents. Returns
    ``{"records_loaded", "linked", "ambiguous", "unlinked", "problems": [{"path","reason"}],
    "ambiguities": [{"incident_id", "path", "reason"}], "journals": [...]}``.

    A wrong explicit journal path is a problem (``check_journals`` raises ``UserError`` for the
    CLI to call first); bad lines are problems. Journals are
    read incrementally (only what was appended since the last call; ``incremental=False`` reads
    them whole), so a bad line is reported once.

    ``relink=True`` (``triage link --relink``) examines every crash incident again, linked by
    pid/time or not (sidecar links are kept), in the same transaction: the summary counts what
    this call linked and lists every ambiguity it found. Without it, an incident already linked
    by pid/time is examined again when a newly loaded record has its pid (or parent /
    responsible pid): a second matching record makes the link ambiguous, and the link is then
    withdrawn and reported (``linked_before`` in the ambiguity), never kept silently.

    The store itself (and its ``-wal``/``-shm``/``-journal`` files) is never read as a journal
    (one problem). A journal is remembered for later calls only once it has given a valid
    record, or while it has no bad line (e.g. still empty): a file given by mistake (binary,
    text, nothing but broken records) is reported and forgotten.
    """
    journals = [Path(j).expanduser() for j in (journals or [])]
    report_paths = list(report_paths or [])
    problems: list[dict] = []
    all_journals: list[Path] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            all_journals.append(p)

    for j in journals:
        add(j)
    if store_journal and getattr(store, "path", None) is not None:
        sj = Path(store.path).parent / JOURNAL_NAME
        if sj.is_file():
            add(sj)
    for j in discover_journals(report_paths, roots):
        add(j)
    # journals read before (e.g. beside reports ingested earlier) are re-read incrementally,
    # so records appended to them later link on the next ingest or `triage link`
    known_raw = _meta(store.conn, META_KNOWN)
    known = orjson.loads(known_raw) if known_raw else []
    for k in known:
        if os.path.isfile(k):
            add(Path(k))

    loaded_records: list[tuple[str, list[dict]]] = []
    states: dict[str, dict | None] = {}
    kept: set[str] = set()       # journals remembered for later calls
    store_files = _store_files(store)
    refused: set[str] = set()
    for j in all_journals:
        absj = os.path.abspath(j)
        what = _is_store_file(j, store_files)
        if what:
            problems.append({"path": str(j), "reason": f"is {what}, not a journal; not read"})
            refused.add(absj)
            continue
        key = META_JOURNAL + absj
        old = _meta(store.conn, key) if incremental else None
        try:
            old_state = orjson.loads(old) if old else None
        except orjson.JSONDecodeError:
            old_state = None
        try:
            recs, probs, state = read_journal_incremental(j, old_state)
        except UserError as exc:
            if j in journals:   # a wrong --journal: one problem line, everything else links
                problems.append({"path": str(j), "reason": str(exc).split(": ", 1)[-1]})
            continue  # an auto-discovered journal vanished: nothing to say
        loaded_records.append((str(j), recs))
        problems.extend({"path": pr.path, "reason": pr.reason} for pr in probs)
        if state.get("records", 0) > 0 or not probs:
            # gave a valid record (now or before), or has no bad line yet: remember it
            states[key] = state
            kept.add(absj)
        else:
            # never a valid record and a bad line (a file given by mistake): forgotten, so it
            # is reported again whenever it is named, and never re-read on its own
            states[key] = None

    sidecar_reports = list(report_paths)
    if unlinked_sidecars:   # `triage link`: also look beside every still-unlinked crash report
        sidecar_reports += [r[0] for r in store.conn.execute(
            "SELECT path FROM incidents WHERE kind='crash' AND compile_id IS NULL")]
    sidecar_links: list[tuple[str, dict, str]] = []
    for rpath, spath in find_sidecars(sidecar_reports):
        rec, prob = read_sidecar(spath)
        if prob:
            problems.append({"path": prob.path, "reason": prob.reason})
        else:
            sidecar_links.append((rpath, rec, spath))

    with store.transaction() as conn:
        before = conn.execute("SELECT COUNT(*) FROM compiles").fetchone()[0]
        for source, recs in loaded_records:
            load_records(store, recs, source)
        for key, state in states.items():
            if state is None:
                conn.execute("DELETE FROM meta WHERE key=?", (key,))
            else:
                _set_meta(conn, key, orjson.dumps(state).decode())
        dropped = {key[len(META_JOURNAL):] for key, state in states.items() if state is None}
        now_known = sorted(({k for k in kept if os.path.isfile(k)}
                            | {k for k in known if os.path.isfile(k)}) - dropped
                           - {k for k in known if _is_store_file(k, store_files)})
        if now_known != known:
            _set_meta(conn, META_KNOWN, orjson.dumps(now_known).decode())
        for sql in INDEXES:
            conn.execute(sql)
        sidecar_linked = 0
        for rpath, rec, spath in sidecar_links:
            (cid,) = load_records(store, [rec], spath)
            sidecar_linked += _link_sidecar(conn, rpath, cid, spath)
        records_loaded = conn.execute("SELECT COUNT(*) FROM compiles").fetchone()[0] - before
        linked, changed, ambiguities = _link_by_pid(conn, skew, relink=relink)
        linked += sidecar_linked
        changed += sidecar_linked
        unlinked = conn.execute("SELECT COUNT(*) FROM incidents WHERE kind='crash' "
                                "AND compile_id IS NULL").fetchone()[0]

    return {
        "records_loaded": records_loaded,
        "linked": linked,
        "ambiguous": len(ambiguities),
        "unlinked": unlinked,
        "changed": changed,
        "problems": problems,
        "ambiguities": ambiguities[:MAX_LISTED],
        "journals": [str(j) for j in all_journals if os.path.abspath(j) not in refused],
    }


def check_journals(journals: Iterable[Path], store_path: Path | str | None = None) -> None:
    """UserError (one line) for a ``--journal`` path that is missing, not a file, or (given
    ``store_path``) the triage store itself or one of its ``-wal``/``-shm``/``-journal`` files."""
    files = _store_files_of(store_path) if store_path is not None else []
    for j in journals:
        p = Path(j).expanduser()
        if not p.exists():
            raise UserError(f"{p}: journal not found")
        if p.is_dir():
            raise UserError(f"{p}: is a folder, not a journal file")
        what = _is_store_file(p, files)
        if what:
            raise UserError(f"--journal {j}: is {what}, not a compile journal")
        refuse_special_file(p)


def _store_files_of(path: Path | str) -> list[tuple[str, str]]:
    base = str(Path(path).expanduser())
    out = [(base, f"the triage store itself ({base})")]
    out += [(base + sfx, f"the triage store's {sfx} file ({base}{sfx})")
            for sfx in ("-wal", "-shm", "-journal")]
    return out


def _store_files(store) -> list[tuple[str, str]]:
    path = getattr(store, "path", None)
    return _store_files_of(path) if path is not None else []


def _is_store_file(p: Path | str, files: list[tuple[str, str]]) -> str | None:
    """What ``p`` is when it is one of the store's files (``files`` from ``_store_files``)."""
    for f, what in files:
        try:
            if os.path.samefile(p, f):
                return what
        except OSError:
            if os.path.realpath(os.path.expanduser(str(p))) == os.path.realpath(f):
                return what
    return None


def _link_sidecar(conn, report_path: str, compile_id: int, sidecar: str) -> int:
    """Link the crash incident of ``report_path`` (found through the ``files`` table, which is
    keyed by path; a direct ``incidents.path`` match otherwise)."""
    note = f"sidecar {sidecar}"
    row = conn.execute("SELECT incident_id FROM files WHERE path=? AND incident_id IS NOT NULL",
                       (report_path,)).fetchone()
    if row:
        cur = conn.execute("UPDATE incidents SET compile_id=?, link_note=? "
                           "WHERE incident_id=? AND kind='crash'", (compile_id, note, row[0]))
    else:
        cur = conn.execute("UPDATE incidents SET compile_id=?, link_note=? "
                           "WHERE path=? AND kind='crash'", (compile_id, note, report_path))
    return cur.rowcount


def relink_all(store, skew: float = SKEW_SECONDS) -> dict[str, Any]:
    """Examine every pid/time link again (sidecar links are kept); returns the summary of that
    call. ``triage link --relink`` calls ``link_pending(..., relink=True)`` directly."""
    return link_pending(store, [], [], store_journal=False, skew=skew, relink=True)


# ---------------------------------------------------------------------------- matching

_SQL_CANDIDATES = """
SELECT i.incident_id, i.path, i.captured_ts, c.id, c.started_ts, c.ended_ts, c.process, NULL,
       {tier} AS tier, i.{name_col} AS crash_name, i.process AS crash_process, i.rowid,
       i.compile_id, i.link_note
FROM incidents i JOIN compiles c
  ON c.pid = i.{pid_col}
 AND c.started_ts <= i.captured_ts + :skew
 AND c.ended_ts >= i.captured_ts - :skew
WHERE i.kind = 'crash' AND i.captured_ts IS NOT NULL
  AND (i.link_note IS NULL OR i.link_note NOT LIKE 'sidecar %')
  AND i.{pid_col} IS NOT NULL {extra} AND {scope}
"""

_TIERS = (
    (0, "pid", "process", ""),
    (1, "parent_pid", "parent_process", "AND i.parent_pid != i.pid"),
    (2, "responsible_pid", "responsible_process",
     "AND i.responsible_pid != i.pid AND i.responsible_pid IS NOT i.parent_pid"),
)

#: not linked through a sidecar (those links are never reconsidered by pid/time)
_NOT_SIDECAR = "(link_note IS NULL OR link_note NOT LIKE 'sidecar %')"


def _candidates(conn, skew: float, inc_mark: int, comp_mark: int) -> list[tuple]:
    """Candidate (incident, compile) pairs worth examining: incidents newer than the incident
    watermark against every compile, and (only when compiles newer than the compile watermark
    exist) older incidents — unlinked, or linked by pid/time — whose pid, parent pid or
    responsible pid matches one of those new compiles, at every tier (so a new record can make
    an existing link ambiguous, and a more direct tier still wins)."""
    params = {"skew": skew, "iw": inc_mark, "cw": comp_mark}
    new_compiles = conn.execute("SELECT EXISTS(SELECT 1 FROM compiles WHERE id > ?)",
                                (comp_mark,)).fetchone()[0]
    old_scope = False
    if new_compiles and inc_mark > 0:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS link_scope(rid INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM temp.link_scope")
        for _tier, pid_col, _name, _extra in _TIERS:
            conn.execute(
                f"INSERT OR IGNORE INTO temp.link_scope SELECT rowid FROM incidents "
                f"WHERE {pid_col} IN (SELECT pid FROM compiles WHERE id > :cw AND pid IS NOT NULL)"
                f" AND rowid <= :iw AND kind='crash' AND {_NOT_SIDECAR}", params)
        old_scope = conn.execute("SELECT EXISTS(SELECT 1 FROM temp.link_scope)").fetchone()[0]
    parts = []
    for tier, pid_col, name_col, extra in _TIERS:
        parts.append(_SQL_CANDIDATES.format(tier=tier, pid_col=pid_col, name_col=name_col,
                                            extra=extra, scope="i.rowid > :iw"))
        if old_scope:
            parts.append(_SQL_CANDIDATES.format(
                tier=tier, pid_col=pid_col, name_col=name_col, extra=extra,
                scope="i.rowid IN (SELECT rid FROM temp.link_scope)"))
    return conn.execute(" UNION ".join(parts), params).fetchall()


def _norm_name(name: str | None) -> str:
    if not name:
        return ""
    n = os.path.basename(name.strip()).lower()
    n = re.sub(r"\.(app|exe)$", "", n)
    return re.sub(r"[\d.]+$", "", n)  # python3.12 -> python


def names_compatible(recorded: str | None, crashed: str | None, argv: list | None = None) -> bool:
    """Process names agree: equal (case/version-insensitive), one a truncation of the other,
    either unknown, or the crashed name is a program named in the record's argv (``xcrun
    coremlcompiler`` exec'ing ``coremlcompiler``, ``python -m`` running ``Python``)."""
    a, b = _norm_name(recorded), _norm_name(crashed)
    if not a or not b or a == b:
        return True
    if min(len(a), len(b)) >= 8 and (a.startswith(b) or b.startswith(a)):
        return True
    for tok in argv or []:
        if isinstance(tok, str) and not tok.startswith("-") and _norm_name(tok) == b:
            return True
    return False


def _link_by_pid(conn, skew: float, relink: bool = False) -> tuple[int, int, list[dict]]:
    """Link (or re-examine) crash incidents; returns (linked: incidents given a compile they
    did not have, changed: incidents whose compile changed (linked, switched or withdrawn),
    ambiguities). ``relink``: every incident is examined, and a pid/time link or note that no
    longer has any candidate is cleared."""
    inc_mark = 0 if relink else int(_meta(conn, META_INCIDENT) or 0)
    comp_mark = 0 if relink else int(_meta(conn, META_COMPILE) or 0)
    by_incident: dict[str, list[tuple]] = {}
    for row in _candidates(conn, skew, inc_mark, comp_mark):
        by_incident.setdefault(row[0], []).append(row)
    linked = changed = 0
    ambiguities: list[dict] = []
    updates: list[tuple] = []
    compat: dict[tuple, bool] = {}
    for incident_id, rows in by_incident.items():
        good, rejected = [], []
        old_cid, old_note, rowid = rows[0][12], rows[0][13], rows[0][11]
        for r in rows:
            (_iid, _path, _ts, cid, _st, _en, cproc, _raw, _tier, crash_name, _cp, _rowid,
             _oc, _on) = r
            key = (cid, crash_name)
            ok = compat.get(key)
            if ok is None:
                ok = names_compatible(cproc, crash_name)
                if not ok:  # only then look at argv (exec'd tools, interpreters)
                    row = conn.execute("SELECT raw FROM compiles WHERE id=?", (cid,)).fetchone()
                    try:
                        argv = orjson.loads(row[0]).get("argv") if row else None
                    except Exception:  # noqa: BLE001 - raw is ours; be safe anyway
                        argv = None
                    ok = names_compatible(cproc, crash_name, argv)
                compat[key] = ok
            (good if ok else rejected).append(r)
        path = rows[0][1]
        if not good:
            r = rejected[0]
            note = (f"{TIER_NAMES[r[8]]} matched compile #{r[3]} in time but process differs "
                    f"(recorded {r[6]!r}, crash {r[9]!r})")
            new = (None, note)
        else:
            best_tier = min(r[8] for r in good)
            tier_rows = {r[3]: r for r in good if r[8] == best_tier}  # distinct compile ids
            if len(tier_rows) > 1:
                strict = {cid: r for cid, r in tier_rows.items() if r[4] <= r[2] <= r[5]}
                if len(strict) == 1:
                    tier_rows = strict
            if len(tier_rows) == 1:
                (cid,) = tier_rows
                new = (cid, None if best_tier == 0 else f"linked via {TIER_NAMES[best_tier]}")
            else:
                ids = sorted(tier_rows)
                note = (f"ambiguous: {len(ids)} compiles match by {TIER_NAMES[best_tier]} and "
                        f"time (#{', #'.join(map(str, ids))}); not linked")
                new = (None, note)
                amb = {"incident_id": incident_id, "path": path, "reason": note,
                       "candidates": ids}
                if old_cid is not None:
                    amb["linked_before"] = old_cid
                ambiguities.append(amb)
        if new[0] != old_cid:
            changed += 1
        if new[0] is not None and (relink or new[0] != old_cid):
            linked += 1   # --relink: every link it confirmed or made
        if new != (old_cid, old_note):
            updates.append((new[0], new[1], rowid))
    updates.sort(key=lambda u: u[2])   # rowid order: sequential page writes
    conn.executemany("UPDATE incidents SET compile_id=?, link_note=? WHERE rowid=?", updates)
    if relink:   # links and notes that no candidate supports any more are forgotten
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS link_seen(rid INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM temp.link_seen")
        conn.executemany("INSERT OR IGNORE INTO temp.link_seen VALUES(?)",
                         [(rows[0][11],) for rows in by_incident.values()])
        stale = (f"kind='crash' AND {_NOT_SIDECAR} AND rowid NOT IN "
                 f"(SELECT rid FROM temp.link_seen)")
        changed += conn.execute(f"SELECT COUNT(*) FROM incidents WHERE compile_id IS NOT NULL "
                                f"AND {stale}").fetchone()[0]
        conn.execute(f"UPDATE incidents SET compile_id=NULL, link_note=NULL WHERE "
                     f"(compile_id IS NOT NULL OR link_note IS NOT NULL) AND {stale}")
    top_inc = conn.execute("SELECT MAX(rowid) FROM incidents").fetchone()[0] or 0
    top_comp = conn.execute("SELECT MAX(id) FROM compiles").fetchone()[0] or 0
    _set_meta(conn, META_INCIDENT, str(top_inc))
    _set_meta(conn, META_COMPILE, str(top_comp))
    return linked, changed, ambiguities


def _meta(conn, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return row[0] if row else None


def _set_meta(conn, key: str, value: str) -> None:
    conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) "
                 "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))


link_incidents = link_pending   # name used in docs/architecture.md
