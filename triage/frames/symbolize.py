"""Symbolication on Linux: dSYM / Mach-O lookups by UUID, and symbols learned from peer reports.

* :class:`DsymIndex` finds dSYM bundles and Mach-O files under the given paths, indexes them by
  their LC_UUID (canonical lowercase dashed form) and looks addresses up with ``symbolic``
  10.2.1's SymCache (one address can give several frames: inlined calls, innermost first).
* :func:`symbolicate_report` rewrites the frames of images whose UUID matches an indexed file.
  A file whose UUID differs from the image's is never used.
* :class:`PeerSymbols` names unsymbolicated frames from what symbolicated reports of the same
  image UUID (same OS build) told us, persisted in the store's ``symbol_map`` table.

See docs/frames.md for the policies (which frames are looked up, at which address).
"""

from __future__ import annotations

import os
import sqlite3
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from triage.errors import UserError
from triage.records import Frame, Report
from triage.reports.common import canon_uuid

ZERO_UUID = "00000000-0000-0000-0000-000000000000"
_MACHO_MAGICS = {
    b"\xfe\xed\xfa\xce", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe", b"\xbe\xba\xfe\xca",   # fat (also Java class files: symbolic rejects those)
}
#: never walk more than this many files under one --dsym path
MAX_FILES_PER_PATH = 200_000
#: sym_addr symbolic reports for inline entries ("unknown")
_NO_ADDR = 0xFFFFFFFF


def canonical_uuid(value) -> str | None:
    """``4C4C44C9-5555-...`` / ``4c4c44c95555...`` -> ``4c4c44c9-5555-3144-a1d6-c0cd3e501ee5``
    (the parser's canonical spelling, so dSYM and report UUIDs compare equal)."""
    return canon_uuid(value)


@dataclass(slots=True)
class DebugFile:
    uuid: str
    path: str
    arch: str | None
    has_debug: bool            # DWARF present (dSYM) or only a symbol table (stripped Mach-O)


@dataclass(slots=True)
class Location:
    """One frame returned by a lookup (inlined calls first, the physical function last)."""

    symbol: str                # demangled function name
    mangled: str | None
    sym_addr: int | None       # function start (image-relative) or None for inline entries
    source_file: str | None
    source_line: int | None
    inline: bool


class DsymIndex:
    """Debug files found under some paths, by UUID."""

    def __init__(self, files: dict[str, DebugFile] | None = None, problems: list[str] | None = None):
        self.files: dict[str, DebugFile] = files or {}
        self.problems: list[str] = problems or []
        self._caches: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self.files)

    def __contains__(self, uuid) -> bool:
        return canonical_uuid(uuid) in self.files

    @classmethod
    def from_paths(cls, paths: Iterable[Path | str]) -> "DsymIndex":
        """Index every Mach-O file (dSYM DWARF files included) under ``paths``.

        A missing path raises UserError; unreadable or non-Mach-O files are skipped (readable
        ones that fail to parse are listed in ``problems``). With several files for one UUID a
        file with DWARF (a dSYM) beats a bare Mach-O.
        """
        index = cls()
        for p in paths:
            path = Path(p).expanduser()
            if not path.exists():
                raise UserError(f"{path}: no such dSYM file or folder")
            for f in _candidate_files(path):
                index._add_file(f)
        return index

    def _add_file(self, path: Path) -> None:
        try:
            with open(path, "rb") as fh:
                if fh.read(4) not in _MACHO_MAGICS:
                    return
        except OSError:
            return
        try:
            from symbolic import Archive

            archive = Archive.open(str(path))
            objects = list(archive.iter_objects())
        except Exception as exc:  # noqa: BLE001
            self.problems.append(f"{path}: not a readable Mach-O file ({type(exc).__name__})")
            return
        for obj in objects:
            try:
                uuid = canonical_uuid(str(obj.debug_id)[:36])  # Mach-O ids carry no age
                if uuid is None or uuid == ZERO_UUID:
                    continue
                has_debug = "debug" in (obj.features or ())
                old = self.files.get(uuid)
                if old is None or (has_debug and not old.has_debug):
                    self.files[uuid] = DebugFile(uuid=uuid, path=str(path), arch=obj.arch,
                                                 has_debug=has_debug)
            except Exception as exc:  # noqa: BLE001
                self.problems.append(f"{path}: {type(exc).__name__}: {exc}")

    def _symcache(self, uuid: str):
        if uuid in self._caches:
            return self._caches[uuid]
        cache = None
        df = self.files.get(uuid)
        if df is not None:
            try:
                from symbolic import Archive

                for obj in Archive.open(df.path).iter_objects():
                    if canonical_uuid(str(obj.debug_id)[:36]) == uuid:
                        cache = obj.make_symcache()
                        break
            except Exception as exc:  # noqa: BLE001
                self.problems.append(f"{df.path}: cannot build a symbol cache ({exc})")
        self._caches[uuid] = cache
        return cache

    def lookup(self, uuid: str | None, offset: int) -> list[Location]:
        """Frames at image-relative ``offset`` of image ``uuid`` (innermost first); [] if none."""
        uuid = canonical_uuid(uuid)
        if uuid is None or uuid not in self.files or offset is None or offset < 0:
            return []
        cache = self._symcache(uuid)
        if cache is None:
            return []
        try:
            found = cache.lookup(offset)
        except Exception:  # noqa: BLE001
            return []
        out: list[Location] = []
        for i, loc in enumerate(found):
            name = loc.function_name or loc.symbol
            if not name:
                continue
            sym_addr = loc.sym_addr if loc.sym_addr not in (None, _NO_ADDR) else None
            out.append(Location(symbol=name, mangled=loc.symbol or None, sym_addr=sym_addr,
                                source_file=loc.full_path or None,
                                source_line=loc.line or None, inline=i < len(found) - 1))
        return out


def _candidate_files(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    seen = 0
    for root, dirs, files in os.walk(path, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            seen += 1
            if seen > MAX_FILES_PER_PATH:
                return
            full = Path(root) / name
            if full.is_file() and not full.is_symlink():
                yield full


# ---------------------------------------------------------------------------- report rewriting

def _frame_uuid(frame: Frame, report: Report) -> str | None:
    u = canonical_uuid(frame.image_uuid)
    if u is not None:
        return u
    idx = frame.image_index
    if isinstance(idx, int) and 0 <= idx < len(report.images):
        return canonical_uuid(report.images[idx].uuid)
    return None


def _groups(frames: list[Frame]) -> Iterator[list[Frame]]:
    """Physical frames with the inline entries that precede them (same image and offset)."""
    group: list[Frame] = []
    for f in frames:
        group.append(f)
        if not f.inline:
            yield group
            group = []
    if group:
        yield group


def _symbolicate_frames(frames: list[Frame], report: Report, index: DsymIndex,
                        override: bool) -> tuple[list[Frame], int]:
    out: list[Frame] = []
    changed = 0
    for position, group in enumerate(_groups(frames)):
        phys = group[-1]
        uuid = _frame_uuid(phys, report)
        if (uuid is None or uuid not in index.files or phys.offset is None
                or not isinstance(phys.offset, int)
                or (not override and phys.symbol is not None)):
            out.extend(group)
            continue
        # return addresses point past the call: look up at offset - 1 (like lldb), except for
        # the first physical frame of the stack (the pc)
        if not index.files[uuid].has_debug and any(f.symbolicated_by == "dsym" for f in group):
            # already named from a dSYM (a previous run): a symbol table alone (a bare
            # Mach-O) knows no inlined calls nor file:line, so it never replaces that
            out.extend(group)
            continue
        addr = phys.offset - 1 if position > 0 and phys.offset > 0 else phys.offset
        locs = index.lookup(uuid, addr)
        if not locs:
            out.extend(group)
            continue
        for loc in locs:
            f = Frame(
                module=phys.module, symbol=loc.symbol, offset=phys.offset,
                symbol_offset=(phys.offset - loc.sym_addr
                               if loc.sym_addr is not None and loc.sym_addr <= phys.offset
                               else None),
                inline=loc.inline, image_index=phys.image_index, image_uuid=phys.image_uuid or uuid,
                image_base=phys.image_base, image_path=phys.image_path, address=phys.address,
                source_file=loc.source_file, source_line=loc.source_line,
                raw_symbol=phys.raw_symbol if not loc.inline else None,
                symbolicated_by="dsym")
            out.append(f)
            changed += 1
    return out, changed


def symbolicate_report(report: Report, index: DsymIndex, *, override: bool = True) -> int:
    """Symbolicate every thread and the last exception backtrace in place; returns the number
    of frames written from a dSYM. ``override=False`` only fills frames without a symbol."""
    if index is None or not index.files:
        return 0
    total = 0
    try:
        for thread in report.threads:
            thread.frames, n = _symbolicate_frames(thread.frames, report, index, override)
            total += n
        if report.last_exception_backtrace:
            report.last_exception_backtrace, n = _symbolicate_frames(
                report.last_exception_backtrace, report, index, override)
            total += n
    except Exception as exc:  # noqa: BLE001 - symbolication is best effort, never fatal
        report.notes.append(f"symbolication stopped: {type(exc).__name__}: {exc}")
    return total


# ---------------------------------------------------------------------------- peer symbols

#: the range of a SQLite INTEGER (``symbol_map.start`` / ``end_seen``)
_I64_MIN, _I64_END = -(2**63), 2**63

SYMBOL_MAP_SQL = """
CREATE TABLE IF NOT EXISTS symbol_map (
    image_uuid TEXT NOT NULL,
    start      INTEGER NOT NULL,
    end_seen   INTEGER NOT NULL,
    symbol     TEXT NOT NULL,
    PRIMARY KEY (image_uuid, start)
)
"""


@dataclass
class _Entry:
    start: int
    end_seen: int
    symbol: str


@dataclass
class PeerSymbols:
    """Function starts learned from symbolicated frames, per image UUID.

    A symbolicated frame at ``imageOffset`` with ``symbolLocation`` tells us that function
    ``symbol`` starts at ``imageOffset - symbolLocation`` in that image, and extends at least to
    ``imageOffset``. An unsymbolicated frame of the same image is named only when its offset
    falls in ``[start, end_seen]`` of the nearest known start below it (conservative: never
    past the largest offset seen inside that function).
    """

    by_uuid: dict[str, dict[int, _Entry]] = field(default_factory=dict)
    _sorted: dict[str, list[int]] = field(default_factory=dict, repr=False)
    _dirty: set[tuple[str, int]] = field(default_factory=set, repr=False)
    #: facts already observed, as (uuid, offset, symbol_offset, symbol as written): observing
    #: the same fact again never changes the table, so :meth:`learn` skips it early
    seen: set = field(default_factory=set, repr=False)

    @classmethod
    def load(cls, store) -> "PeerSymbols":
        conn = store.conn if hasattr(store, "conn") else store
        peers = cls()
        try:
            rows = conn.execute("SELECT image_uuid, start, end_seen, symbol FROM symbol_map")
        except sqlite3.OperationalError:  # an older store without the table: nothing known yet
            return peers
        for uuid, start, end_seen, symbol in rows:
            peers.by_uuid.setdefault(uuid, {})[start] = _Entry(start, end_seen, symbol)
        return peers

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_uuid.values())

    def _frames(self, report: Report) -> Iterator[Frame]:
        for t in report.threads:
            yield from t.frames
        yield from report.last_exception_backtrace or ()

    def observe(self, report: Report) -> int:
        """Learn from the symbolicated, non-inline frames of ``report``; returns new facts."""
        return self.observe_facts(self.facts(report))

    def facts(self, report: Report, seen: set | None = None) -> Iterator[tuple]:
        """``(uuid, offset, symbol_offset, symbol)`` of the frames of ``report`` worth learning
        from: symbolicated (not by a peer), not inline, with a known image UUID. With ``seen``,
        facts in it are skipped and the others added."""
        for f in self._frames(report):
            if (f.inline or f.symbol is None or f.symbolicated_by == "peer"
                    or not isinstance(f.offset, int) or not isinstance(f.symbol_offset, int)
                    or f.symbol_offset < 0 or f.symbol_offset > f.offset):
                continue
            uuid = _frame_uuid(f, report)
            if uuid is None or uuid == ZERO_UUID:
                continue
            fact = (uuid, f.offset, f.symbol_offset, f.symbol)
            if seen is not None:
                if fact in seen:
                    continue
                seen.add(fact)
            yield fact

    def observe_facts(self, facts: Iterable[tuple], changed: set | None = None) -> int:
        """Learn from ``(uuid, offset, symbol_offset, symbol)`` facts (see :meth:`facts` and
        ``triage.reports.ips.symbol_facts``); returns the number of new facts. ``changed``
        collects the ``(uuid, start)`` keys learned or extended by this call."""
        learned = 0
        by_uuid = self.by_uuid
        dirty = self._dirty
        for uuid, offset, symbol_offset, symbol in facts:
            if uuid == ZERO_UUID:
                continue
            start = offset - symbol_offset
            # ``symbol_map`` columns are SQLite (signed 64-bit) integers: a fact beyond them
            # (a broken report; no real image offset is that large) is not learned
            if not (_I64_MIN <= start < _I64_END and _I64_MIN <= offset < _I64_END):
                continue
            entries = by_uuid.get(uuid)
            if entries is None:
                entries = by_uuid[uuid] = {}
            e = entries.get(start)
            if e is None:
                entries[start] = _Entry(start, offset, symbol)
                self._sorted.pop(uuid, None)
            elif offset > e.end_seen and e.symbol == symbol:
                e.end_seen = offset
            else:
                continue
            dirty.add((uuid, start))
            if changed is not None:
                changed.add((uuid, start))
            learned += 1
        return learned

    def learn(self, report: Report | None, extra_facts: Iterable[tuple] = ()) -> list[tuple]:
        """Observe ``report`` (if any) and ``extra_facts`` (as :func:`observations` does) into
        this table; the ``(image_uuid, start, end_seen, symbol)`` rows that were new or extended
        here. A parser worker sends only those to the parent, not what it already knew."""
        changed: set = set()
        if len(self.seen) > 200_000:        # bounded (~30 MB): it only saves time
            self.seen.clear()
        if report is not None:
            self.observe_facts(self.facts(report, self.seen), changed)
        self.observe_facts(extra_facts, changed)
        return [(u, s, self.by_uuid[u][s].end_seen, self.by_uuid[u][s].symbol)
                for u, s in sorted(changed)]

    def lookup(self, uuid: str | None, offset: int) -> tuple[str, int] | None:
        """``(symbol, start)`` for an image-relative offset, or None."""
        uuid = canonical_uuid(uuid)
        entries = self.by_uuid.get(uuid) if uuid else None
        if not entries or not isinstance(offset, int):
            return None
        starts = self._sorted.get(uuid)
        if starts is None:
            starts = self._sorted[uuid] = sorted(entries)
        i = bisect_right(starts, offset) - 1
        if i < 0:
            return None
        e = entries[starts[i]]
        if e.start <= offset <= e.end_seen:
            return e.symbol, e.start
        return None

    def apply(self, report: Report) -> int:
        """Name unsymbolicated frames from peer knowledge; returns the number of frames named."""
        named = 0
        for f in self._frames(report):
            if f.symbol is not None or not isinstance(f.offset, int):
                continue
            uuid = _frame_uuid(f, report)
            if uuid is None or uuid == ZERO_UUID:
                continue
            hit = self.lookup(uuid, f.offset)
            if hit is None:
                continue
            f.symbol, start = hit
            f.symbol_offset = f.offset - start
            f.symbolicated_by = "peer"
            named += 1
        return named

    def absorb(self, rows: Iterable[tuple[str, int, int, str]]) -> int:
        """Merge ``observations()`` rows learned elsewhere (e.g. in a parser worker process):
        a row is the fact of a frame at ``end_seen`` inside the function at ``start``."""
        return self.observe_facts((uuid, end_seen, end_seen - start, symbol)
                                  for uuid, start, end_seen, symbol in rows)

    def save(self, conn) -> int:
        """Write what was learned since load (call inside ``Store.transaction()``)."""
        conn = conn.conn if hasattr(conn, "conn") else conn
        conn.execute(SYMBOL_MAP_SQL)
        rows = []
        for uuid, start in sorted(self._dirty):
            e = self.by_uuid[uuid][start]
            if _I64_MIN <= start < _I64_END and _I64_MIN <= e.end_seen < _I64_END:
                rows.append((uuid, start, e.end_seen, e.symbol))
        conn.executemany(
            "INSERT INTO symbol_map(image_uuid, start, end_seen, symbol) VALUES(?, ?, ?, ?) "
            "ON CONFLICT(image_uuid, start) DO UPDATE SET "
            "end_seen = MAX(end_seen, excluded.end_seen)", rows)
        self._dirty.clear()
        return len(rows)


def observations(report: Report | None,
                 extra_facts: Iterable[tuple] = ()) -> list[tuple[str, int, int, str]]:
    """What ``report``'s own symbolicated frames teach about its images, as
    ``(image_uuid, start, end_seen, symbol)`` rows for :meth:`PeerSymbols.absorb` (pure).
    ``extra_facts``: facts of frames not built as records (lazy ingest's other threads, from
    ``triage.reports.ips.symbol_facts``), learned after the report's own frames."""
    return PeerSymbols().learn(report, extra_facts)


def has_unresolved(report: Report) -> bool:
    """True when a frame lacks a symbol but has an image UUID and offset (peers may name it)."""
    for t in report.threads:
        for f in t.frames:
            if f.symbol is None and isinstance(f.offset, int):
                uuid = _frame_uuid(f, report)
                if uuid is not None and uuid != ZERO_UUID:
                    return True
    for f in report.last_exception_backtrace or ():
        if f.symbol is None and isinstance(f.offset, int):
            uuid = _frame_uuid(f, report)
            if uuid is not None and uuid != ZERO_UUID:
                return True
    return False
