"""Discovery: folders, Retired/, globs, explicit files, archives, symlink loops, FIFOs, limits."""
from __future__ import annotations

import io
import os
import tarfile
import zipfile

import pytest

from triage.records import FileProblem
from triage.reports import discover as disc
from triage.reports.discover import Candidate, Skipped, discover


def _by_type(items):
    cands = [i for i in items if isinstance(i, Candidate)]
    skipped = [i for i in items if isinstance(i, Skipped)]
    probs = [i for i in items if isinstance(i, FileProblem)]
    assert len(cands) + len(skipped) + len(probs) == len(items)
    return cands, skipped, probs


def _tree(root):
    (root / "Retired").mkdir(parents=True)
    (root / "a.ips").write_bytes(b"A")
    (root / "b.crash").write_bytes(b"B")
    (root / "Retired" / "c.ips").write_bytes(b"C")
    (root / "Retired" / "deep").mkdir()
    (root / "Retired" / "deep" / "d.panic").write_bytes(b"D")
    (root / "notes.txt").write_bytes(b"not a report")
    (root / ".DS_Store").write_bytes(b"\0\0")
    for ext in ("diag", "hang", "spin"):
        (root / f"x.{ext}").write_bytes(ext.encode())


def test_walk_recursive_retired_and_extension_filter(tmp_path):
    _tree(tmp_path)
    cands, skipped, probs = _by_type(list(discover([tmp_path])))
    names = sorted(os.path.relpath(c.path, tmp_path) for c in cands)
    assert names == sorted(["a.ips", "b.crash", "Retired/c.ips", "Retired/deep/d.panic",
                            "x.diag", "x.hang", "x.spin"])
    assert sorted(os.path.basename(s.path) for s in skipped) == [".DS_Store", "notes.txt"]
    assert probs == []
    assert all(os.path.isabs(c.path) and not c.explicit for c in cands)
    a = next(c for c in cands if c.path.endswith("a.ips"))
    assert a.size == 1 and a.mtime_ns == os.stat(a.path).st_mtime_ns and a.read() == b"A"


def test_several_paths_globs_and_explicit_files(tmp_path):
    _tree(tmp_path)
    (tmp_path / "pasted.md").write_bytes(b"# note")
    items = list(discover([str(tmp_path / "Retired" / "*.ips"), tmp_path / "pasted.md",
                           tmp_path / "b.crash", str(tmp_path / "nomatch-*.ips"),
                           tmp_path / "missing.ips"]))
    cands, skipped, probs = _by_type(items)
    paths = {os.path.basename(c.path): c for c in cands}
    assert set(paths) == {"c.ips", "pasted.md", "b.crash"}
    assert paths["pasted.md"].explicit and not paths["b.crash"].explicit
    reasons = {os.path.basename(p.path): p.reason for p in probs}
    assert reasons == {"nomatch-*.ips": "no files match this pattern",
                       "missing.ips": "no such file or folder"}


def test_same_file_twice_is_yielded_once(tmp_path):
    _tree(tmp_path)
    cands, _, _ = _by_type(list(discover([tmp_path, tmp_path / "a.ips", tmp_path])))
    assert [c.path for c in cands].count(str(tmp_path / "a.ips")) == 1


def test_zip_and_targz_archives(tmp_path):
    zpath = tmp_path / "reports.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("DiagnosticReports/one.ips", b"ONE")
        zf.writestr("DiagnosticReports/Retired/two.crash", b"TWO")
        zf.writestr("DiagnosticReports/readme.txt", b"x")
        zf.writestr("__MACOSX/DiagnosticReports/._one.ips", b"junk")
    tpath = tmp_path / "reports.tar.gz"
    with tarfile.open(tpath, "w:gz") as tf:
        for name, data in (("./DR/three.ips", b"THREE"), ("DR/four.txt", b"4")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
    got = {}
    skipped = []
    for item in discover([zpath, tpath]):
        if isinstance(item, Candidate):
            got[item.path] = item.read()  # read before advancing (streamed tar)
        elif isinstance(item, Skipped):
            skipped.append(item.path)
        else:
            pytest.fail(f"unexpected problem {item}")
    assert got == {f"{zpath}!DiagnosticReports/one.ips": b"ONE",
                   f"{zpath}!DiagnosticReports/Retired/two.crash": b"TWO",
                   f"{tpath}!DR/three.ips": b"THREE"}
    assert len(skipped) == 3


def test_broken_archive_is_a_problem(tmp_path):
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 not really")
    _, _, probs = _by_type(list(discover([bad])))
    assert len(probs) == 1 and probs[0].reason.startswith("unreadable archive")


def test_symlink_loops_are_reported_not_fatal(tmp_path):
    _tree(tmp_path)
    os.symlink(tmp_path, tmp_path / "Retired" / "loop")        # back to an ancestor
    os.symlink(tmp_path / "self.ips", tmp_path / "self.ips")   # ELOOP on stat
    os.symlink(tmp_path / "gone.ips", tmp_path / "dangling.ips")
    cands, _, probs = _by_type(list(discover([tmp_path])))
    reasons = {os.path.basename(p.path): p.reason for p in probs}
    assert "symlink loop" in reasons["loop"]
    assert "symlink loop" in reasons["self.ips"]
    assert reasons["dangling.ips"] == "broken symlink"
    assert len(cands) == 7


def test_fifo_and_report_named_folder_never_opened(tmp_path, monkeypatch):
    os.mkfifo(tmp_path / "pipe.ips")
    (tmp_path / "folder.ips").mkdir()
    (tmp_path / "folder.ips" / "inner.ips").write_bytes(b"I")
    opened = []
    real_open = os.open

    def spy_open(path, *a, **kw):
        opened.append(os.fspath(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(os, "open", spy_open)
    items = list(discover([tmp_path, tmp_path / "pipe.ips"]))
    cands, skipped, probs = _by_type(items)
    assert [os.path.basename(c.path) for c in cands] == ["inner.ips"]
    assert any(s.path.endswith("pipe.ips") and "FIFO" in s.reason for s in skipped) or \
        any(p.path.endswith("pipe.ips") and "FIFO" in p.reason for p in probs)
    assert not any(p.endswith("pipe.ips") for p in opened)


def test_fifo_named_explicitly_is_a_problem_not_a_hang(tmp_path):
    os.mkfifo(tmp_path / "pipe.txt")
    _, _, probs = _by_type(list(discover([tmp_path / "pipe.txt"])))
    assert len(probs) == 1 and "FIFO" in probs[0].reason


def test_too_large_file_with_lowered_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(disc, "MAX_REPORT_BYTES", 1024)
    (tmp_path / "big.ips").write_bytes(b"x" * 4096)
    (tmp_path / "small.ips").write_bytes(b"x" * 10)
    cands, _, probs = _by_type(list(discover([tmp_path])))
    assert [os.path.basename(c.path) for c in cands] == ["small.ips"]
    assert len(probs) == 1 and probs[0].reason.startswith("file too large (")
    assert "MiB limit)" in probs[0].reason


def test_file_grown_past_limit_after_stat_is_refused(tmp_path, monkeypatch):
    p = tmp_path / "grow.ips"
    p.write_bytes(b"x" * 10)
    (cand,) = [c for c in discover([p]) if isinstance(c, Candidate)]
    monkeypatch.setattr(disc, "MAX_REPORT_BYTES", 100)
    p.write_bytes(b"x" * 1000)
    with pytest.raises(OSError, match="file too large"):
        cand.read()


def test_unlistable_folder_is_a_problem(tmp_path, monkeypatch):
    _tree(tmp_path)
    real = os.scandir
    target = str(tmp_path / "Retired")

    def fake_scandir(path="."):
        if os.fspath(path) == target:
            raise PermissionError(13, "Permission denied", target)
        return real(path)

    monkeypatch.setattr(os, "scandir", fake_scandir)
    cands, _, probs = _by_type(list(discover([tmp_path])))
    assert [p.reason for p in probs] == ["cannot list folder: permission denied"]
    assert len(cands) == 5  # everything outside Retired/
