"""Find report files: folders (recursive, incl. ``Retired/``), globs, single files, archives.

``discover(paths)`` streams one record per entry it looked at:

* :class:`Candidate` - a regular file (or archive member) that may be a report. Nothing has been
  read yet: ``read()`` opens it (size-limited). ``explicit`` is True for files named on the
  command line (or matched by a glob) whose extension is not a report extension: those are
  recognised by content (``looks_like_report``) after reading.
* :class:`Skipped` - not a report (wrong extension in a folder walk, FIFO/device/socket, ...).
* :class:`~triage.records.FileProblem` - something the user should hear about: a missing path, a
  symlink loop, an unreadable folder, a file above :data:`MAX_REPORT_BYTES`, a broken archive.

Nothing here opens a non-regular file: every entry is ``stat``-ed and checked with ``S_ISREG``
first, so a FIFO or a device never blocks the walk. Archive members are streamed: a ``.tar.gz``
member's ``read()`` is only valid until the iterator advances (ingest reads each candidate
before asking for the next one).
"""

from __future__ import annotations

import glob
import os
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Iterator

from triage.records import FileProblem

#: Extensions macOS/iOS write into DiagnosticReports (a folder walk takes only these).
REPORT_EXTENSIONS = frozenset({".ips", ".crash", ".panic", ".diag", ".hang", ".spin"})
#: Largest single report read (real reports are 10 KB - 2 MB; full panics up to ~10 MB).
MAX_REPORT_BYTES = 64 * 1024 * 1024
#: Archives opened when named explicitly (or matched by a glob).
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
_MIB = 1024 * 1024
_GLOB_CHARS = set("*?[")


@dataclass(slots=True)
class Candidate:
    """A file (or archive member) that may hold a report; ``read()`` returns its bytes."""

    path: str                  # absolute; archive members as "/abs/archive.zip!member/path"
    size: int
    mtime_ns: int
    explicit: bool = False     # named by the user with a non-report extension: check content
    opener: Callable[[], bytes] | None = field(default=None, repr=False)

    def read(self) -> bytes:
        """The file's bytes (raises OSError / FileProblemError; never more than the limit)."""
        if self.opener is not None:
            try:
                return self.opener()
            except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
                # a truncated / corrupt archive member: one problem line, not an internal error
                raise OSError(f"unreadable archive member: {str(exc) or type(exc).__name__}") \
                    from exc
        return read_file(self.path, self.size)


@dataclass(slots=True)
class Skipped:
    """An entry that is not a report (counted as ``skipped``)."""

    path: str
    reason: str


class TooLarge(OSError):
    """Raised by ``read()`` when a file grew past the limit after it was stat-ed."""


def too_large_reason(size: int, limit: int | None = None) -> str:
    limit = MAX_REPORT_BYTES if limit is None else limit
    return (f"file too large ({size / _MIB:.1f} MiB > {limit / _MIB:g} MiB limit)"
            if size < 10 * _MIB else
            f"file too large ({size // _MIB} MiB > {limit / _MIB:g} MiB limit)")


def read_file(path: str, expected: int | None = None) -> bytes:
    """Read a regular file, refusing more than :data:`MAX_REPORT_BYTES`.

    ``O_NONBLOCK`` makes a file that was swapped for a FIFO after the ``stat`` fail instead of
    blocking; the file is re-checked with ``fstat`` after opening.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"not a regular file ({_kind_name(st.st_mode)})")
        if st.st_size > MAX_REPORT_BYTES:
            raise TooLarge(too_large_reason(st.st_size))
        limit = MAX_REPORT_BYTES + 1
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1
            data = fh.read(limit)
        if len(data) > MAX_REPORT_BYTES:
            raise TooLarge(too_large_reason(len(data)))
        return data
    finally:
        if fd >= 0:
            os.close(fd)


def _kind_name(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISDIR(mode):
        return "folder"
    return "special file"


def is_report_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in REPORT_EXTENSIONS


def is_archive_name(name: str) -> bool:
    low = name.lower()
    return low.endswith(ARCHIVE_SUFFIXES)


def _reason(exc: OSError) -> str:
    if isinstance(exc, TooLarge):
        return str(exc)
    if exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


# --------------------------------------------------------------------------- public entry point

def discover(paths: Iterable[str | os.PathLike]) -> Iterator[Candidate | Skipped | FileProblem]:
    """Yield one record per entry found under ``paths`` (see the module docstring)."""
    seen: set[str] = set()
    for raw in paths:
        raw = os.fspath(raw)
        expanded = os.path.expanduser(raw)
        if not os.path.lexists(expanded) and _GLOB_CHARS & set(expanded):
            matches = sorted(glob.glob(expanded, recursive=True))
            if not matches:
                yield FileProblem(os.path.abspath(expanded), "no files match this pattern")
                continue
            for m in matches:
                yield from _one_path(m, seen)
            continue
        yield from _one_path(expanded, seen)


def _one_path(path: str, seen: set[str]) -> Iterator[Candidate | Skipped | FileProblem]:
    apath = os.path.abspath(path)
    if apath in seen:
        return
    try:
        st = os.stat(apath)
    except FileNotFoundError:
        if os.path.islink(apath):
            yield FileProblem(apath, "broken symlink")
        else:
            yield FileProblem(apath, "no such file or folder")
        return
    except OSError as exc:
        if exc.errno == 40:  # ELOOP
            yield FileProblem(apath, "symlink loop")
        else:
            yield FileProblem(apath, _reason(exc))
        return
    if stat.S_ISDIR(st.st_mode):
        yield from _walk(apath, st, seen)
        return
    seen.add(apath)
    if not stat.S_ISREG(st.st_mode):
        yield FileProblem(apath, f"not a regular file ({_kind_name(st.st_mode)}), not opened")
        return
    if is_archive_name(apath):
        yield from _archive(apath, st)
        return
    if st.st_size > MAX_REPORT_BYTES:
        yield FileProblem(apath, too_large_reason(st.st_size))
        return
    yield Candidate(apath, st.st_size, st.st_mtime_ns,
                    explicit=not is_report_name(apath))


def _walk(root: str, root_st: os.stat_result, seen: set[str]
          ) -> Iterator[Candidate | Skipped | FileProblem]:
    """Depth-first walk following symlinks, with loop detection on (dev, inode) of folders."""
    # stack of (folder path, ancestors' (dev, ino) set)
    stack: list[tuple[str, frozenset]] = [(root, frozenset({(root_st.st_dev, root_st.st_ino)}))]
    while stack:
        folder, ancestors = stack.pop()
        try:
            # (name, type) pairs only: DirEntry objects cost ~1 KB each, and a DiagnosticReports
            # folder can hold 100k files; the type comes from d_type (no syscall)
            with os.scandir(folder) as it:
                entries = sorted((e.name, _entry_type(e)) for e in it)
        except OSError as exc:
            yield FileProblem(folder, f"cannot list folder: {_reason(exc)}")
            continue
        subdirs: list[tuple[str, frozenset]] = []
        for name, etype in entries:
            p = os.path.join(folder, name)
            if etype == "f" and not is_report_name(name):
                if p not in seen:
                    seen.add(p)
                    yield Skipped(p, "not a report extension")
                continue
            try:
                st = os.stat(p)
            except FileNotFoundError:
                yield FileProblem(p, "broken symlink") if etype == "l" else \
                    FileProblem(p, "vanished during the walk")
                continue
            except OSError as exc:
                if exc.errno == 40:
                    yield FileProblem(p, "symlink loop")
                else:
                    yield FileProblem(p, _reason(exc))
                continue
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    yield FileProblem(p, "symlink loop (points back to a parent folder)")
                    continue
                subdirs.append((p, ancestors | {key}))
                continue
            if p in seen:
                continue
            seen.add(p)
            if not is_report_name(name):
                yield Skipped(p, "not a report extension")
                continue
            if not stat.S_ISREG(mode):
                yield Skipped(p, f"not a regular file ({_kind_name(mode)})")
                continue
            if st.st_size > MAX_REPORT_BYTES:
                yield FileProblem(p, too_large_reason(st.st_size))
                continue
            yield Candidate(p, st.st_size, st.st_mtime_ns)
        # keep sorted order: push in reverse so the first folder is walked first
        stack.extend(reversed(subdirs))


def _entry_type(entry: os.DirEntry) -> str:
    """Entry type from d_type where the OS gives it: d = folder, l = symlink, f = anything else."""
    try:
        if entry.is_symlink():
            return "l"
        if entry.is_dir(follow_symlinks=False):
            return "d"
    except OSError:
        return "l"  # unknown: stat it
    return "f"


# --------------------------------------------------------------------------- archives

def _archive(apath: str, st: os.stat_result) -> Iterator[Candidate | Skipped | FileProblem]:
    low = apath.lower()
    try:
        if low.endswith(".zip"):
            yield from _zip(apath)
        else:
            yield from _tar(apath)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as exc:
        reason = _reason(exc) if isinstance(exc, OSError) else (str(exc) or type(exc).__name__)
        yield FileProblem(apath, f"unreadable archive: {reason}")


def _zip(apath: str) -> Iterator[Candidate | Skipped | FileProblem]:
    with zipfile.ZipFile(apath) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            mpath = f"{apath}!{info.filename}"
            name = info.filename.rsplit("/", 1)[-1]
            if not is_report_name(name) or name.startswith("._") or "__MACOSX/" in info.filename:
                yield Skipped(mpath, "not a report extension")
                continue
            if info.file_size > MAX_REPORT_BYTES:
                yield FileProblem(mpath, too_large_reason(info.file_size))
                continue
            try:
                mtime_ns = int(datetime(*info.date_time).timestamp()) * 1_000_000_000
            except (ValueError, OverflowError):
                mtime_ns = 0

            def opener(info=info, mpath=mpath) -> bytes:
                with zf.open(info) as fh:
                    data = fh.read(MAX_REPORT_BYTES + 1)
                if len(data) > MAX_REPORT_BYTES:
                    raise TooLarge(too_large_reason(len(data)))
                return data

            yield Candidate(mpath, info.file_size, mtime_ns, opener=opener)


def _tar(apath: str) -> Iterator[Candidate | Skipped | FileProblem]:
    # streaming mode ("r|*"): never seeks, members are read in order
    with tarfile.open(apath, mode="r|*") as tf:
        for member in tf:
            if member.isdir():
                continue
            mname = member.name[2:] if member.name.startswith("./") else member.name
            mpath = f"{apath}!{mname}"
            name = member.name.rsplit("/", 1)[-1]
            if not is_report_name(name) or name.startswith("._"):
                yield Skipped(mpath, "not a report extension")
                continue
            if not member.isfile():
                yield Skipped(mpath, "not a regular file (archive link or special member)")
                continue
            if member.size > MAX_REPORT_BYTES:
                yield FileProblem(mpath, too_large_reason(member.size))
                continue

            def opener(member=member) -> bytes:
                fh = tf.extractfile(member)
                if fh is None:
                    raise OSError("archive member has no data")
                data = fh.read(MAX_REPORT_BYTES + 1)
                if len(data) > MAX_REPORT_BYTES:
                    raise TooLarge(too_large_reason(len(data)))
                return data

            yield Candidate(mpath, member.size, int(member.mtime) * 1_000_000_000, opener=opener)


def source_file(path: str) -> Path:
    """The file on disk behind a candidate path (the archive for ``archive!member``)."""
    return Path(path.split("!", 1)[0]) if "!" in path and is_archive_name(path.split("!", 1)[0]) \
        else Path(path)
