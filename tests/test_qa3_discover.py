"""QA round 3: unreadable archive members, explicit files a folder walk reached first, and
reports pasted below some text (the sniff accepts what the parser accepts)."""
from __future__ import annotations

import io
import json
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from test_ingest import ips_bytes, store  # noqa: F401 - shared report builder and fixture
from triage import ingest as ing
from triage.records import FileProblem, ParseError
from triage.reports import discover as disc
from triage.reports.detect import looks_like_report, parse_bytes
from triage.reports.discover import Candidate, Skipped, discover


def _read_all(items):
    """Each discovery record as (kind, path, detail), reading candidates the way ingest does
    (each before the next record is asked for: tar members are only readable until then)."""
    out = []
    for it in items:
        if isinstance(it, Candidate):
            try:
                out.append(("ok", it.path, it.read()))
            except OSError as exc:   # what ingest catches; anything else is the bug
                out.append(("error", it.path, str(exc)))
        elif isinstance(it, Skipped):
            out.append(("skipped", it.path, it.reason))
        else:
            assert isinstance(it, FileProblem)
            out.append(("problem", it.path, it.reason))
    return out


def _patch_zip_member(data: bytes, index: int, *, flag: int | None = None,
                      method: int | None = None) -> bytes:
    """Set the general purpose flag / compression method of member ``index`` in both its local
    header and its central directory entry (what an encrypting or exotic zip tool writes)."""
    b = bytearray(data)
    for sig, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        pos = -1
        for _ in range(index + 1):
            pos = b.index(sig, pos + 1)
        if flag is not None:
            old = struct.unpack_from("<H", b, pos + flag_at)[0]
            struct.pack_into("<H", b, pos + flag_at, old | flag)
        if method is not None:
            struct.pack_into("<H", b, pos + method_at, method)
    return bytes(b)


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar(members: dict[str, bytes], mode: str = "w:gz", types: dict[str, bytes] | None = None
         ) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if types and name in types:
                info.type = types[name]
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ---- Bug A: no exception from reading an archive escapes discovery --------------------------

def test_encrypted_zip_member_is_one_error_and_the_rest_is_read(tmp_path):
    z = tmp_path / "enc.zip"
    z.write_bytes(_patch_zip_member(_zip({"e.ips": ips_bytes(1), "ok.ips": ips_bytes(2)}), 0,
                                    flag=0x1))
    got = _read_all(discover([z]))
    assert got[0] == ("error", f"{z}!e.ips",
                      "unreadable archive member: encrypted (password required)")
    assert got[1] == ("ok", f"{z}!ok.ips", ips_bytes(2))


@pytest.mark.parametrize("method", [99, 97, 12345])   # AES marker, WavPack, nonsense
def test_unsupported_compression_method_is_one_error(tmp_path, method):
    z = tmp_path / "method.zip"
    z.write_bytes(_patch_zip_member(_zip({"m.ips": ips_bytes(1), "ok.ips": ips_bytes(2)}), 0,
                                    method=method))
    got = _read_all(discover([z]))
    assert got[0][:2] == ("error", f"{z}!m.ips")
    assert got[0][2].startswith(f"unreadable archive member: unsupported compression method "
                                f"{method}")
    assert got[1] == ("ok", f"{z}!ok.ips", ips_bytes(2))


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                         zipfile.ZIP_LZMA])
def test_corrupt_compressed_zip_member_is_one_error(tmp_path, compression):
    # zlib.error, OSError("Invalid data stream") from bz2, lzma.LZMAError: all one error line
    payload = os.urandom(4000).hex().encode()
    data = bytearray(_zip({"a.ips": payload, "b.ips": ips_bytes(2)}, compression))
    start = 30 + len("a.ips")                      # the first member's compressed data
    for i in range(start + 20, start + 80):
        data[i] ^= 0x55
    z = tmp_path / "c.zip"
    z.write_bytes(bytes(data))
    got = _read_all(discover([z]))
    assert got[0][:2] == ("error", f"{z}!a.ips")
    assert got[0][2].startswith("unreadable archive member: ")
    assert got[1] == ("ok", f"{z}!b.ips", ips_bytes(2))


@pytest.mark.parametrize("exc", [NotImplementedError("x"), RuntimeError("boom"),
                                 ValueError("bad"), EOFError(), struct.error("short"),
                                 MemoryError(), KeyError("k"), OSError(5, "Input/output error")])
def test_any_exception_from_a_member_read_is_an_oserror(exc):
    def opener():
        raise exc

    c = Candidate("/a.zip!m.ips", 1, 0, opener=opener)
    with pytest.raises(OSError) as ei:
        c.read()
    assert str(ei.value).startswith("unreadable archive member: ")
    assert "\n" not in str(ei.value)


def test_too_large_member_keeps_its_reason():
    def opener():
        raise disc.TooLarge("file too large (70 MiB > 64 MiB limit)")

    with pytest.raises(disc.TooLarge):
        Candidate("/a.zip!m.ips", 1, 0, opener=opener).read()


@pytest.mark.parametrize("exc", [NotImplementedError("That compression method is not supported"),
                                 RuntimeError("x"), ValueError("y"), KeyError("z"),
                                 struct.error("w")])
@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_any_exception_while_listing_an_archive_is_a_problem(tmp_path, monkeypatch, exc, kind):
    a = tmp_path / f"a.{kind}"
    a.write_bytes(b"x")

    def broken(path):
        yield Skipped(f"{path}!first.txt", "not a report extension")
        raise exc

    monkeypatch.setattr(disc, "_zip" if kind == "zip" else "_tar", broken)
    got = _read_all(discover([a, tmp_path / "missing.ips"]))
    assert got[0][0] == "skipped"
    assert got[1][:2] == ("problem", str(a)) and got[1][2].startswith("unreadable archive: ")
    assert got[2] == ("problem", str(tmp_path / "missing.ips"), "no such file or folder")


def test_truncated_targz_keeps_the_members_before_and_names_the_archive(tmp_path):
    pad = os.urandom(20_000).hex().encode()          # incompressible
    raw = _tar({"r0.ips": ips_bytes(0), "r1.ips": ips_bytes(1) + pad, "r2.ips": ips_bytes(2)})
    t = tmp_path / "cut.tar.gz"
    t.write_bytes(raw[:len(raw) // 2])
    got = _read_all(discover([t]))
    assert got[0] == ("ok", f"{t}!r0.ips", ips_bytes(0))
    assert ("problem", str(t)) in {g[:2] for g in got}
    assert all(g[0] in ("ok", "error", "problem") for g in got)


def test_tar_with_unsupported_member_types_and_sparse_member(tmp_path):
    t = tmp_path / "types.tar"
    t.write_bytes(_tar({"odd.ips": b"ODD", "sparse.ips": b"SPARSE", "ok.ips": ips_bytes(3)},
                       mode="w", types={"odd.ips": b"Z", "sparse.ips": tarfile.GNUTYPE_SPARSE}))
    got = _read_all(discover([t]))
    assert got[0] == ("skipped", f"{t}!odd.ips",
                      "not a regular file (archive link or special member)")
    assert got[1][:2] in {("ok", f"{t}!sparse.ips"), ("error", f"{t}!sparse.ips")}
    assert got[2] == ("ok", f"{t}!ok.ips", ips_bytes(3))


def test_tar_stream_that_stops_at_a_bad_header_is_not_silently_short(tmp_path):
    # tarfile ends the member list without an error at an invalid header after the first
    # member: the members behind it must not vanish without a word
    one = _tar({"a.ips": ips_bytes(1)}, mode="w")
    two = _tar({"b.ips": ips_bytes(2)}, mode="w")
    end = len(one) - len(one.rstrip(b"\0"))
    body = one[:len(one) - end]                       # drop a.ips's end-of-archive blocks
    t = tmp_path / "joined.tar"
    t.write_bytes(body + b"\xff" * 512 + two)         # a garbage header, then more members
    got = _read_all(discover([t]))
    assert got[0] == ("ok", f"{t}!a.ips", ips_bytes(1))
    assert got[-1][:2] == ("problem", str(t)) and "invalid tar header" in got[-1][2]
    # an ordinary archive (end-of-archive zero blocks, record padding) is not flagged
    ok = tmp_path / "ok.tar.gz"
    ok.write_bytes(_tar({"a.ips": ips_bytes(1), "b.ips": ips_bytes(2)}))
    assert [g[0] for g in _read_all(discover([ok]))] == ["ok", "ok"]


def test_tar_member_with_an_absurd_mtime_is_read(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("a.ips")
        data = ips_bytes(1)
        info.size = len(data)
        info.mtime = 10 ** 20
        tf.addfile(info, io.BytesIO(data))
    t = tmp_path / "m.tar"
    t.write_bytes(buf.getvalue())
    (c,) = list(discover([t]))
    assert isinstance(c, Candidate) and -(1 << 63) <= c.mtime_ns < (1 << 63)


def test_ingest_of_encrypted_and_method_zips_stores_the_rest(tmp_path, store):  # noqa: F811
    a = tmp_path / "a.ips"
    a.write_bytes(ips_bytes(0))
    method = tmp_path / "method.zip"
    method.write_bytes(_patch_zip_member(_zip({"m.ips": ips_bytes(1), "ok.ips": ips_bytes(2)}),
                                         0, method=99))
    enc = tmp_path / "enc.zip"
    enc.write_bytes(_patch_zip_member(_zip({"e.ips": ips_bytes(3), "ok2.ips": ips_bytes(4)}), 0,
                                      flag=0x1))
    cut = tmp_path / "cut.tgz"
    raw = _tar({"t0.ips": ips_bytes(5), "t1.ips": ips_bytes(6) + os.urandom(20000).hex().encode()})
    cut.write_bytes(raw[:len(raw) * 2 // 3])
    s = ing.run_ingest(store, [a, method, enc, cut], workers=1)
    assert s["ingested"] == 4          # a, ok.ips, ok2.ips, t0.ips
    reasons = {e["path"]: e["reason"] for e in s["errors"]}
    assert reasons[f"{method}!m.ips"] == \
        "unreadable archive member: unsupported compression method 99"
    assert reasons[f"{enc}!e.ips"] == "unreadable archive member: encrypted (password required)"
    assert any(p.startswith(str(cut)) for p in reasons)
    assert s["files_seen"] == s["ingested"] + s["already_known"] + s["skipped"] + len(s["errors"])


# ---- Bug B: a file named explicitly wins over a folder walk that reached it first ------------

def _folder(root: Path) -> Path:
    root.mkdir()
    (root / "a.ips").write_bytes(ips_bytes(0))
    (root / "saved.txt").write_bytes(ips_bytes(1))        # a report saved under .txt
    (root / "plain.txt").write_bytes(b"just some notes\n")
    (root / "notes.md").write_bytes(b"# notes\n\nnothing here\n")
    (root / "inner.tar").write_bytes(_tar({"x.ips": ips_bytes(2)}, mode="w"))
    (root / "inner.zip").write_bytes(_zip({"y.ips": ips_bytes(3)}))
    return root


def _summary(items):
    return sorted((type(i).__name__, i.path, getattr(i, "explicit", None)) for i in items)


@pytest.mark.parametrize("name", ["saved.txt", "notes.md", "inner.tar", "inner.zip", "a.ips"])
def test_explicit_file_inside_a_walked_folder_is_handled_once_either_order(tmp_path, name):
    root = _folder(tmp_path / "DR")
    first = list(discover([root, root / name]))
    second = list(discover([root / name, root]))
    assert _summary(first) == _summary(second)
    paths = [i.path for i in first]
    assert len(paths) == len(set(paths))                   # nothing reported twice
    target = str(root / name)
    assert not any(isinstance(i, Skipped) and i.path == target for i in first)
    if name.endswith((".tar", ".zip")):                    # named archives are opened
        assert any(i.path.startswith(target + "!") for i in first)
        assert target not in paths
    else:
        (c,) = [i for i in first if i.path == target]
        assert isinstance(c, Candidate) and c.explicit == (name != "a.ips")


def test_glob_matches_inside_a_walked_folder_are_explicit_either_order(tmp_path):
    root = _folder(tmp_path / "DR")
    pattern = str(root / "*.txt")
    for args in ([root, pattern], [pattern, root]):
        items = list(discover(args))
        by_path = {i.path: i for i in items}
        assert len(by_path) == len(items)
        for n in ("saved.txt", "plain.txt"):
            c = by_path[str(root / n)]
            assert isinstance(c, Candidate) and c.explicit
        assert isinstance(by_path[str(root / "notes.md")], Skipped)   # not named: walk rule


def test_relative_and_absolute_spellings_of_an_explicit_file_match_the_walk(tmp_path,
                                                                           monkeypatch):
    root = _folder(tmp_path / "DR")
    monkeypatch.chdir(tmp_path)
    items = list(discover([root, "DR/../DR/saved.txt"]))
    (c,) = [i for i in items if i.path == str(root / "saved.txt")]
    assert isinstance(c, Candidate) and c.explicit


@pytest.mark.parametrize("via_link", ["file", "folder"])
def test_an_explicit_file_named_through_a_symlinked_folder_is_the_walked_file(tmp_path,
                                                                              via_link):
    """The same file by another path (a symlink to the walked folder, or the walk going through
    the link): taken once, as named, never also skipped by the walk."""
    root = _folder(tmp_path / "DR")
    link = tmp_path / "link"
    link.symlink_to(root, target_is_directory=True)
    args = [root, link / "saved.txt"] if via_link == "file" else [link, root / "saved.txt"]
    items = list(discover(args))
    saved = [i for i in items if i.path.endswith("saved.txt")]
    assert len(saved) == 1 and isinstance(saved[0], Candidate) and saved[0].explicit


@pytest.mark.parametrize("order", ["folder-first", "file-first"])
def test_ingest_counts_do_not_depend_on_argument_order(tmp_path, order):
    from triage.store.db import Store

    root = _folder(tmp_path / "DR")
    args = [root, root / "saved.txt", root / "inner.tar", root / "plain.txt"]
    if order == "file-first":
        args = args[1:] + args[:1]
    s_db = Store.open(tmp_path / f"{order}.db")
    try:
        s = ing.run_ingest(s_db, args, workers=1)
    finally:
        s_db.close()
    # a.ips, saved.txt, inner.tar!x.ips stored; plain.txt (explicit, not a report), notes.md
    # and inner.zip (walk rule) skipped; each file counted once
    assert (s["files_seen"], s["ingested"], s["skipped"], s["errors"]) == (6, 3, 3, [])


# ---- Bug C: a report pasted below some text is recognised when named explicitly ----------------

HEADER = {"app_name": "coreai-build", "timestamp": "2026-07-28 18:58:05.00 +0000",
          "bug_type": "309", "os_version": "macOS 26.0 (26A5288h)", "name": "coreai-build",
          "incident_id": "CCCCCCCC-0000-0000-0000-000000000001"}


def _report_body() -> bytes:
    return ips_bytes(7).split(b"\n", 1)[1]


def _accepted(data: bytes) -> bool:
    try:
        parse_bytes(data, "/x", "0" * 64)
    except ParseError:
        return False
    return True


PASTED = {
    "console": b"Console output:\n2026-01-01 something\n" + json.dumps(HEADER).encode()
               + b"\n" + _report_body(),
    "markdown": b"# My notes\n\nsome text\n\n```\n" + json.dumps(HEADER).encode() + b"\n"
                + _report_body() + b"\n```\n",
    "pretty header": b"pasted from the crash dialog:\n\n" + json.dumps(HEADER, indent=2).encode()
                     + b"\n" + _report_body(),
    "json log above": b'log:\n{"level": "info", "msg": "starting"}\n{"level": "warn"}\n'
                      + json.dumps(HEADER).encode() + b"\n" + _report_body(),
    "indented header": b"> quoted\n    " + json.dumps(HEADER).encode() + b"\n" + _report_body(),
}


@pytest.mark.parametrize("name", sorted(PASTED))
def test_report_below_text_is_sniffed_and_parsed(name):
    data = PASTED[name]
    assert looks_like_report(data[:65536])
    r = parse_bytes(data, "/x", "0" * 64)
    assert r.format == "ips-json" and r.bug_type == "309"
    assert any("before the JSON header" in n for n in r.notes)


def test_utf16_report_is_sniffed_like_the_parser_reads_it():
    text = ("Incident Identifier: X\nProcess: a [1]\nException Type: EXC_CRASH\n"
            "Thread 0 Crashed:\n0   libsystem_kernel.dylib  0x1 0x0 + 1\n")
    data = text.encode("utf-16")
    assert looks_like_report(data[:65536]) and _accepted(data)
    assert looks_like_report(data[:65535])          # cut inside a character


NOT_REPORTS = {
    "README.md": b"# triage\n\nReads `.ips` crash reports (JSON header with a `\"bug_type\"` key)"
                 b" and legacy text reports.\n\n```json\n{\"db\": \"~/triage.db\", \"workers\": 2}"
                 b"\n```\n\nThe header carries `bug_type`, `os_version` and `incident_id`.\n",
    "package.json": b'{\n  "name": "crash-viewer",\n  "version": "1.0.0",\n'
                    b'  "scripts": {"test": "jest"},\n  "dependencies": {"left-pad": "1.3.0"}\n}\n',
    "build.txt": b"2026-09-18 08:24:00 build started\n{\"step\": \"compile\", \"ok\": true}\n"
                 b"2026-09-18 08:24:05 warning: unused variable\n"
                 b"2026-09-18 08:25:00 build finished (exit 0)\n",
    "source.py": b'def make():\n    frames = [\n        {"imageOffset": 1, "imageIndex": 0}]\n'
                 b'    header = dict(name="x")\n    header["bug_type"] = "309"\n'
                 b'    return {"threads": frames, "x": {"bug_type": "309"}}\n',
    "nested.txt": b"notes\n{\"config\": {\"bug_type\": \"309\"}, \"other\": 1}\n",
    "value.txt": b'notes\n{"comment": "\\"bug_type\\": 309 is a crash"}\n',
}


@pytest.mark.parametrize("name", sorted(NOT_REPORTS))
def test_ordinary_files_are_not_reports(name):
    data = NOT_REPORTS[name]
    assert not looks_like_report(data[:65536])
    assert not _accepted(data)


def test_text_report_markers_above_json_still_mean_a_text_report():
    data = (b"Incident Identifier: X\nProcess: a [1]\nException Type: EXC_CRASH\n"
            + json.dumps(HEADER).encode() + b"\n")
    assert looks_like_report(data)
    r = parse_bytes(data + b"Thread 0 Crashed:\n0   a  0x1 0x0 + 1\n", "/x", "0" * 64)
    assert r.format == "crash-text"


def test_ingest_stores_pasted_reports_named_explicitly(tmp_path, store):  # noqa: F811
    paths = []
    for i, name in enumerate(("console.txt", "note.md")):
        hdr = dict(HEADER, incident_id=f"CCCCCCCC-0000-0000-0000-00000000000{i}")
        p = tmp_path / name
        p.write_bytes(b"some text above\n" + json.dumps(hdr).encode() + b"\n" + _report_body())
        paths.append(p)
    readme = tmp_path / "README.md"
    readme.write_bytes(NOT_REPORTS["README.md"])
    problems = []
    s = ing.run_ingest(store, paths + [readme], workers=1,
                       on_problem=lambda p, r: problems.append((p, r)))
    assert (s["ingested"], s["skipped"], s["errors"]) == (2, 1, [])
    assert problems == [(str(readme), "not a recognised crash report (skipped)")]
