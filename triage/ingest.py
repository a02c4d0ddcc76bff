"""The ingest pipeline: discover -> read -> parse -> symbolize -> normalize -> signature -> store
-> cluster -> link.

``run_ingest`` streams: discovery yields one entry at a time, each file is read, hashed, parsed
and enriched, and the resulting rows are written in batches of :data:`BATCH_SIZE` reports per
``Store.transaction()`` (``BEGIN IMMEDIATE``). A report's ``files`` row is written in the same
transaction as its ``incidents`` row, so a kill or Ctrl-C loses at most the current batch and a
re-run stores each report exactly once. ``INSERT OR IGNORE`` on ``incident_id`` / ``sha256``
makes two concurrent ingests into one store safe: whichever commits second counts the report as
already known.

Memory does not grow with the number of files: only the current batch's rows are held.
See docs/ingest.md for the summary contract and design notes.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Optional

import orjson

from triage.records import KIND_CRASH, FileProblem, ParseError, Report
from triage.reports.discover import Candidate, Skipped, discover, source_file
from triage.store.db import compress_blob, dump_frames

BATCH_SIZE = 500
#: also flush a batch once its packed rows reach this many bytes (bounds memory on huge files)
BATCH_BYTES = 64 * 1024 * 1024
#: parse in worker processes from this many candidates on (below, a pool costs more than it saves)
POOL_MIN_FILES = 64
#: files in flight per worker (bounds memory; enough to keep the workers busy while a batch
#: commits and SQLite checkpoints the WAL). The main process holds the bytes only of the archive
#: members among them (plain files are read by the workers) plus the finished rows.
POOL_WINDOW_PER_WORKER = 128
#: plain files handed to a worker per task (by path: the worker reads, hashes, parses)
POOL_CHUNK = 8

INCIDENT_COLUMNS = (
    "incident_id", "path", "sha256", "format", "bug_type", "kind", "process", "process_path",
    "pid", "parent_process", "parent_pid", "responsible_process", "responsible_pid",
    "bundle_id", "app_version", "captured_at", "captured_ts", "launched_at", "os_version",
    "os_train", "os_build", "os_release_type", "platform", "hardware_model", "cpu_type",
    "exception_type", "signal", "exception_codes", "exception_subtype", "exception_message",
    "termination_namespace", "termination_code", "termination_indicator",
    "termination_by_process", "termination_by_pid", "crash_reporter_key", "asi",
    "crashing_thread", "frames", "last_exception", "detail", "signature", "proto_signature",
    "stack_id", "needs_symbols", "ingested_at",
)
_INSERT_ORIGINAL = "INSERT OR IGNORE INTO originals (incident_id, data) VALUES (?, ?)"
_INSERT_INCIDENT = (f"INSERT OR IGNORE INTO incidents ({', '.join(INCIDENT_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(INCIDENT_COLUMNS))})")
_UPSERT_STACK = ("INSERT INTO stacks (stack_id, signature, proto_signature, frames, count) "
                 "VALUES (?, ?, ?, ?, 1) ON CONFLICT(stack_id) DO UPDATE SET count = count + 1")
_UPSERT_FILE = ("INSERT INTO files (path, size, mtime_ns, sha256, status, incident_id, seen_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
                "size=excluded.size, mtime_ns=excluded.mtime_ns, sha256=excluded.sha256, "
                "status=excluded.status, incident_id=excluded.incident_id, "
                "seen_at=excluded.seen_at")
_UPSERT_ERROR = ("INSERT INTO errors (path, reason, seen_at) VALUES (?, ?, ?) "
                 "ON CONFLICT(path) DO UPDATE SET reason=excluded.reason, seen_at=excluded.seen_at")

#: discovery reasons that, for a path *argument* that does not exist (or a glob that matches
#: nothing), are a usage mistake: reported (exit 1) but never stored in ``errors`` (docs/ingest.md)
_MISSING_ARG_REASONS = ("no such file or folder", "no files match this pattern")
_FORGET_MISSING_ARG = ("DELETE FROM errors WHERE path=? AND reason IN (%s)"
                       % ", ".join("?" * len(_MISSING_ARG_REASONS)))


def missing_arguments(paths: Iterable[str]) -> set[str]:
    """Absolute paths of the arguments that do not exist (globs that match nothing included),
    spelled as ``discover`` reports them."""
    missing = set()
    for raw in paths:
        expanded = os.path.expanduser(os.fspath(raw))
        if not os.path.lexists(expanded):
            missing.add(os.path.abspath(expanded))
    return missing


#: files-table statuses that let an unchanged file be skipped without reading it
_DONE_STATUSES = {"ingested": "already_known", "duplicate": "already_known", "skipped": "skipped"}


# --------------------------------------------------------------------------- enrichment stages

@dataclass
class Stages:
    """The enrichment functions, loaded once per run (None where a stage is not installed)."""

    looks_like_report: Optional[Callable[[bytes], bool]] = None
    parse_bytes: Optional[Callable[[bytes, str, str], Report]] = None
    symbolicate: Optional[Callable[[Report], Any]] = None
    normalize: Optional[Callable[[Report], Any]] = None
    signature: Optional[Callable[[Report], Any]] = None
    #: peer symbols (``triage.frames.symbolize.PeerSymbols``) known to this process: each
    #: report's own symbolicated frames are learned, then its unsymbolicated frames named,
    #: before normalize and signature. Set by ``run_ingest`` (a parser worker holds a copy of
    #: the store's table as of the fork plus what it learns; the run's final peer pass names
    #: what a worker could not know yet).
    peers: Any = None


def load_stages(rule_files: Iterable = (), dsym_paths: Iterable = ()) -> Stages:
    """The enrichment functions with their rules loaded once (also in each worker process)."""
    from triage.frames.normalize import load_rules, normalize_report
    from triage.reports.detect import looks_like_report, parse_bytes
    from triage.signature import compute_signature, load_siglists

    st = Stages(looks_like_report=looks_like_report, parse_bytes=parse_bytes)
    dsym_paths = list(dsym_paths)
    if dsym_paths:
        from triage.frames.symbolize import DsymIndex, symbolicate_report

        index = DsymIndex.from_paths(dsym_paths)
        st.symbolicate = lambda r: symbolicate_report(r, index)
    rules = load_rules(list(rule_files))
    st.normalize = lambda r: normalize_report(r, rules)
    sl = load_siglists(list(rule_files))
    st.signature = lambda r: compute_signature(r, sl)
    return st


# --------------------------------------------------------------------------- row building

def _dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        from triage.store.db import _big_ints, _default

        return orjson.dumps(_big_ints(obj), option=orjson.OPT_NON_STR_KEYS, default=_default)


def _jtext(obj: Any) -> Optional[str]:
    return None if obj is None else _dumps(obj).decode()


def _epoch(iso: Optional[str]) -> Optional[float]:
    if not iso:
        return None
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def incident_row(r: Report, sig: Any, now: str, needs_symbols: bool = False,
                 raw_images: Optional[list] = None, lazy: bool = False) -> tuple:
    """The ``incidents`` row for a parsed (and enriched) report, in INCIDENT_COLUMNS order.

    ``lazy``: the report was parsed under ``ips.raw_images(lazy_threads=True)`` (only the
    crashing thread has frames, ``r.images`` is empty) and its file bytes go to the
    ``originals`` table: the detail blob then holds only header, extra and notes, and
    ``triage.frames.stored`` parses the other threads and the images from the original bytes
    when the report is read.
    ``raw_images``: the report's undecoded ``usedImages`` list (parsed under
    ``ips.raw_images()``, so ``r.images`` is empty): stored as ``images_raw`` in the detail blob
    and turned into the usual ``images`` by ``triage.store.db.unpack`` when read.
    """
    if lazy:
        detail = {"header": r.header, "extra": r.extra, "notes": r.notes}
    elif raw_images is not None and not r.images:
        detail = {"threads": r.threads, "images_raw": raw_images, "header": r.header,
                  "extra": r.extra, "notes": r.notes}
    else:
        detail = {"threads": r.threads, "images": r.images, "header": r.header,
                  "extra": r.extra, "notes": r.notes}
    detail = compress_blob(_dumps(detail))
    return (
        r.incident_id, r.path, r.sha256, r.format, r.bug_type, r.kind, r.process,
        r.process_path, _int_or_none(r.pid), r.parent_process, _int_or_none(r.parent_pid),
        r.responsible_process, _int_or_none(r.responsible_pid), r.bundle_id, r.app_version,
        r.captured_at, _epoch(r.captured_at),
        r.launched_at, r.os_version, r.os_train, r.os_build, r.os_release_type, r.platform,
        r.hardware_model, r.cpu_type, r.exception_type, r.signal, r.exception_codes,
        r.exception_subtype, r.exception_message, r.termination_namespace,
        _int_or_none(r.termination_code), r.termination_indicator, r.termination_by_process,
        _int_or_none(r.termination_by_pid), r.crash_reporter_key, _jtext(r.asi),
        _int_or_none(r.crashing_thread),
        dump_frames(r.crashing_frames()), dump_frames(r.last_exception_backtrace), detail,
        getattr(sig, "signature", None), getattr(sig, "proto_signature", None),
        getattr(sig, "stack_id", None), 1 if needs_symbols else 0, now,
    )


def _int_or_none(v: Any) -> Any:
    """SQLite INTEGER is signed 64-bit (binding a bigger Python int raises OverflowError, and
    bigger decimal text turns into a lossy REAL in an INTEGER column): a number beyond it
    (termination codes are unsigned 64-bit; a broken report can hold any pid) is kept exact as
    hex text ``0x...`` / ``-0x...``, which SQLite leaves as TEXT. Applied to every INTEGER
    column of :func:`incident_row` that carries a number from the report."""
    if isinstance(v, int) and not isinstance(v, bool) and not (-(2**63) <= v < 2**63):
        return hex(v)
    return v


# --------------------------------------------------------------------------- per-report work

_DETAIL_INDEX = INCIDENT_COLUMNS.index("detail")
_NEEDS_INDEX = INCIDENT_COLUMNS.index("needs_symbols")
_WORKER_STAGES: Optional[Stages] = None


def enrich(stages: Stages, report: Report,
           learn: Optional[Callable[[Report], Any]] = None) -> tuple[Any, int]:
    """Run symbolize, (``learn``,) peer symbols, normalize and (crashes only) signature in
    place; (signature, failures). ``learn(report)`` runs once dSYM symbols are in, before peer
    symbols name what is left, so a report teaches its own frames too.

    A stage that raises does not lose the report: the failure becomes a note on the report.
    """
    sig = None
    failures = 0
    for name, fn in (("symbolize", stages.symbolicate), ("learn peer symbols", learn),
                     ("peer symbols", _peer_apply(stages)), ("normalize", stages.normalize)):
        if fn is None:
            continue
        try:
            fn(report)
        except Exception as exc:  # noqa: BLE001
            failures += 1
            report.notes.append(f"{name} failed: {type(exc).__name__}: {exc}")
    if stages.signature is not None and report.kind == KIND_CRASH:
        try:
            sig = stages.signature(report)
        except Exception as exc:  # noqa: BLE001
            failures += 1
            report.notes.append(f"signature failed: {type(exc).__name__}: {exc}")
        else:
            for n in getattr(sig, "notes", None) or ():
                report.notes.append(f"signature: {n}")
    return sig, failures


def _peer_apply(stages: Stages) -> Optional[Callable[[Report], Any]]:
    peers = stages.peers
    return None if peers is None or not peers.by_uuid else peers.apply


def process_bytes(stages: Stages, data: bytes, path: str, sha: str, explicit: bool) -> tuple:
    """Parse and enrich one file's bytes into its rows (pure: no store access).

    Returns ``("skipped",)``, ``("error", reason)`` or ``("ok", kind, incident_id, incident_row,
    stack_row_or_None, stage_failures, peer_observations, original, peer_named)``
    (``original``: the compressed file bytes, for the ``originals`` table; ``peer_named``:
    frames of the crashing thread / last exception backtrace named from peer symbols).
    """
    if explicit and stages.looks_like_report is not None:
        try:
            ok = stages.looks_like_report(data[:65536])
        except Exception:  # noqa: BLE001 - a detector bug must not stop the batch
            ok = True
        if not ok:
            return ("skipped",)
    from triage.reports.ips import raw_images, symbol_facts

    # lazy: only the crashing thread gets Frame records; the file's bytes are stored and the
    # other threads are built from them when read. A dSYM rewrites every thread: parse them all.
    lazy = stages.symbolicate is None
    try:
        with raw_images(lazy_threads=lazy) as held:
            report = stages.parse_bytes(data, path, sha)
    except ParseError as exc:
        return ("error", _one_line(str(exc)) or "unreadable report")
    except RecursionError:
        return ("error", "report nested too deeply")
    except Exception as exc:  # noqa: BLE001 - parser bug: report it, keep going
        return ("error", _one_line(f"parser failed: {type(exc).__name__}: {exc}"))
    from triage.frames.symbolize import has_unresolved, observations

    entry = next((h for h in held if h[0] is report), None)
    lazy = entry is not None and len(entry) == 4
    raw, facts = None, ()
    if lazy:   # learn from the raw JSON of every thread (the built frames add nothing to it)
        facts = symbol_facts(entry[2], entry[1], None,
                             stages.peers.seen if stages.peers is not None else None, entry[3])
    elif entry is not None:
        raw = entry[1]
    original = compress_blob(data)      # every report keeps its file's bytes (``originals``)
    del data
    # peer symbols: what this report teaches (sent to the parent; learned here before its own
    # unsymbolicated frames are named), and whether it still has frames to name
    learned: list = []
    if stages.peers is not None:
        learn = lambda r: learned.extend(stages.peers.learn(None if lazy else r, facts))  # noqa: E731
    else:
        learn = lambda r: learned.extend(observations(None if lazy else r, facts))  # noqa: E731
    sig, failures = enrich(stages, report, learn)
    obs = learned
    inc = incident_row(report, sig, _now(), has_unresolved(report), raw, lazy)
    stack = None
    if sig is not None and getattr(sig, "stack_id", None):
        stack = (sig.stack_id, sig.signature or "", sig.proto_signature or "",
                 _jtext(list(sig.stack or [])))
    named = sum(1 for f in report.crashing_frames() if f.symbolicated_by == "peer") + sum(
        1 for f in report.last_exception_backtrace or () if f.symbolicated_by == "peer")
    return ("ok", report.kind, report.incident_id, inc, stack, failures, obs, original, named)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _worker_init(rule_files, dsym_paths) -> None:
    global _WORKER_STAGES
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the main process
    if _WORKER_STAGES is None:  # spawned, not forked: learn peer symbols from scratch
        from triage.frames.symbolize import PeerSymbols

        _WORKER_STAGES = load_stages(rule_files, dsym_paths)
        _WORKER_STAGES.peers = PeerSymbols()


def _work(data: bytes, path: str, sha: str, explicit: bool) -> tuple:
    return process_bytes(_WORKER_STAGES, data, path, sha, explicit)


def _work_files(items: list[tuple]) -> list[tuple]:
    """Read, hash and process plain files ``(path, size, mtime_ns, explicit)`` in a worker:
    one ``(sha256, result)`` each, result as :func:`process_bytes` returns it, or
    ``("oserror", reason)`` when the file cannot be read (sha256 None)."""
    out = []
    for path, size, mtime_ns, explicit in items:
        try:
            data = Candidate(path, size, mtime_ns, explicit).read()
        except OSError as exc:
            out.append((None, ("oserror", _os_reason(exc))))
            continue
        sha = hashlib.sha256(data).hexdigest()
        out.append((sha, process_bytes(_WORKER_STAGES, data, path, sha, explicit)))
    return out


# --------------------------------------------------------------------------- the run

@dataclass
class _Pending:
    """One report's rows, waiting for the batch to commit."""

    cand_path: str
    size: int
    mtime_ns: int
    sha256: str
    kind: str
    incident: tuple
    stack: Optional[tuple]
    observations: list = field(default_factory=list)
    original: Optional[bytes] = None
    peer_named: int = 0


class _Run:
    def __init__(self, store, stages: Stages, on_problem, progress, workers: int = 1,
                 rule_files=(), dsym_paths=()):
        self.store = store
        self.workers = workers
        self.rule_files = list(rule_files)
        self.dsym_paths = list(dsym_paths)
        self.pool = None
        self.pool_used = False
        self.inflight = None
        self.inflight_shas: dict[str, str] = {}
        #: sha256 -> twins waiting in ``inflight`` (same bytes as an archive member still being
        #: parsed), and the outcome of that member once known, which each twin then repeats
        self.twins: dict[str, int] = {}
        self.twin_results: dict[str, tuple] = {}
        #: sha256 -> reason, for reports whose rows SQLite refused at flush (rare)
        self.store_failed: dict[str, str] = {}
        self.inflight_files = 0
        self.chunk: list[Candidate] = []        # plain files waiting to be sent to a worker
        self.window = 0
        self.pending_count = 0
        self.stages = stages
        self.on_problem = on_problem
        self.progress = progress
        self.summary: dict[str, Any] = {
            "files_seen": 0, "ingested": 0, "already_known": 0, "skipped": 0,
            "errors": [], "by_kind": {},
        }
        self.batch: list[_Pending] = []
        self.batch_bytes = 0
        self.batch_files: list[tuple] = []      # duplicate / skipped files rows
        self.batch_errors: list[tuple] = []     # (path, reason, size, mtime_ns)
        #: arguments that did not exist when the run started (see ``missing_arguments``)
        self.missing_args: set[str] = set()
        self.batch_forget: list[str] = []       # such arguments: stale ``errors`` rows to drop
        self.batch_shas: dict[str, str] = {}    # sha256 -> incident_id within the batch
        self.batch_ids: set[str] = set()
        self.ingested_paths: list[str] = []
        self.stage_failures = 0
        self.peer_named = 0                     # frames named from peers in the parser
        self.conn = store.conn
        from triage.frames.symbolize import PeerSymbols

        self.peers = PeerSymbols.load(store)    # symbols learned from symbolicated peers
        stages.peers = self.peers               # parsing in this process: the live table
        self.needs_symbols: list[str] = []      # new incidents with unsymbolicated frames

    # ---- problems
    def problem(self, path: str, reason: str, size: int = 0, mtime_ns: int = 0) -> None:
        self.summary["errors"].append({"path": path, "reason": reason})
        if reason in _MISSING_ARG_REASONS and path in self.missing_args:
            # a mistyped argument is a usage mistake, not a bad file: reported (exit 1) but not
            # recorded, else it would stay in `incidents --errors` for ever; a row an earlier
            # version stored for it is dropped
            self.batch_forget.append(path)
        else:
            self.batch_errors.append((path, reason, size, mtime_ns))
        if self.on_problem is not None:
            self.on_problem(path, reason)

    # ---- per entry
    def handle(self, item) -> None:
        self.summary["files_seen"] += 1
        if isinstance(item, Skipped):
            self.summary["skipped"] += 1
            return
        if isinstance(item, FileProblem):
            self.problem(item.path, item.reason)
            return
        self.candidate(item)

    def candidate(self, c: Candidate) -> None:
        """Cheap checks in this process; parse + enrich inline or in the worker pool."""
        conn = self.conn
        row = conn.execute("SELECT size, mtime_ns, status FROM files WHERE path=?",
                           (c.path,)).fetchone()
        if row is not None and row[0] == c.size and row[1] == c.mtime_ns \
                and row[2] in _DONE_STATUSES:
            self.summary[_DONE_STATUSES[row[2]]] += 1
            return
        if self.pool is not None and c.opener is None:
            # a plain file: the worker reads and hashes it (this process only writes rows)
            self.chunk.append(c)
            if len(self.chunk) >= POOL_CHUNK:
                self.submit_chunk()
            return
        try:
            data = c.read()
        except OSError as exc:
            self.problem(c.path, _os_reason(exc), c.size, c.mtime_ns)
            return
        sha = hashlib.sha256(data).hexdigest()
        known = self.batch_shas.get(sha)
        if known is None and sha in self.inflight_shas:
            # same bytes as a member still being parsed: whatever it turns out to be (stored,
            # error, skipped), this one is the same, decided in order when it is reached
            self.submit_chunk()
            self.twins[sha] = self.twins.get(sha, 0) + 1
            self.inflight.append(("twin", c, sha))
            self.inflight_files += 1
            self.limit_inflight()
            return
        if known is None:
            hit = conn.execute("SELECT incident_id FROM incidents WHERE sha256=?",
                               (sha,)).fetchone()
            known = hit[0] if hit else None
        if known is not None:
            self.duplicate(c, sha, known)
            return
        self.pending_count += 1
        if self.pool is None and self.workers > 1 and self.pending_count >= POOL_MIN_FILES:
            self.start_pool()
        if self.pool is None:
            self.outcome(c, sha, process_bytes(self.stages, data, c.path, sha, c.explicit))
            return
        self.submit_chunk()  # earlier plain files first: results are consumed in order
        self.inflight_shas[sha] = c.path
        fut = self.pool.submit(_work, data, c.path, sha, c.explicit)
        self.inflight.append(("bytes", c, sha, data, fut))
        self.inflight_files += 1
        self.limit_inflight()

    def submit_chunk(self) -> None:
        if not self.chunk or self.pool is None:
            return
        cands, self.chunk = self.chunk, []
        fut = self.pool.submit(_work_files, [(c.path, c.size, c.mtime_ns, c.explicit)
                                             for c in cands])
        self.inflight.append(("files", cands, fut))
        self.inflight_files += len(cands)
        self.limit_inflight()

    def limit_inflight(self) -> None:
        while self.inflight and self.inflight_files >= self.window:
            self.drain_one()

    def drain_one(self) -> None:
        from concurrent.futures.process import BrokenProcessPool

        entry = self.inflight[0]
        if entry[0] == "twin":   # its first copy, ahead of it in the queue, is done
            self.inflight.popleft()
            self.inflight_files -= 1
            self.twin_result(entry[1], entry[2])
            return
        try:
            res = entry[-1].result()
        except BrokenProcessPool:
            self.pool_died()
            return
        self.inflight.popleft()
        if entry[0] == "bytes":
            _, c, sha, _data, _fut = entry
            self.inflight_shas.pop(sha, None)
            self.inflight_files -= 1
            self.remember(sha, res)
            self.outcome(c, sha, res)
            return
        cands = entry[1]
        self.inflight_files -= len(cands)
        for c, (sha, r) in zip(cands, res):
            self.file_result(c, sha, r)

    def file_result(self, c: Candidate, sha: Optional[str], res: tuple) -> None:
        """A plain file read and processed by a worker: read errors and dedup by content here."""
        if res[0] == "oserror":
            self.problem(c.path, res[1], c.size, c.mtime_ns)
            return
        known = self.batch_shas.get(sha)
        if known is not None:
            self.duplicate(c, sha, known)
            return
        # same bytes or incident id as a stored report: INSERT OR IGNORE finds it at flush
        # (counted as already known there), so no lookup per file here
        self.outcome(c, sha, res)

    def remember(self, sha: str, res: tuple) -> None:
        """Keep what the archive member with bytes ``sha`` turned out to be, for its twins."""
        if sha in self.twins:
            self.twin_results[sha] = res[:3] if res[0] == "ok" else res

    def twin_result(self, c: Candidate, sha: str) -> None:
        """An archive member whose bytes equal an earlier one's that was in flight when it was
        read: the same outcome as an in-process run gives it (which parses it again unless
        the first copy was stored): already known, the same error, or skipped."""
        res = self.twin_results.get(sha, ("error", "parser failed: result lost"))
        n = self.twins.get(sha, 1) - 1
        if n > 0:
            self.twins[sha] = n
        else:
            self.twins.pop(sha, None)
            self.twin_results.pop(sha, None)
        if res[0] == "ok":
            known = self.batch_shas.get(sha)
            if known is None:   # the batch holding the first copy was written meanwhile
                if sha in self.store_failed:
                    self.problem(c.path, self.store_failed[sha], c.size, c.mtime_ns)
                    return
                hit = self.conn.execute("SELECT incident_id FROM incidents WHERE sha256=? "
                                        "OR incident_id=?", (sha, res[2])).fetchone()
                known = hit[0] if hit else res[2]
            self.duplicate(c, sha, known)
            return
        self.outcome(c, sha, res)   # error or skipped: the same, for this file's own path

    def pool_died(self) -> None:
        """A worker died (crash in native code, OOM kill). Every file still in flight is
        re-parsed alone in a fresh one-worker process, so the file that kills a parser is
        found exactly and reported; the rest of the run parses in this process."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool, self.workers = None, 1
        rest = list(self.inflight)
        self.inflight.clear()
        self.inflight_files = 0
        for entry in rest:
            if entry[0] == "twin":
                self.twin_result(entry[1], entry[2])
                continue
            if entry[0] == "bytes":
                _, c, sha, data, _fut = entry
                self.inflight_shas.pop(sha, None)
                res = self.isolated(_work, data, c.path, sha, c.explicit)
                if res is None:
                    res = ("error", "parser process died while reading this file")
                self.remember(sha, res)
                self.outcome(c, sha, res)
                continue
            for c in entry[1]:
                res = self.isolated(_work_files, [(c.path, c.size, c.mtime_ns, c.explicit)])
                if res is None:
                    self.problem(c.path, "parser process died while reading this file",
                                 c.size, c.mtime_ns)
                else:
                    self.file_result(c, *res[0])
        pending, self.chunk = self.chunk, []
        for c in pending:
            self.candidate(c)

    def isolated(self, fn, *args):
        """``fn(*args)`` in a fresh one-worker process; None when that process dies."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        method = "fork" if sys.platform.startswith("linux") else "spawn"
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context(method),
                                   initializer=_worker_init,
                                   initargs=(self.rule_files, self.dsym_paths))
        try:
            return pool.submit(fn, *args).result()
        except BrokenProcessPool:
            return None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def drain(self) -> None:
        self.submit_chunk()
        while self.inflight:
            self.drain_one()

    def start_pool(self) -> None:
        import multiprocessing
        from collections import deque
        from concurrent.futures import ProcessPoolExecutor

        global _WORKER_STAGES
        _WORKER_STAGES = self.stages   # inherited by forked workers
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        self.pool = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context(method),
            initializer=_worker_init, initargs=(self.rule_files, self.dsym_paths))
        self.pool_used = True
        self.pool.submit(int, 0).result()  # fork now, before any progress thread exists
        self.inflight = deque()
        self.window = self.workers * POOL_WINDOW_PER_WORKER

    def outcome(self, c: Candidate, sha: str, res: tuple) -> None:
        tag = res[0]
        if tag == "skipped":
            self.summary["skipped"] += 1
            self.batch_files.append((c.path, c.size, c.mtime_ns, sha, "skipped", None))
            if self.on_problem is not None:
                self.on_problem(c.path, "not a recognised crash report (skipped)")
            return
        if tag == "error":
            self.problem(c.path, res[1], c.size, c.mtime_ns)
            return
        _, kind, incident_id, inc, stack, failures, obs, original, named = res
        self.stage_failures += failures
        if incident_id in self.batch_ids:
            self.duplicate(c, sha, incident_id)
            return
        self.batch.append(_Pending(c.path, c.size, c.mtime_ns, sha, kind, inc, stack, obs,
                                   original, named))
        self.batch_shas[sha] = incident_id
        self.batch_ids.add(incident_id)
        self.batch_bytes += len(inc[_DETAIL_INDEX] or b"") + len(original or b"") + 4096
        if len(self.batch) >= BATCH_SIZE or self.batch_bytes >= BATCH_BYTES:
            self.flush()

    def close_pool(self, wait: bool = True) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=wait, cancel_futures=True)
            self.pool = None

    def duplicate(self, c: Candidate, sha: str, incident_id: str) -> None:
        self.summary["already_known"] += 1
        self.batch_files.append((c.path, c.size, c.mtime_ns, sha, "duplicate",
                                 incident_id or None))

    # ---- writing
    def flush(self) -> None:
        if not (self.batch or self.batch_files or self.batch_errors or self.batch_forget):
            return
        now = _now()
        try:
            self._flush(now, careful=False)
        except _RowRefused:   # rolled back: write the batch again, one savepoint per report
            self._flush(now, careful=True)

    def _write_reports(self, conn, now: str, careful: bool) -> tuple[list, list]:
        """The batch's report rows: ``(stored, failed)``, ``stored`` as ``(pending, inserted)``
        (False: already stored by an earlier run or another process), ``failed`` as
        ``(pending, reason)``. ``careful``: one savepoint per report, so a row SQLite refuses (a
        value the row builders missed) becomes an error for that file; otherwise such a row
        raises ``_RowRefused`` (savepoints cost ~40% of the insert time, and it never happens
        on good data)."""
        stored: list[tuple[_Pending, bool]] = []
        failed: list[tuple[_Pending, str]] = []
        for p in self.batch:
            if careful:
                conn.execute("SAVEPOINT report")
            try:
                cur = conn.execute(_INSERT_INCIDENT, p.incident)
                inserted = cur.rowcount == 1
                if inserted:
                    if p.original is not None:
                        conn.execute(_INSERT_ORIGINAL, (p.incident[0], p.original))
                    if p.stack is not None:
                        conn.execute(_UPSERT_STACK, p.stack)
                    status, iid = "ingested", p.incident[0]
                else:  # already stored: by an earlier run (same bytes or id), or another process
                    hit = conn.execute("SELECT incident_id FROM incidents WHERE sha256=? "
                                       "OR incident_id=?", (p.sha256, p.incident[0])).fetchone()
                    status, iid = "duplicate", (hit[0] if hit else p.incident[0])
                conn.execute(_UPSERT_FILE, (p.cand_path, p.size, p.mtime_ns, p.sha256, status,
                                            iid, now))
            except Exception as exc:  # noqa: BLE001 - one report's rows, not the batch
                if _store_trouble(exc):
                    raise           # the store itself (locked, full, I/O): not this file
                if not careful:
                    raise _RowRefused() from exc
                conn.execute("ROLLBACK TO report")
                conn.execute("RELEASE report")
                failed.append((p, _one_line(f"cannot store report: {type(exc).__name__}: {exc}")))
                continue
            if careful:
                conn.execute("RELEASE report")
            stored.append((p, inserted))
        return stored, failed

    def _flush(self, now: str, careful: bool) -> None:
        new_kinds: dict[str, int] = {}
        ingested = 0
        dup_after_race = 0
        peer_named = 0
        with self.store.transaction() as conn:
            stored, failed = self._write_reports(conn, now, careful)
            needs_symbols = []
            for p, inserted in stored:   # in-memory effects only for rows that went in
                if inserted:
                    ingested += 1
                    new_kinds[p.kind] = new_kinds.get(p.kind, 0) + 1
                    peer_named += p.peer_named
                    if p.observations:
                        self.peers.absorb(p.observations)
                    if p.incident[_NEEDS_INDEX]:
                        needs_symbols.append(p.incident[0])
                else:
                    dup_after_race += 1
            if stored:
                conn.executemany("DELETE FROM errors WHERE path=?",
                                 [(p.cand_path,) for p, _ in stored])
            files = self.batch_files
            twins_failed = 0
            if failed:   # a duplicate (same bytes or id) of a report that could not be stored
                why = {p.sha256: reason for p, reason in failed}   # shares its error
                why_id = {p.incident[0]: reason for p, reason in failed}
                files = []
                for f in self.batch_files:
                    reason = why.get(f[3]) or why_id.get(f[5]) if f[4] == "duplicate" else None
                    if reason is None:
                        files.append(f)
                        continue
                    twins_failed += 1
                    failed.append((_Pending(f[0], f[1], f[2], f[3], "", (), None), reason))
            for path, size, mtime_ns, sha, status, iid in files:
                conn.execute(_UPSERT_FILE, (path, size, mtime_ns, sha, status, iid, now))
            conn.executemany("DELETE FROM errors WHERE path=?", [(f[0],) for f in files])
            self.peers.save(conn)
            errors = list(self.batch_errors) + [(p.cand_path, reason, p.size, p.mtime_ns)
                                                for p, reason in failed]
            for path in self.batch_forget:
                conn.execute(_FORGET_MISSING_ARG, (path, *_MISSING_ARG_REASONS))
            for path, reason, size, mtime_ns in errors:
                conn.execute(_UPSERT_ERROR, (path, reason, now))
                if size or mtime_ns:
                    conn.execute(_UPSERT_FILE, (path, size, mtime_ns, None, "error", None, now))
        self.needs_symbols.extend(needs_symbols)
        self.summary["already_known"] -= twins_failed   # counted by ``duplicate()``
        for p, reason in failed:   # reported once committed (recorded in ``errors`` above)
            self.store_failed[p.sha256] = reason
            self.summary["errors"].append({"path": p.cand_path, "reason": reason})
            if self.on_problem is not None:
                self.on_problem(p.cand_path, reason)
        # counted only once committed, so an interrupted batch is not reported as stored
        s = self.summary
        s["ingested"] += ingested
        self.peer_named += peer_named
        s["already_known"] += dup_after_race
        for k, n in new_kinds.items():
            s["by_kind"][k] = s["by_kind"].get(k, 0) + n
        self.ingested_paths.extend(p.cand_path for p, _ in stored)
        self.batch.clear()
        self.batch_files.clear()
        self.batch_errors.clear()
        self.batch_forget.clear()
        self.batch_shas.clear()
        self.batch_ids.clear()
        self.batch_bytes = 0


class _RowRefused(Exception):
    """A report row SQLite refused on the fast path: the batch is written again carefully."""


def _store_trouble(exc: BaseException) -> bool:
    """True for an error of the store itself (busy, locked, disk full, I/O, corruption), which
    no single report causes: it aborts the batch (rolled back) instead of blaming a file."""
    import sqlite3

    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError


def _os_reason(exc: OSError) -> str:
    from triage.reports.discover import _reason

    return _reason(exc)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def default_workers() -> int:
    """``$TRIAGE_WORKERS`` if set, else the CPU count (at most 4; 1 = parse in-process)."""
    env = os.environ.get("TRIAGE_WORKERS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    return max(1, min(4, os.cpu_count() or 1))


def run_ingest(store, paths: Iterable[str], *, journals: Iterable = (), dsym_paths: Iterable = (),
               rule_files: Iterable = (), progress: Any = False,
               on_problem: Optional[Callable[[str, str], None]] = None,
               workers: Optional[int] = None) -> dict[str, Any]:
    """Ingest files/folders/globs/archives into ``store``; returns the summary dict.

    Summary keys (the ``triage ingest --format json`` contract): ``files_seen``, ``ingested``,
    ``already_known``, ``skipped``, ``errors`` (list of ``{"path", "reason"}``), ``by_kind``
    (kind -> count of newly stored reports), plus ``linked``, ``clusters_new``,
    ``stage_failures``, ``warnings``, ``seconds``.

    ``progress``: True shows a rich progress line on stderr when it is a terminal; a callable is
    called as ``progress(files_seen, path)`` after each entry. ``on_problem(path, reason)`` is
    called once per bad input, as it is found. ``workers``: parser processes (default
    :func:`default_workers`; a pool is only started once :data:`POOL_MIN_FILES` files need
    parsing).
    """
    t0 = time.perf_counter()
    paths = [os.fspath(p) for p in paths]
    rule_files = list(rule_files)
    dsym_paths = list(dsym_paths)
    stages = load_stages(rule_files, dsym_paths)
    run = _Run(store, stages, on_problem, progress,
               workers=default_workers() if workers is None else max(1, int(workers)),
               rule_files=rule_files, dsym_paths=dsym_paths)
    run.missing_args = missing_arguments(paths)
    tick, close = _progress(progress)
    try:
        for item in discover(paths):
            run.handle(item)
            if tick is not None:
                tick(run.summary["files_seen"], getattr(item, "path", ""))
        run.drain()
        run.flush()
    except BaseException:
        run.close_pool(wait=False)  # Ctrl-C / error: do not wait for queued work
        raise
    finally:
        run.close_pool()
        if close is not None:
            close()
    s = run.summary
    s["clusters_new"] = None
    s["warnings"] = []
    s["peer_symbolicated"] = 0
    t_store = time.perf_counter()
    try:
        s["peer_symbolicated"] = run.peer_named + _after_peers(store, run, rule_files)
    except Exception as exc:  # noqa: BLE001 - the reports are stored; say what failed
        s["warnings"].append(f"peer symbolication failed: {type(exc).__name__}: {exc}")
    t1 = time.perf_counter()
    try:
        s["clusters_new"] = _after_cluster(store)
    except Exception as exc:  # noqa: BLE001 - the reports are stored; say what failed
        s["warnings"].append(f"clustering failed: {type(exc).__name__}: {exc}")
    t2 = time.perf_counter()
    try:
        _after_link(store, run, list(journals), _roots(paths))
    except Exception as exc:  # noqa: BLE001
        s["warnings"].append(f"linking failed: {type(exc).__name__}: {exc}")
    t3 = time.perf_counter()
    s["stage_failures"] = run.stage_failures
    s["workers"] = run.workers if run.pool_used else 1
    s["timings"] = {"store": round(t_store - t0, 3), "peers": round(t1 - t_store, 3),
                    "cluster": round(t2 - t1, 3), "link": round(t3 - t2, 3)}
    s["seconds"] = round(t3 - t0, 3)
    return s


def _roots(paths: list[str]) -> list[str]:
    """The folders the user named (a file's or glob's folder), where journals are looked for."""
    roots = []
    for p in paths:
        p = os.path.abspath(os.path.expanduser(p))
        if not os.path.isdir(p):
            p = os.path.dirname(p.split("!", 1)[0]) if not any(c in p for c in "*?[") else \
                os.path.dirname(p[:min(p.find(c) for c in "*?[" if c in p)])
        roots.append(p)
    return roots


def _after_peers(store, run: "_Run", rule_files: list) -> int:
    """Name this run's unsymbolicated frames from symbolicated peers (same image UUID, so the
    same OS build), whichever order the reports arrived in; re-normalizes and re-signs them
    before clustering. Also the stored reports no clustering has seen yet (an interrupted run).
    Clustered reports are left alone, so ingest never moves an incident a user has already
    seen: ``triage symbolicate`` then ``triage recluster`` improve those, with old cluster ids
    mapped to new ones. Returns the number of frames named here (the parsers name most).
    """
    # this run's reports, and stored ones never clustered (a run interrupted before its peer
    # pass: their clusters were never shown, so naming them now moves nothing a user saw)
    ids = list(dict.fromkeys(run.needs_symbols + [r[0] for r in store.conn.execute(
        "SELECT incident_id FROM incidents WHERE needs_symbols = 1 AND cluster_id IS NULL")]))
    if not ids or not len(run.peers):
        return 0
    from triage.frames.resymbolicate import peer_symbolicate_crashes

    res = peer_symbolicate_crashes(store, ids, run.peers, rule_files)
    return int(res.get("frames_peer", 0))


def _after_cluster(store) -> int:
    from triage.cluster import assign_new

    return int(assign_new(store).get("new_clusters", 0))


def _after_link(store, run: _Run, journals: list, roots: list[str]) -> None:
    """Link this run's crashes (and earlier unlinked ones) to compile records; journal problems
    become errors, ambiguous links become warnings (never guessed silently)."""
    from triage.context.link import link_pending

    s = run.summary
    res = link_pending(store, journals=journals, report_paths=run.ingested_paths, roots=roots)
    s["linked"] = res.get("linked", 0)
    s["ambiguous"] = res.get("ambiguous", 0)
    for p in res.get("problems") or ():
        path, reason = str(p.get("path", "")), str(p.get("reason", ""))
        s["errors"].append({"path": path, "reason": reason})
        if run.on_problem is not None:
            run.on_problem(path, reason)
    for a in res.get("ambiguities") or ():
        s["warnings"].append(f"{a.get('path') or a.get('incident_id')}: {a.get('reason')}")


def _progress(progress: Any):
    """(tick, close) for the chosen progress mode; (None, None) when quiet."""
    if callable(progress):
        return progress, None
    if not progress or not sys.stderr.isatty():
        return None, None
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(file=sys.stderr)
    # auto_refresh=False: no refresh thread (the parser pool forks; a thread holding a lock at
    # fork time could deadlock a worker)
    bar = Progress(SpinnerColumn(), TextColumn("{task.completed} files"),
                   TimeElapsedColumn(), TextColumn("[dim]{task.fields[current]}"),
                   console=console, transient=True, auto_refresh=False)
    task = bar.add_task("ingest", total=None, current="")
    bar.start()
    last = [0.0]

    def tick(n: int, path: str) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.1:
            last[0] = now
            bar.update(task, completed=n, current=os.path.basename(path)[-50:])
            bar.refresh()

    return tick, bar.stop


__all__ = ["run_ingest", "incident_row", "load_stages", "BATCH_SIZE", "INCIDENT_COLUMNS",
           "source_file"]
