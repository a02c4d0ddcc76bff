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
            except TooLarge:
                raise
            except Exception as exc:  # noqa: BLE001 - see member_error_reason
                # a truncated / corrupt / encrypted / unsupported archive member: one problem
                # line, never an internal error (zipfile, tarfile and the decompressors raise
                # NotImplementedError, RuntimeError, ValueError, EOFError, zlib.error,
                # lzma.LZMAError, OSError, ...)
                raise OSError(f"unreadable archive member: {member_error_reason(exc)}") \
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


class _MemberError(Exception):
    """An archive member that cannot be read, with a reason already written for the user."""


def member_error_reason(exc: BaseException) -> str:
    """One-line reason for an exception raised while reading an archive member."""
    if isinstance(exc, _MemberError):
        text = str(exc)
    elif isinstance(exc, RuntimeError) and "encrypted" in str(exc):
        text = "encrypted (password required)"
    elif isinstance(exc, OSError):
        text = _reason(exc)
    else:
        text = str(exc) or type(exc).__name__
    text = " ".join(text.split())
    return text[:200] or type(exc).__name__


def _reason(exc: OSError) -> str:
    if isinstance(exc, TooLarge):
        return str(exc)
    if exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


# --------------------------------------------------------------------------- public entry point

def discover(paths: Iterable[str | os.PathLike]) -> Iterator[Candidate | Skipped | FileProblem]:
    """Yield one record per entry found under ``paths`` (see the module docstring).

    Every path is reported at most once. A file named explicitly (or matched by a glob) is
    handled where it is named, as an explicit file (recognised by content; an archive is
    opened), whatever the order of the arguments: a folder walk that reaches it leaves it to
    that argument instead of skipping it by extension (so it is neither counted as skipped by
    the walk nor read twice).
    """
    # expand every argument first: the walks need to know which files are named explicitly
    steps: list[tuple[str, bool]] = []       # (path, True) or (pattern, False): no match
    for raw in paths:
        expanded = os.path.expanduser(os.fspath(raw))
        if not os.path.lexists(expanded) and _GLOB_CHARS & set(expanded):
            matches = sorted(glob.glob(expanded, recursive=True))
            if not matches:
                steps.append((expanded, False))
            steps.extend((m, True) for m in matches)
        else:
            steps.append((expanded, True))
    # only names a walk treats differently from an explicit argument (a walk takes report
    # extensions the same way); folders in the set are harmless: a walk only looks up files
    # (by absolute and by resolved path: a file named through a symlinked folder is the same
    # file as the one a walk of the real folder reaches, and the other way round)
    explicit = {q for p, ok in steps if ok and not is_report_name(p)
                for q in (os.path.abspath(p), os.path.realpath(p))}
    seen: set[str] = set()
    for path, ok in steps:
        if not ok:
            yield FileProblem(os.path.abspath(path), "no files match this pattern")
            continue
        yield from _one_path(path, seen, explicit)


def _one_path(path: str, seen: set[str], explicit: frozenset[str] | set[str] = frozenset()
              ) -> Iterator[Candidate | Skipped | FileProblem]:
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
        yield from _walk(apath, st, seen, explicit)
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


def _walk(root: str, root_st: os.stat_result, seen: set[str],
          explicit: frozenset[str] | set[str] = frozenset()
          ) -> Iterator[Candidate | Skipped | FileProblem]:
    """Depth-first walk following symlinks, with loop detection on (dev, inode) of folders.

    Files in ``explicit`` (named as arguments of their own) are left to their argument.
    """
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
                if p not in seen and not _named(p, explicit):
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
            if p in seen or (not is_report_name(name) and _named(p, explicit)):
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


def _named(path: str, explicit: frozenset[str] | set[str]) -> bool:
    """Whether a walk's ``path`` is also named as an argument of its own (by any spelling)."""
    return bool(explicit) and (path in explicit or os.path.realpath(path) in explicit)


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
    except Exception as exc:  # noqa: BLE001 - no archive error may escape discovery
        # BadZipFile, TarError, EOFError, OSError, ValueError, zlib/lzma/bz2 errors, ...: the
        # members already yielded stay; the rest of this archive is lost and said so
        yield FileProblem(apath, f"unreadable archive: {member_error_reason(exc)}")


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
                problem = _zip_member_problem(info)
                if problem:
                    raise _MemberError(problem)
                try:
                    fh = zf.open(info)
                except NotImplementedError:
                    raise _MemberError(_zip_method_reason(info)) from None
                except RuntimeError as exc:   # a decompressor module missing, or encrypted
                    if "encrypted" in str(exc):
                        raise
                    raise _MemberError(_zip_method_reason(info)) from None
                with fh:
                    data = fh.read(MAX_REPORT_BYTES + 1)
                if len(data) > MAX_REPORT_BYTES:
                    raise TooLarge(too_large_reason(len(data)))
                return data

            yield Candidate(mpath, info.file_size, mtime_ns, opener=opener)


def _zip_member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member cannot be read before trying (encryption: general purpose flag bit 0,
    also set by WinZip AES), or None."""
    if info.flag_bits & 0x1:
        return "encrypted (password required)"
    return None


def _zip_method_reason(info: zipfile.ZipInfo) -> str:
    method = info.compress_type
    name = zipfile.compressor_names.get(method)
    return f"unsupported compression method {method}" + (f" ({name})" if name else "")


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

            yield Candidate(mpath, member.size, _tar_mtime_ns(member), opener=opener)
        # tarfile ends the member list silently at an invalid header (a corrupt stream, or a
        # second archive appended): what follows the last member must be end-of-archive zero
        # blocks, or members were lost and the user must hear it
        while True:
            chunk = tf.fileobj.read(1 << 16)
            if not chunk:
                break
            if chunk.strip(b"\0"):
                raise tarfile.ReadError("invalid tar header after the last member read "
                                        "(the rest of the archive is not read)")


def _tar_mtime_ns(member: tarfile.TarInfo) -> int:
    """A member's mtime in ns, 0 when it is not a sane number (pax headers can hold any)."""
    try:
        ns = int(member.mtime) * 1_000_000_000
    except (TypeError, ValueError, OverflowError):
        return 0
    return ns if -(1 << 63) <= ns < (1 << 63) else 0


def source_file(path: str) -> Path:
    """The file on disk behind a candidate path (the archive for ``archive!member``)."""
    return Path(path.split("!", 1)[0]) if "!" in path and is_archive_name(path.split("!", 1)[0]) \
        else Path(path)
