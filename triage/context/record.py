"""``triage record -- COMMAND ARGS...``: run a compile unchanged and journal it.

stdin/stdout/stderr are inherited, the child's exit status becomes ours (a child killed by
signal N gives 128+N like a shell), SIGTERM/SIGHUP/SIGQUIT are forwarded to the child, SIGINT
too unless the terminal already delivered it to the child's (our) foreground process group. A
command that cannot be found exits 127 (126: found but not executable) with one line on stderr,
and is recorded too. The record is appended as one line with a single O_APPEND write.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from triage.context.journal import SCHEMA_VERSION, append_record


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="microseconds")


def build_record(argv: list[str], *, pid: int | None, started_at: str, ended_at: str,
                 cwd: str, exit_code: int, extra: dict[str, Any] | None = None) -> dict:
    """The journal record for one finished command (flags parsed, model inspected)."""
    from triage.context.flags import find_model, parse_flags

    flags = parse_flags(argv)
    model = find_model(argv)
    encoding = None
    notes: list[str] = []
    if model:
        try:
            from triage.context.encoding import inspect_model

            mp = model if os.path.isabs(model) else os.path.join(cwd, model)
            if os.path.exists(mp):
                res = inspect_model(mp, flags)
                encoding = res.get("encoding")
                if res.get("problem"):
                    notes.append(res["problem"])
            else:
                notes.append(f"model {model} not found after the command ran")
        except Exception as exc:  # noqa: BLE001 - recording must never fail on a bad model
            notes.append(f"model not inspected: {type(exc).__name__}: {exc}")
    if encoding is None and isinstance(flags.get("compression"), str):
        from triage.context.encoding import encoding_from_compression

        encoding = encoding_from_compression(flags["compression"])
    rec: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "pid": pid,
        "process": os.path.basename(argv[0]) if argv else None,
        "started_at": started_at,
        "ended_at": ended_at,
        "argv": list(argv),
        "cwd": cwd,
        "exit_code": exit_code,
        "model": model,
        "encoding": encoding,
        "flags": flags,
    }
    if extra:
        rec.update(extra)
    if notes:
        rec["notes"] = notes
    return rec


def run_and_record(argv: list[str], journal: Path) -> int:
    """Run ``argv``; append its record to ``journal``; return the exit status to use."""
    cwd = os.getcwd()
    started = now_iso()
    extra: dict[str, Any] = {}
    try:
        child = subprocess.Popen(argv)
    except FileNotFoundError:
        sys.stderr.write(f"triage: {argv[0]}: command not found\n")
        _write(journal, build_record(argv, pid=None, started_at=started, ended_at=now_iso(),
                                     cwd=cwd, exit_code=127,
                                     extra={"error": "command not found"}))
        return 127
    except PermissionError:
        sys.stderr.write(f"triage: {argv[0]}: permission denied\n")
        _write(journal, build_record(argv, pid=None, started_at=started, ended_at=now_iso(),
                                     cwd=cwd, exit_code=126,
                                     extra={"error": "permission denied"}))
        return 126
    except OSError as exc:
        sys.stderr.write(f"triage: {argv[0]}: cannot run: {exc.strerror or exc}\n")
        _write(journal, build_record(argv, pid=None, started_at=started, ended_at=now_iso(),
                                     cwd=cwd, exit_code=126, extra={"error": str(exc)}))
        return 126

    def forward(signum, _frame):
        if signum == signal.SIGINT and _terminal_delivers_to_child():
            return  # the tty already sent SIGINT to the whole foreground group
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        try:
            old[sig] = signal.signal(sig, forward)
        except (ValueError, OSError):  # not the main thread
            pass
    try:
        rc = child.wait()
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
    status = rc if rc >= 0 else 128 - rc
    if rc < 0:
        extra["signal"] = -rc
    _write(journal, build_record(argv, pid=child.pid, started_at=started, ended_at=now_iso(),
                                 cwd=cwd, exit_code=status, extra=extra))
    return status


def _terminal_delivers_to_child() -> bool:
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def _write(journal: Path, record: dict) -> None:
    """Append ``record``; when the journal cannot be written, one warning line on stderr
    (``triage: warning: JOURNAL: compile record not written: REASON``) and no exception: the
    child's exit status is passed through all the same."""
    try:
        append_record(journal, record)
    except OSError as exc:
        sys.stderr.write(f"triage: warning: {journal}: compile record not written: "
                         f"{_write_problem(Path(journal).expanduser(), exc)}\n")


def _write_problem(journal: Path, exc: OSError) -> str:
    """Why ``journal`` could not be appended to, in words (not ``[Errno 17] File exists``)."""
    if journal.is_dir():
        return "is a folder, not a journal file"
    for parent in journal.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is not a folder"
            break
    return exc.strerror or str(exc)
