"""QA round 3, ingest: numbers beyond SQLite's signed 64 bits in pid fields and frame offsets
(must not abort the run), one report SQLite refuses (an error for that file, not a lost batch),
and same-bytes malformed files under the parser pool (errors, as in-process, not already known).
"""
from __future__ import annotations

import json
import zipfile

import orjson
import pytest

from test_builds import _isolated_config  # noqa: F401 - the shared config isolation
from test_ingest import ips_bytes, make_reports

from triage import ingest as ing
from triage.cli import main
from triage.frames.symbolize import PeerSymbols, observations
from triage.store.db import Store
from triage.store.queries import error_records, incident_records

BIG = 2**63 + 5            # just past SQLite INTEGER
HUGE = 2**65 + 1           # past 64 bits
NEG = -(2**70)
SAFE = 2**53 + 1           # beyond a double, still a SQLite integer: kept as an integer


def ips_with(i: int, **body_changes) -> bytes:
    """A good report (``test_ingest.ips_bytes(i)``) with body fields replaced; written with the
    stdlib json module (orjson refuses integers beyond 64 bits)."""
    hdr, body = ips_bytes(i).split(b"\n", 1)
    b = orjson.loads(body)
    for k, v in body_changes.items():   # a callable value edits the body in place
        if callable(v):
            v(b)
        else:
            b[k] = v
    return hdr + b"\n" + json.dumps(b).encode()


def big_offset(offset: int):
    """Make the crashing thread's first (symbolicated) frame sit at ``offset``."""
    def change(b):
        b["threads"][0]["frames"][0]["imageOffset"] = offset
    return change


TEXT_BIGPID = """Process:               My App [99999999999999999999]
Path:                  /Applications/My App.app/Contents/MacOS/My App
Identifier:            com.example.myapp
Version:               1.0 (1)
Code Type:             ARM-64 (Native)
Parent Process:        launchd [1]
Responsible:           My App [99999999999999999999]
User ID:               501

Date/Time:             2026-08-14 08:14:10.8253 +0200
OS Version:            macOS 14.5 (23F79)
Report Version:        12

Crashed Thread:        0  Dispatch queue: com.apple.main-thread

Exception Type:        EXC_BAD_ACCESS (SIGSEGV)
Exception Codes:       0x0000000000000001, 0x0000000000000018

Termination Reason:    Namespace SIGNAL, Code 11 Segmentation fault: 11
Terminating Process:   exc handler [99999999999999999999]

Thread 0 Crashed::  Dispatch queue: com.apple.main-thread
0   libobjc.A.dylib               	       0x18e0a1470 objc_release + 16
1   My App                        	       0x100df5640 Foo::baz() + 40 (foo.cpp:30)

Binary Images:
       0x100df0000 -        0x1010d6067 com.example.myapp (1.0) <ae90a90e-11c7-3060-bdc7-dddbdb2e4778> /Applications/My App.app/Contents/MacOS/My App
       0x18e09c000 -        0x18e0dffff libobjc.A.dylib (*) <04611fc7-3554-34e7-b7ca-06447f8af66f> /usr/lib/libobjc.A.dylib
"""


def _by_path(store) -> dict:
    return {r["path"].rsplit("/", 1)[-1]: r for r in incident_records(store)}


# --------------------------------------------------------------------------- big integers

@pytest.mark.parametrize("workers", [1, 2])
def test_big_pids_are_stored_exact_beside_good_reports(tmp_path, monkeypatch, workers):
    d = tmp_path / "DR"
    make_reports(d, 3)
    (d / "pid63.ips").write_bytes(ips_with(10, pid=BIG))
    (d / "pid65.ips").write_bytes(ips_with(11, pid=HUGE))
    (d / "negpid.ips").write_bytes(ips_with(12, pid=NEG))
    (d / "parent.ips").write_bytes(ips_with(13, parentPid=HUGE))
    (d / "resp.ips").write_bytes(ips_with(14, responsiblePid=BIG))
    (d / "byhuge.ips").write_bytes(ips_with(15, termination={
        "namespace": "SIGNAL", "code": 11, "byProc": "exc handler", "byPid": HUGE}))
    (d / "safe.ips").write_bytes(ips_with(16, pid=SAFE))
    (d / "textpid.crash").write_text(TEXT_BIGPID)
    monkeypatch.setattr(ing, "POOL_MIN_FILES", 1)
    store = Store.open(tmp_path / "s.db")
    s = ing.run_ingest(store, [d], workers=workers)
    assert s["errors"] == [] and s["ingested"] == 11
    rows = _by_path(store)
    assert rows["mlcompiler-00000.ips"]["pid"] == 100
    # out of SQLite's range: hex text, exact (the termination_code convention)
    assert rows["pid63.ips"]["pid"] == hex(BIG)
    assert rows["pid65.ips"]["pid"] == hex(HUGE)
    assert rows["negpid.ips"]["pid"] == hex(NEG) == "-0x400000000000000000"
    assert rows["parent.ips"]["parent_pid"] == hex(HUGE)
    assert rows["resp.ips"]["responsible_pid"] == hex(BIG)
    assert rows["byhuge.ips"]["termination_by_pid"] == hex(HUGE)
    assert rows["safe.ips"]["pid"] == SAFE                     # beyond 2^53: still exact int
    t = rows["textpid.crash"]
    assert t["pid"] == t["responsible_pid"] == t["termination_by_pid"] == hex(10**20 - 1)
    # SQLite keeps the text as TEXT (decimal text would have become a lossy REAL)
    types = {t for (t,) in store.conn.execute("SELECT DISTINCT typeof(pid) FROM incidents")}
    assert types == {"integer", "text"}
    # a re-run: everything is unchanged
    s2 = ing.run_ingest(store, [d], workers=workers)
    assert s2["errors"] == [] and s2["ingested"] == 0 and s2["already_known"] == 11
    store.close()


def test_incidents_json_shows_big_numbers_exactly(tmp_path, capsys, _isolated_config):  # noqa: F811
    d = tmp_path / "DR"
    d.mkdir()
    (d / "pid65.ips").write_bytes(ips_with(1, pid=HUGE, termination={
        "namespace": "SIGNAL", "code": 2**64 - 1, "byPid": BIG}))
    db = str(tmp_path / "c.db")
    assert main(["--db", db, "ingest", str(d)]) == 0
    capsys.readouterr()
    assert main(["--db", db, "incidents", "--format", "json"]) == 0
    out = capsys.readouterr()
    (row,) = json.loads(out.out)
    assert row["pid"] == hex(HUGE) and int(row["pid"], 16) == HUGE
    assert row["termination_code"] == "0xffffffffffffffff"
    assert row["termination_by_pid"] == hex(BIG)
    assert "Traceback" not in out.err
    assert main(["--db", db, "incidents", "--format", "csv"]) == 0
    assert hex(HUGE) in capsys.readouterr().out


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("offset", [2**63 + 7, 2**64 + 1])
def test_huge_symbolicated_offset_is_not_learned(tmp_path, monkeypatch, workers, offset):
    """A symbolicated frame at an offset SQLite cannot hold teaches peers nothing (it used to
    make ``PeerSymbols.save`` raise OverflowError and abort the whole run)."""
    d = tmp_path / "DR"
    make_reports(d, 4)
    (d / "bigoff.ips").write_bytes(ips_with(20, _=big_offset(offset)))
    monkeypatch.setattr(ing, "POOL_MIN_FILES", 1)
    store = Store.open(tmp_path / "s.db")
    s = ing.run_ingest(store, [d], workers=workers)
    assert s["errors"] == [] and s["ingested"] == 5, s
    (r,) = [r for r in incident_records(store) if r["path"].endswith("bigoff.ips")]
    assert r["frames"][0]["offset"] in (offset, str(offset))     # kept exact in the frames
    ends = [e for (e,) in store.conn.execute("SELECT end_seen FROM symbol_map")]
    assert ends and max(ends) < 2**63
    store.close()


def test_peer_symbols_skip_out_of_range_facts(tmp_path):
    uuid = "11111111-2222-3333-4444-555555555555"
    facts = [(uuid, 2**63, 8, "huge"), (uuid, 2**70, 2**70 - 4, "huge_end"),
             (uuid, -(2**63) - 1, 0, "neg"), (uuid, 120, 8, "fine")]
    rows = observations(None, facts)
    assert [r[3] for r in rows] == ["fine"]
    peers = PeerSymbols()
    peers.absorb([(uuid, 4, 2**64, "absorbed_huge")] + rows)
    assert len(peers) == 1
    store = Store.open(tmp_path / "s.db")
    with store.transaction() as conn:
        assert peers.save(conn) == 1
    assert store.conn.execute("SELECT symbol FROM symbol_map").fetchall() == [("fine",)]
    store.close()


# --------------------------------------------------------------------------- one bad row

@pytest.mark.parametrize("workers", [1, 2])
def test_a_row_sqlite_refuses_is_an_error_for_that_file_only(tmp_path, monkeypatch, workers):
    """Defence in depth: if a report's row still cannot be inserted (here: the big-int guard
    switched off), that file is an error; the rest of its batch is stored."""
    d = tmp_path / "DR"
    make_reports(d, 6)
    (d / "zz-pid.ips").write_bytes(ips_with(30, pid=BIG))
    (d / "zz-pid-copy.ips").write_bytes(ips_with(30, pid=BIG))   # same bytes: same error
    (d / "zz-pid-sameid.ips").write_bytes(ips_with(30, pid=BIG, procName="other"))  # same id
    monkeypatch.setattr(ing, "_int_or_none", lambda v: v)
    monkeypatch.setattr(ing, "POOL_MIN_FILES", 1)
    problems = []
    store = Store.open(tmp_path / "s.db")
    s = ing.run_ingest(store, [d], workers=workers,
                       on_problem=lambda p, r: problems.append((p, r)))
    assert s["ingested"] == 6 and s["already_known"] == 0
    bad = [str(d / "zz-pid-copy.ips"), str(d / "zz-pid-sameid.ips"), str(d / "zz-pid.ips")]
    assert sorted(e["path"] for e in s["errors"]) == bad
    for e in s["errors"]:
        assert e["reason"].startswith("cannot store report: OverflowError"), e
    assert sorted(p for p, _ in problems) == bad
    assert s["files_seen"] == s["ingested"] + s["already_known"] + s["skipped"] + len(s["errors"])
    assert sorted(e["path"] for e in error_records(store)) == bad
    n = store.conn.execute("SELECT COUNT(*) FROM incidents").fetchone()[0]
    assert n == 6
    # the failed files are retried on the next run (not skipped as unchanged)
    s2 = ing.run_ingest(store, [d], workers=1)
    assert sorted(e["path"] for e in s2["errors"]) == bad and s2["already_known"] == 6
    # and stored once the guard is back
    monkeypatch.undo()
    s3 = ing.run_ingest(store, [d], workers=1)
    assert s3["errors"] == [] and s3["ingested"] == 1 and s3["already_known"] == 8
    assert error_records(store) == []
    store.close()


# --------------------------------------------------------------------------- pool == in-process

def _same_runs(tmp_path, monkeypatch, paths, pool_min=ing.POOL_MIN_FILES):
    monkeypatch.setattr(ing, "POOL_MIN_FILES", pool_min)
    a, b = Store.open(tmp_path / "a.db"), Store.open(tmp_path / "b.db")
    sa = ing.run_ingest(a, paths, workers=1)
    sb = ing.run_ingest(b, paths, workers=2)
    assert sa["workers"] == 1 and sb["workers"] == 2
    for key in ("files_seen", "ingested", "already_known", "skipped", "errors", "by_kind"):
        assert sa[key] == sb[key], key
    q = "SELECT path, sha256, status, incident_id FROM files ORDER BY path"
    assert a.conn.execute(q).fetchall() == b.conn.execute(q).fetchall()
    assert sorted((e["path"], e["reason"]) for e in error_records(a)) == \
        sorted((e["path"], e["reason"]) for e in error_records(b))
    a.close()
    b.close()
    return sa


def test_identical_malformed_archive_members_are_all_errors_with_the_pool(tmp_path, monkeypatch):
    z = tmp_path / "same150.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i in range(150):
            zf.writestr(f"r/{i}.ips", b'{"bug_type":"309"}\n{"procName": "x", ')
    s = _same_runs(tmp_path, monkeypatch, [z])          # default POOL_MIN_FILES (64)
    assert s["already_known"] == 0 and len(s["errors"]) == 150
    assert {e["path"] for e in s["errors"]} == {f"{z}!r/{i}.ips" for i in range(150)}


def test_empty_members_among_good_ones_pool_equals_in_process(tmp_path, monkeypatch):
    z = tmp_path / "mixed_empty.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i in range(70):
            zf.writestr(f"good/{i}.ips", ips_bytes(i))
            if i % 2 == 0:
                zf.writestr(f"empty/{i}.ips", b"")
        zf.writestr("good/copy-of-3.ips", ips_bytes(3))      # a same-bytes good member
        zf.writestr("good/copy2-of-3.ips", ips_bytes(3))
    s = _same_runs(tmp_path, monkeypatch, [z], pool_min=4)
    assert s["ingested"] == 70 and s["already_known"] == 2 and len(s["errors"]) == 35


def test_identical_bad_plain_files_pool_equals_in_process(tmp_path, monkeypatch):
    d = tmp_path / "DR"
    make_reports(d, 20)
    for i in range(30):
        (d / f"empty-{i:02d}.ips").write_bytes(b"")
        (d / f"trunc-{i:02d}.ips").write_bytes(ips_bytes(90)[:300])
    (d / "mlcompiler-copy.ips").write_bytes(ips_bytes(5))
    z = tmp_path / "more.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i in range(20):
            zf.writestr(f"e{i}.ips", b"")                   # same bytes as the plain empties
            zf.writestr(f"t{i}.ips", ips_bytes(90)[:300])
    s = _same_runs(tmp_path, monkeypatch, [d, z], pool_min=2)
    assert s["ingested"] == 20 and s["already_known"] == 1 and len(s["errors"]) == 100


def test_twin_of_a_member_that_kills_its_parser_is_reported_the_same(tmp_path, monkeypatch):
    import os

    z = tmp_path / "die.zip"
    poison = b'{"bug_type":"309"}\n{"procName": "poison"}'
    with zipfile.ZipFile(z, "w") as zf:
        for i in range(8):
            zf.writestr(f"g{i}.ips", ips_bytes(i))
        for i in range(3):
            zf.writestr(f"p{i}.ips", poison)
    real = ing.process_bytes
    parent = os.getpid()

    def dying(stages, data, path, sha, explicit):
        if data == poison and os.getpid() != parent:
            os._exit(3)
        return real(stages, data, path, sha, explicit)

    monkeypatch.setattr(ing, "POOL_MIN_FILES", 1)
    monkeypatch.setattr(ing, "process_bytes", dying)
    store = Store.open(tmp_path / "s.db")
    s = ing.run_ingest(store, [z], workers=2)
    assert s["ingested"] == 8 and s["already_known"] == 0
    assert [e["path"] for e in s["errors"]] == [f"{z}!p{i}.ips" for i in range(3)]
    assert {e["reason"] for e in s["errors"]} == {"parser process died while reading this file"}
    store.close()
