"""Recognise what a file holds and parse it into a Report.

Public entry points:

- ``parse_bytes(data, path, sha256) -> Report``: raises ``ParseError`` (one-line reason) for
  anything that is not a readable report, and never anything else.
- ``looks_like_report(head) -> bool``: cheap sniff over the first 64 KB (ingest passes that much)
  that accepts what ``parse_bytes`` reads as a report.

Decision order (docs/formats.md): BOM/whitespace strip -> "Translated Report" banner (parse the
part after "Full Report") -> JSON header line + JSON body -> one whole JSON document -> JSON header
+ text body -> legacy text report.
"""

from __future__ import annotations

import re

from triage.records import ParseError, Report

_BOM = b"\xef\xbb\xbf"
_TRANSLATED = b"Translated Report (Full Report Below)"
_TRANSLATED_LINE = re.compile(rb"^[ \t>*#-]*Translated Report \(Full Report Below\)[ \t*-]*\r?$",
                              re.M)
_FULL_REPORT = re.compile(rb"^[ \t]*Full Report[ \t]*\r?$", re.M)
_JSON_LINE = re.compile(rb"^[ \t]*\{", re.M)

# Markers of a legacy text report (anywhere in the sniffed head).
_TEXT_MARKERS = (
    b"Incident Identifier:",
    b"Exception Type:",
    b"Crashed Thread:",
    b"Triggered by Thread:",
    b"Binary Images:",
    b"Date/Time:",
)
_THREAD_CRASHED = re.compile(rb"^Thread \d+ Crashed:", re.M)
_HEADER_KEYS = (b'"bug_type"', b'"incident_id"', b'"procName"', b'"app_name"', b'"os_version"')


#: Text before a JSON header that makes the parser read the whole file as a text report.
_TEXT_BEFORE_JSON = (b"Incident Identifier:", b"Exception Type:")


#: A JSON string or a bracket (to follow an object's nesting without decoding it).
_JSON_TOKEN = re.compile(rb'"(?:[^"\\\n]|\\.)*"|[{}\[\]]')
_KEY_COLON = re.compile(rb"[ \t\r\n]*:")
#: ``"bug_type"`` must start within this many bytes of the header line (a header is ~400 B).
_HEADER_WINDOW = 4096
#: JSON lines tried below leading text before giving up (a pasted JSON log above a report).
_MAX_JSON_LINES = 64


def _json_header_after_text(head: bytes) -> int | None:
    """Offset of the JSON header line below leading text (a note, console output), or None.

    The one rule for "text before a JSON header line" (formats.md, decision step 6), shared
    by the parser and :func:`looks_like_report` so they accept the same files: a line that
    starts with ``{`` opening an object with a top-level ``"bug_type"`` key within its first
    4 KB (a one-line header, or a pretty-printed header / whole report), with no legacy text
    report header (``Incident Identifier:``, ``Exception Type:``) above it. A dict literal in
    source code or an unrelated JSON line above the header does not count (its object closes,
    or its ``"bug_type"`` is not a top-level key).
    """
    for tries, m in enumerate(_JSON_LINE.finditer(head)):
        if tries >= _MAX_JSON_LINES:
            break
        start = head.index(b"{", m.start())
        if head.find(b'"bug_type"', start, start + _HEADER_WINDOW + 10) < 0:
            continue
        if _top_level_bug_type(head, start):
            if any(k in head[:m.start()] for k in _TEXT_BEFORE_JSON):
                return None
            return m.start()
    return None


def _top_level_bug_type(head: bytes, start: int) -> bool:
    """True when the object opened at ``head[start]`` has a ``"bug_type"`` key at its top
    level, starting within :data:`_HEADER_WINDOW` bytes."""
    depth = 0
    end = min(len(head), start + _HEADER_WINDOW + 10)
    for t in _JSON_TOKEN.finditer(head, start, end):
        tok = t.group()
        if tok in (b"{", b"["):
            depth += 1
        elif tok in (b"}", b"]"):
            depth -= 1
            if depth <= 0:
                return False
        elif depth == 1 and tok == b'"bug_type"' and _KEY_COLON.match(head, t.end()):
            return True
    return False


def looks_like_report(head: bytes) -> bool:
    """True when the first bytes of a file look like an Apple diagnostic report (any format).

    Accepts what :func:`parse_bytes` reads as a report: a JSON report, a translated report, a
    JSON header line below some text, a legacy text report.
    """
    if not head:
        return False
    h = head[:65536]
    if h[:2] in (b"\xff\xfe", b"\xfe\xff"):      # UTF-16 (the parser re-encodes it)
        h = h[:len(h) & ~1].decode("utf-16", errors="replace").encode("utf-8")
    if h.startswith(_BOM):
        h = h[3:]
    s = h.lstrip()
    if s.startswith(b"{"):
        return any(k in h for k in _HEADER_KEYS)
    if _TRANSLATED in h and _TRANSLATED_LINE.search(h):
        return True
    if _json_header_after_text(s) is not None:
        return True
    hits = sum(1 for m in _TEXT_MARKERS if m in h)
    if b"Process:" in h and hits:
        return True
    if hits >= 2:
        return True
    return bool(_THREAD_CRASHED.search(h))


def _decode_text(data: bytes, notes: list[str]) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        notes.append("invalid UTF-8: undecodable bytes replaced")
        return data.decode("utf-8", errors="replace")


def parse_bytes(data: bytes, path: str, sha256: str) -> Report:
    """Parse one file's bytes. Raises ParseError with a one-line reason, nothing else."""
    try:
        return _parse(data, path, sha256)
    except ParseError as err:
        msg = str(err).splitlines()[0] if str(err) else "unreadable report"
        raise ParseError(msg) from None
    except RecursionError:
        raise ParseError("JSON nested too deeply") from None
    except MemoryError:
        raise ParseError("file too large to parse in memory") from None
    except Exception as err:   # a parser bug must not stop a batch
        reason = f"{type(err).__name__}: {err}".splitlines()[0][:200]
        raise ParseError(f"parser failed: {reason}") from None


def _parse(data: bytes, path: str, sha256: str) -> Report:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ParseError("not bytes")
    data = bytes(data)
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):      # UTF-16 (saved by an editor)
        try:
            data = data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("undecodable UTF-16 text") from None
    if data.startswith(_BOM):
        data = data[3:]
    stripped = data.strip()
    if not stripped:
        raise ParseError("empty file")
    if b"\x00" in stripped[:4096] and not stripped.startswith(b"{"):
        raise ParseError("binary data, not a crash report")

    notes: list[str] = []
    head = stripped[:65536]
    if _TRANSLATED in stripped and _TRANSLATED_LINE.search(stripped):
        return _parse_translated(stripped, path, sha256, notes)
    if stripped.startswith(b"{"):
        return _parse_ips(stripped, path, sha256, notes, "ips-json")
    # Leading junk before the JSON header (a note, console output): find a JSON header line.
    start = _json_header_after_text(head)
    if start is not None:
        notes.append(f"skipped {start} bytes of text before the JSON header")
        return _parse_ips(stripped[start:], path, sha256, notes, "ips-json")
    return _parse_text(stripped, path, sha256, notes, "crash-text")


def _parse_translated(data: bytes, path: str, sha256: str, notes: list[str]) -> Report:
    mt = _TRANSLATED_LINE.search(data)
    pos = mt.start() if mt else data.find(_TRANSLATED)
    m = _FULL_REPORT.search(data, pos + len(_TRANSLATED) if pos >= 0 else 0)
    err_json: str | None = None
    if m:
        rest = data[m.end():]
        j = _JSON_LINE.search(rest)
        if j:
            try:
                return _parse_ips(rest[j.start():].strip(), path, sha256, notes,
                                  "translated+ips")
            except ParseError as err:
                err_json = str(err)
    # Fall back to the translated text part (between the banner and "Full Report").
    start = pos + len(_TRANSLATED) if pos >= 0 else 0
    end = m.start() if m else len(data)
    text = data[start:end]
    notes.append("Full Report JSON missing or unreadable"
                 + (f" ({err_json})" if err_json else "") + ": parsed the translated text")
    return _parse_text(text, path, sha256, notes, "translated-text")


def _parse_ips(data: bytes, path: str, sha256: str, notes: list[str], fmt: str) -> Report:
    from triage.reports import ips

    nl = data.find(b"\n")
    first = data if nl < 0 else data[:nl]
    rest = b"" if nl < 0 else data[nl + 1:]
    header = None
    try:
        header = ips.loads(first)
    except ValueError:
        header = None

    if header is None:
        # Not a one-line header: the whole file may be one (pretty-printed) JSON document, or a
        # header spread over several lines / glued to the body.
        try:
            doc = ips.loads(data)
        except ValueError as err:
            split = _split_documents(data)
            if split is not None:
                hdr, body_text = split
                notes.append("header is not on its own first line")
                body_bytes = body_text.encode("utf-8", errors="replace")
                try:
                    body = ips.loads(body_bytes)
                except ValueError as err2:
                    body = _lenient_doc(body_bytes, notes, err2)
                return ips.report_from_json(hdr, body, path, sha256, fmt, notes)
            doc = _lenient_doc(data, notes, err)
        if not isinstance(doc, dict):
            raise ParseError(f"JSON document is a {type(doc).__name__}, not a report object")
        if not (_is_header(doc) or _is_body(doc)):
            raise ParseError(_NOT_APPLE)
        return ips.report_from_json(None, doc, path, sha256, fmt, notes)

    if not isinstance(header, dict):
        raise ParseError(f"first line is a JSON {type(header).__name__}, not a report header")
    if not (_is_header(header) or _is_body(header)):
        raise ParseError(_NOT_APPLE)

    body_bytes = rest.strip()
    if not body_bytes:
        if _is_body(header):            # a whole report on one line
            return ips.report_from_json(None, header, path, sha256, fmt, notes)
        raise ParseError("header only: the report body is missing")

    if body_bytes.startswith(b"{") or body_bytes.startswith(b"["):
        try:
            body = ips.loads(body_bytes)
        except ValueError as err:
            body = _lenient_doc(body_bytes, notes, err)
        return ips.report_from_json(header, body, path, sha256, fmt, notes)

    # Header JSON + text body (bug_type 202 cpu_resource; iOS 14 bug_type 109 crash text).
    from triage.reports import text as textmod

    body_text = _decode_text(body_bytes, notes)
    return textmod.parse_text_body(header, body_text, path, sha256, notes)


def _split_documents(data: bytes):
    """(header, body text) when the data is a header object directly followed by a JSON body."""
    from triage.reports import ips

    try:
        first, rest = ips.loads_prefix(data.decode("utf-8", errors="replace"))
    except ValueError:
        return None
    if isinstance(first, dict) and "bug_type" in first and not _is_body(first) \
            and rest.startswith("{"):
        return first, rest
    return None


_NOT_APPLE = "JSON but not an Apple diagnostic report (no bug_type, incident or report body)"


def _is_header(obj: dict) -> bool:
    return "bug_type" in obj or "incident_id" in obj or "incident" in obj


def _is_body(obj: dict) -> bool:
    return any(k in obj for k in ("threads", "procName", "exception", "usedImages",
                                  "panicString", "processes", "processByPid"))


def _lenient_doc(data: bytes, notes: list[str], err: Exception):
    """Accept a valid JSON value followed by trailing text (a pasted note); else ParseError."""
    from triage.reports import ips

    text = data.decode("utf-8", errors="replace")
    try:
        obj, trailing = ips.loads_prefix(text)
    except ValueError:
        reason = str(err).splitlines()[0] if str(err) else "invalid JSON"
        if _looks_truncated(data):
            raise ParseError(f"truncated JSON body ({reason})") from None
        raise ParseError(f"invalid JSON body ({reason})") from None
    if trailing:
        notes.append(f"ignored {len(trailing)} characters after the JSON body")
    return obj


def _looks_truncated(data: bytes) -> bool:
    tail = data.rstrip()[-1:]
    return tail not in (b"}", b"]")


def _parse_text(data: bytes, path: str, sha256: str, notes: list[str], fmt: str) -> Report:
    from triage.reports import text as textmod

    return textmod.parse_text(_decode_text(data, notes), path, sha256, notes, fmt)
