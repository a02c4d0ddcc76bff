"""``triage record -- COMMAND ARGS...``: run a compile unchanged and journal it.

stdin/stdout/stderr are inherited, the child's exit status becomes ours (a child killed by
signal N gives 128+N like a shell). Every signal reaches the child once:

* run from an interactive terminal (our process group is the terminal's foreground group), the
  child stays in our process group, so job control (Ctrl-C, Ctrl-\\, Ctrl-Z, hangup) reaches it
  directly from the terminal and SIGINT/SIGQUIT/SIGHUP are not forwarded; SIGTERM is;
* otherwise (scripts, CI, ``timeout``, no terminal) the child runs in a process group of its
  own, so a signal sent to our whole process group reaches only us, and SIGINT, SIGTERM,
  SIGHUP and SIGQUIT are forwarded to the child's group, once (the same signal arriving again
  within ``DEDUP_SECONDS`` — ``timeout`` signals us and then our group — is forwarded once).
  On Linux the child also gets SIGKILL when we die (``PR_SET_PDEATHSIG``), so ``kill -KILL``
  of our group still ends the compile.

A command that cannot be found exits 127 (126: found but not executable) with one line on
stderr, and is recorded too. The record is appended as one line with a single O_APPEND write.
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

#: the same signal received again within this many seconds is not forwarded again
DEDUP_SECONDS = 0.5
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
#: forwarded even when the terminal delivers signals to the child's (our) process group
FORWARDED_INTERACTIVE = (signal.SIGTERM,)


class ChildStatus(SystemExit):
    """The exit status of ``triage record``: the child's, passed through without triage's own
    interruption message (``triage.cli`` prints nothing for it)."""

    quiet = True


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
        "process": (os.path.basename(argv[0].rstrip("/")) or argv[0]) if argv else None,
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
    interactive = _terminal_delivers_to_child()
    try:
        if not argv[0]:   # `triage record -- ''`: a shell says "command not found" (127)
            raise FileNotFoundError(argv[0])
        if interactive:
            child = subprocess.Popen(argv)
        else:
            # triage record runs no threads, so a preexec_fn is safe here
            child = subprocess.Popen(argv, preexec_fn=_own_group_preexec())  # noqa: PLW1509
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

    import time

    last: dict[int, float] = {}

    def forward(signum, _frame):
        if interactive and signum not in FORWARDED_INTERACTIVE:
            return  # the terminal delivers it to the whole foreground group, the child too
        now = time.monotonic()
        if now - last.get(signum, -1e9) < DEDUP_SECONDS:
            return  # the same event twice (e.g. `timeout`: to us, then to our group)
        last[signum] = now
        try:
            if interactive:
                child.send_signal(signum)
            else:
                os.killpg(child.pid, signum)   # the child's group: its own helpers too
        except (ProcessLookupError, PermissionError):
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass

    old = {}
    for sig in FORWARDED:
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
    """Whether we run in the foreground process group of a terminal (on stdin, stdout or
    stderr): then the terminal's signals (Ctrl-C, Ctrl-\\, hangup) reach our whole group."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
                return True
        except OSError:
            continue
    return False


def _own_group_preexec():
    """``preexec_fn`` putting the child in a process group of its own; on Linux also asking
    for SIGKILL when triage dies (nothing can forward a SIGKILL)."""
    prctl = None
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            prctl = None
    parent = os.getpid()

    def pre() -> None:
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(1, int(signal.SIGKILL), 0, 0, 0)   # PR_SET_PDEATHSIG
            if os.getppid() != parent:               # triage died before prctl took effect
                os._exit(137)
    return pre


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
