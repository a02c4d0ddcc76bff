"""Rebuild Report / Frame records from stored incidents (for ``triage frames`` / ``symbolicate``).

The ingest stage stores the crashing thread's frames as JSON (``incidents.frames``), the last
exception backtrace (``incidents.last_exception``) and all threads, images, header, extra and
notes in the compressed ``incidents.detail`` blob (dataclasses turned into dicts). Details
written by ingest for JSON reports hold ``images_raw`` (the report's own ``usedImages``) instead
of ``images``: the Image records are built from it here with the parser's own rules
(``triage.reports.ips.images_from_raw``), so the rebuilt Report equals the parsed one.
"""

from __future__ import annotations

import sqlite3
from dataclasses import fields
from typing import Any

from triage.errors import UserError
from triage.records import Frame, Image, Report, Thread
from triage.store.db import load_frames

_FRAME_FIELDS = {f.name for f in fields(Frame)}
_IMAGE_FIELDS = {f.name for f in fields(Image)}
_THREAD_FIELDS = {f.name for f in fields(Thread)} - {"frames"}
_REPORT_FIELDS = {f.name for f in fields(Report)}


def _int(v: Any) -> Any:
    if isinstance(v, str) and v.isdigit():  # ints beyond 64 bits are stored as text
        return int(v)
    return v


_FRAME_ORDER = tuple(f.name for f in fields(Frame))


def frame_from_dict(d: dict) -> Frame:
    try:  # fast path: a dict written from a Frame (every key a field, usually in field order)
        f = Frame(*d.values()) if tuple(d) == _FRAME_ORDER else Frame(**d)
    except TypeError:
        pass
    else:
        if type(f.offset) is str or type(f.symbol_offset) is str or \
                type(f.image_base) is str or type(f.address) is str:
            f.offset, f.symbol_offset = _int(f.offset), _int(f.symbol_offset)
            f.image_base, f.address = _int(f.image_base), _int(f.address)
        if type(f.inline) is not bool:
            f.inline = bool(f.inline)
        return f
    kw = {k: v for k, v in d.items() if k in _FRAME_FIELDS}
    for k in ("offset", "symbol_offset", "image_base", "address"):
        if k in kw:
            kw[k] = _int(kw[k])
    kw["inline"] = bool(kw.get("inline"))
    return Frame(**kw)


def frames_from_json(items: Any) -> list[Frame]:
    if not isinstance(items, list):
        return []
    return [frame_from_dict(d) for d in items if isinstance(d, dict)]


def image_from_dict(d: dict) -> Image:
    kw = {k: v for k, v in d.items() if k in _IMAGE_FIELDS}
    kw.setdefault("index", 0)
    for k in ("base", "size"):
        if k in kw:
            kw[k] = _int(kw[k])
    return Image(**kw)


def thread_from_dict(d: dict, index: int) -> Thread:
    kw = {k: v for k, v in d.items() if k in _THREAD_FIELDS}
    kw.setdefault("index", index)
    return Thread(frames=frames_from_json(d.get("frames")), **kw)


def _db_unpack():
    from triage.store.db import unpack

    return unpack


def short_incident_id(incident_id: str | None) -> str:
    """The id as tables show it, a prefix :func:`resolve_incident_id` takes back: 8 characters,
    or ``sha256:`` + 8 hex digits for the content-hash ids of reports that state none (so they
    do not all read ``sha256:``)."""
    iid = incident_id or ""
    return iid[:15] if iid.startswith("sha256:") else iid[:8]


def resolve_incident_id(conn: sqlite3.Connection, text: str) -> str | None:
    """Exact incident id, else a unique prefix (tables show :func:`short_incident_id`)."""
    row = conn.execute("SELECT incident_id FROM incidents WHERE incident_id=?", (text,)).fetchone()
    if row:
        return row[0]
    if len(text) < 4:
        return None
    esc = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = conn.execute("SELECT incident_id FROM incidents WHERE incident_id LIKE ? ESCAPE '\\' "
                        "LIMIT 3", (esc + "%",)).fetchall()
    if len(rows) > 1:
        raise UserError(f"{text}: ambiguous incident id prefix ({', '.join(r[0] for r in rows)}, ...)")
    return rows[0][0] if rows else None


def load_report(conn: sqlite3.Connection, incident_id: str) -> Report | None:
    """The stored incident as a Report (threads and images from the detail blob)."""
    from triage.store.db import jload, unpack

    cur = conn.execute("SELECT * FROM incidents WHERE incident_id=?", (incident_id,))
    row = cur.fetchone()
    if row is None:
        return None
    rec = dict(zip([c[0] for c in cur.description], row))
    orig = conn.execute("SELECT data FROM originals WHERE incident_id=?", (incident_id,)).fetchone()
    rec["original"] = orig[0] if orig else None
    return report_from_row(rec, jload, unpack)


def original_report(conn: sqlite3.Connection, incident_id: str) -> tuple[bytes, str]:
    """The report file's own bytes and where they came from: ``"store"`` (the ``originals``
    table) or ``"file"`` (the source path, for reports stored before ``originals`` existed,
    only while the file still has the stored sha256). UserError when neither has them."""
    import hashlib

    from triage.store.db import decompress_blob

    row = conn.execute("SELECT i.path, i.sha256, o.data FROM incidents i LEFT JOIN originals o "
                       "USING (incident_id) WHERE i.incident_id=?", (incident_id,)).fetchone()
    if row is None:
        raise UserError(f"{incident_id}: no such incident id in the store")
    path, sha, blob = row
    if blob is not None:
        try:
            return decompress_blob(blob), "store"
        except Exception as exc:  # noqa: BLE001 - damaged blob: try the file
            problem = f"stored copy unreadable ({type(exc).__name__})"
    else:
        problem = "no stored copy (ingested by an older triage)"
    from triage.reports.discover import source_file

    if str(source_file(path)) != path:
        raise UserError(f"{incident_id}: {problem}, and {path} is an archive member")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise UserError(f"{incident_id}: {problem}, and {path} cannot be read: "
                        f"{exc.strerror or exc}") from None
    if hashlib.sha256(data).hexdigest() != sha:
        raise UserError(f"{incident_id}: {problem}, and {path} has changed since it was "
                        "ingested (sha256 differs)")
    return data, "file"


def report_from_row(rec: dict, jload=None, unpack=None) -> Report:
    if jload is None or unpack is None:
        from triage.store.db import jload, unpack  # noqa: F811
    kw = {k: v for k, v in rec.items() if k in _REPORT_FIELDS and k not in
          ("threads", "images", "last_exception_backtrace", "asi", "header", "extra", "notes")}
    kw.setdefault("incident_id", rec.get("incident_id") or "")
    kw.setdefault("path", rec.get("path") or "")
    kw.setdefault("sha256", rec.get("sha256") or "")
    kw.setdefault("format", rec.get("format") or "")
    report = Report(**kw)
    try:
        report.asi = jload(rec.get("asi"))
    except Exception:  # noqa: BLE001
        report.asi = None
    detail: dict = {}
    raw_images = None
    try:
        blob = rec.get("detail")
        if unpack is _db_unpack() and blob is not None:
            # skip unpack's images_raw -> dicts step: build the Image records directly
            from triage.store.db import decompress_blob
            import orjson

            detail = orjson.loads(decompress_blob(blob))
            if not isinstance(detail, dict):
                detail = {}
            raw_images = detail.pop("images_raw", None)
        else:
            detail = unpack(blob) or {}
    except Exception:  # noqa: BLE001 - a damaged blob: fall back to the frames column
        detail = {}
    threads = detail.get("threads") or []
    original = rec.get("original")
    if "threads" not in detail and original is not None:
        _from_original(report, original, rec, jload)
        report.header = detail.get("header")
        report.extra = detail.get("extra") or {}
        notes = list(detail.get("notes") or [])
        report.notes = notes + [n for n in report.notes if n not in notes]
        return report
    report.threads = [thread_from_dict(t, i) for i, t in enumerate(threads) if isinstance(t, dict)]
    if raw_images is not None:
        from triage.reports.ips import images_from_raw

        report.images = images_from_raw(raw_images)
    else:
        report.images = [image_from_dict(d) for d in detail.get("images") or []
                         if isinstance(d, dict)]
    report.header = detail.get("header")
    report.extra = detail.get("extra") or {}
    report.notes = list(detail.get("notes") or [])
    frames = frames_from_json(load_frames(rec.get("frames"))) \
        if not report.threads and rec.get("frames") else None
    if frames:      # no thread list stored: the crashing thread alone, from the frames column
        report.threads = [Thread(index=0, triggered=True, frames=frames)]
        report.crashing_thread = 0
    le = load_frames(rec.get("last_exception")) if rec.get("last_exception") else None
    report.last_exception_backtrace = frames_from_json(le) if le is not None else None
    return report


def _from_original(report: Report, blob: bytes, rec: dict, jload) -> None:
    """Threads, images and parse notes of a lazily ingested report, parsed from its stored
    file bytes; the crashing thread and the last exception backtrace are the stored (enriched)
    ``frames`` / ``last_exception`` columns, and the other threads are normalized with the
    default rules, so the result equals what a full parse + enrich gives."""
    from triage.frames.normalize import load_rules, normalize_frame
    from triage.reports.detect import parse_bytes
    from triage.store.db import decompress_blob

    report.notes = []
    try:
        parsed = parse_bytes(decompress_blob(blob), report.path, report.sha256)
    except Exception as exc:  # noqa: BLE001 - a damaged blob: fall back to the frames column
        report.notes = [f"stored original unreadable: {type(exc).__name__}: {exc}"]
        parsed = None
    frames = frames_from_json(load_frames(rec.get("frames"))) if rec.get("frames") else []
    le = load_frames(rec.get("last_exception")) if rec.get("last_exception") else None
    report.last_exception_backtrace = frames_from_json(le) if le is not None else None
    ct = report.crashing_thread
    if parsed is not None:
        report.images = parsed.images
        report.notes = parsed.notes
    if parsed is None or not parsed.threads:
        if frames:
            report.threads = [Thread(index=0, triggered=True, frames=frames)]
            report.crashing_thread = 0
        return
    report.threads = parsed.threads
    rules = load_rules([])
    for t in report.threads:
        if isinstance(ct, int) and t.index == ct:
            t.frames = frames
        else:
            for f in t.frames:
                normalize_frame(f, rules)
