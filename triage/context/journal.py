"""Compile journal: JSON Lines, one compile record per line (schema 1, see docs/context.md).

A record is what ``triage record`` writes, or what a user's own pipeline writes with the same
field names::

    {"schema": 1, "pid": 4242, "process": "coreai-build",
     "started_at": "2026-09-18T08:24:00.442+00:00", "ended_at": "2026-09-18T08:24:03.1+00:00",
     "argv": [...], "cwd": "/src", "exit_code": 0, "model": "m.mlpackage",
     "encoding": {...} | null, "flags": {...}}

Required: ``process`` (str), ``started_at`` and ``ended_at`` (ISO-8601 with a UTC offset, or epoch
seconds); ``pid`` is an int, or null for a command that never started (exit 127). Everything else is optional; unknown keys are kept verbatim (the
store keeps the record as recorded in ``compiles.raw``). Pure functions only, no store access.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from triage.errors import UserError, refuse_special_file
from triage.records import FileProblem

SCHEMA_VERSION = 1
REQUIRED = ("process", "started_at", "ended_at")   # pid may be null (never started)
JOURNAL_NAME = "journal.jsonl"             # default journal of `triage record`, beside the store
REPORTS_JOURNAL_NAME = "triage-journal.jsonl"   # journal found beside reports at ingest

# attributes used for configurations / correlations (flattened "config")
ENCODING_KEYS = ("scheme", "dtype", "nbits", "granularity")
FLAG_KEYS = ("platform", "preferred_compute", "architecture", "compression")
EXTRA_ENCODING_KEYS = ("block_size", "group_size")


def parse_time(value: Any) -> float | None:
    """ISO-8601 with a zone (``Z`` accepted) or epoch seconds -> epoch seconds. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("not a time")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("not a time")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError("has no UTC offset")
    return dt.timestamp()


def record_key(record: dict) -> str:
    """sha256 of the canonical JSON of the record (sorted keys): identical records load once."""
    return hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS
                                       | orjson.OPT_NON_STR_KEYS)).hexdigest()


def validate_record(obj: Any, required: tuple[str, ...] = REQUIRED) -> str | None:
    """None when ``obj`` is a usable record, else a one-line reason."""
    if not isinstance(obj, dict):
        return f"not a JSON object ({type(obj).__name__})"
    schema = obj.get("schema", SCHEMA_VERSION)
    if isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA_VERSION:
        return f"record schema {schema} is newer than this triage understands ({SCHEMA_VERSION})"
    missing = [k for k in required if obj.get(k) is None]
    if missing:
        return "record missing required field" + ("s " if len(missing) > 1 else " ") + \
            ", ".join(missing)
    if "pid" in obj and obj["pid"] is not None and \
            (isinstance(obj["pid"], bool) or not isinstance(obj["pid"], int)):
        return f"pid is not an integer: {obj['pid']!r}"
    if isinstance(obj.get("pid"), int) and not 0 <= obj["pid"] < 2**63:
        return f"pid out of range: {obj['pid']!r}"
    if "process" in obj and obj["process"] is not None and not isinstance(obj["process"], str):
        return f"process is not a string: {obj['process']!r}"
    # a blank name would be "unknown" and match any crash with the pid: only a command that
    # never started (pid null: it links to nothing) may have one (`triage record -- ''`)
    if "process" in required and isinstance(obj.get("process"), str) \
            and not obj["process"].strip() and obj.get("pid") is not None:
        return "process is empty (a record with a pid needs the process name to link)"
    for k in ("started_at", "ended_at"):
        if obj.get(k) is not None:
            try:
                parse_time(obj[k])
            except (ValueError, TypeError, OverflowError) as exc:
                return f"{k} {obj[k]!r} is not an ISO-8601 time ({exc})"
    if obj.get("argv") is not None and not (isinstance(obj["argv"], list)
                                            and all(isinstance(a, str) for a in obj["argv"])):
        return "argv is not a list of strings"
    for k in ("encoding", "flags"):
        if obj.get(k) is not None and not isinstance(obj[k], dict):
            return f"{k} is not an object"
    return None


def parse_journal_bytes(data: bytes, path: str, first_line: int = 1
                        ) -> tuple[list[dict], list[FileProblem]]:
    records: list[dict] = []
    problems: list[FileProblem] = []
    for lineno, line in enumerate(data.split(b"\n"), first_line):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            problems.append(FileProblem(f"{path}:{lineno}", f"not JSON ({_short(exc)})"))
            continue
        reason = validate_record(obj)
        if reason:
            problems.append(FileProblem(f"{path}:{lineno}", reason))
            continue
        records.append(obj)
    if first_line == 1 and not records and len(problems) > 1 \
            and all(pr.reason.startswith("not JSON") for pr in problems):
        # not a journal at all (binary file, text file): one problem, not one per line
        problems = [FileProblem(problems[0].path, "not a JSON Lines journal: no line is JSON "
                                f"(this one: {problems[0].reason})")]
    return records, problems


def read_journal(path: Path | str) -> tuple[list[dict], list[FileProblem]]:
    """Read one journal. Bad lines become problems (``path:line``); the others are used.

    A path that does not exist or is not a readable file raises ``UserError`` (one line).
    """
    p = Path(path).expanduser()
    try:
        if p.is_dir():
            raise UserError(f"{p}: is a folder, not a journal file")
        refuse_special_file(p)
        data = p.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{p}: journal not found")
    except PermissionError:
        raise UserError(f"{p}: journal not readable (permission denied)")
    except OSError as exc:
        raise UserError(f"{p}: cannot read journal: {exc.strerror or exc}")
    return parse_journal_bytes(data, str(p))


def read_journal_incremental(path: Path | str, state: dict | None
                             ) -> tuple[list[dict], list[FileProblem], dict]:
    """Like ``read_journal`` but only the part appended since ``state`` (as returned by the
    previous call: inode, offset, line number and a hash of the head). A journal that was
    replaced or rewritten (other inode, shorter, different head) is read from the start.
    Returns (records, problems, new state); ``state["records"]`` counts the valid records read
    from this journal so far."""
    p = Path(path).expanduser()
    if state and "records" not in state:
        state = None   # saved before the record count existed: read once from the start
    try:
        if p.is_dir():
            raise UserError(f"{p}: is a folder, not a journal file")
        refuse_special_file(p)
        st = p.stat()
        with open(p, "rb") as fh:
            head = fh.read(4096)
            start, line0 = 0, 0
            if state and state.get("ino") == [st.st_dev, st.st_ino] \
                    and st.st_size >= state.get("offset", 0) \
                    and state.get("head") == hashlib.sha256(
                        head[:min(state.get("offset", 0), 4096)]).hexdigest():
                start, line0 = state["offset"], state.get("line", 0)
            fh.seek(start)
            data = fh.read()
    except FileNotFoundError:
        raise UserError(f"{p}: journal not found")
    except PermissionError:
        raise UserError(f"{p}: journal not readable (permission denied)")
    except OSError as exc:
        raise UserError(f"{p}: cannot read journal: {exc.strerror or exc}")
    # only complete lines advance the offset (a last line without newline is read again)
    end = data.rfind(b"\n") + 1
    records, problems = parse_journal_bytes(data, str(p), first_line=line0 + 1)
    offset = start + end
    nlines = data[:end].count(b"\n")
    # ... but its problem is reported once, not on every later read while it stays unchanged
    tail = hashlib.sha256(data[end:]).hexdigest() if data[end:].strip() else None
    if tail and state and start == state.get("offset") and state.get("tail") == tail:
        last = f"{p}:{line0 + 1 + nlines}"
        problems = [pr for pr in problems if pr.path != last]
    # valid records read from this journal so far
    before = state.get("records", 0) if start else 0
    new_state = {"ino": [st.st_dev, st.st_ino], "offset": offset,
                 "line": line0 + nlines,
                 "head": hashlib.sha256(head[:min(offset, 4096)]).hexdigest(), "tail": tail,
                 "records": before + len(records)}
    return records, problems, new_state


def read_sidecar(path: Path | str) -> tuple[dict | None, FileProblem | None]:
    """A sidecar ``<report stem>.json``: one record (same schema; pid/times not required)."""
    p = str(path)
    try:
        data = Path(p).read_bytes()
    except OSError as exc:
        return None, FileProblem(p, f"cannot read sidecar: {exc.strerror or exc}")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return None, FileProblem(p, f"sidecar is not JSON ({_short(exc)})")
    reason = validate_record(obj, required=())
    if reason:
        return None, FileProblem(p, f"sidecar: {reason}")
    return obj, None


def append_record(path: Path | str, record: dict) -> None:
    """Append one record as one line with a single ``write`` on an ``O_APPEND`` descriptor,
    so concurrent recorders never interleave."""
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    line = orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS, default=str) + b"\n"
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def effective_flags(record: dict) -> dict:
    """The record's ``flags``; parsed from ``argv`` when the record has none."""
    flags = record.get("flags")
    if isinstance(flags, dict):
        return flags
    argv = record.get("argv")
    if isinstance(argv, list) and argv:
        from triage.context.flags import parse_flags

        return parse_flags([str(a) for a in argv])
    return {}


def effective_encoding(record: dict, flags: dict | None = None) -> dict | None:
    """The record's ``encoding``; derived from ``flags.compression`` when the record has none."""
    enc = record.get("encoding")
    if isinstance(enc, dict):
        return enc
    flags = effective_flags(record) if flags is None else flags
    comp = flags.get("compression")
    if isinstance(comp, str) and comp:
        from triage.context.encoding import encoding_from_compression

        return encoding_from_compression(comp)
    return None


def config_of(record: dict) -> dict:
    """Flattened configuration of a record: ``encoding.scheme`` ... ``flags.compression``.

    Missing facts are None. Values are kept as written (strings/ints)."""
    flags = effective_flags(record)
    enc = effective_encoding(record, flags) or {}
    cfg: dict[str, Any] = {}
    for k in ENCODING_KEYS:
        cfg[f"encoding.{k}"] = _scalar(enc.get(k))
    for k in FLAG_KEYS:
        cfg[f"flags.{k}"] = _scalar(flags.get(k))
    for k in EXTRA_ENCODING_KEYS:   # shown in encoding labels, not used as attributes
        cfg[f"encoding.{k}"] = _scalar(enc.get(k))
    return cfg


def _scalar(v: Any) -> Any:
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return orjson.dumps(v, option=orjson.OPT_SORT_KEYS, default=str).decode()


def record_row(record: dict, source: str) -> dict:
    """Columns of the ``compiles`` table for one record."""
    def t(k):
        try:
            return parse_time(record.get(k)) if record.get(k) is not None else None
        except (ValueError, TypeError, OverflowError):
            return None

    def sql_int(v):   # an INTEGER column takes signed 64 bits; the raw record keeps the rest
        return v if isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**63 \
            else None

    model = record.get("model")
    try:
        raw = orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS, default=str).decode()
    except orjson.JSONEncodeError:   # integers beyond 64 bits: kept as text
        from triage.store.db import _big_ints

        raw = orjson.dumps(_big_ints(record), option=orjson.OPT_NON_STR_KEYS,
                           default=str).decode()
    return {
        "record_key": record_key(record),
        "source": source,
        "pid": sql_int(record.get("pid")),
        "process": record.get("process") if isinstance(record.get("process"), str) else None,
        "started_ts": t("started_at"),
        "ended_ts": t("ended_at"),
        "exit_code": sql_int(record.get("exit_code")),
        "model": model if isinstance(model, str) else None,
        "config": orjson.dumps(config_of(record), option=orjson.OPT_SORT_KEYS).decode(),
        "raw": raw,
    }


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120]
