"""Peer symbols at ingest, end to end: learned in the parser (in-process and in the worker pool),
from the crashing thread and from other threads' raw JSON, and the final pass for reports parsed
before their symbolicated peers (issue 2/3: lazy threads + peer symbols)."""
from __future__ import annotations

import uuid as uuidlib
from pathlib import Path

import orjson
import pytest

from triage import ingest as ing
from triage.frames.stored import load_report
from triage.store.db import Store, load_frames

UUID_ANE = "AAAAAAAA-1111-2222-3333-444444444444"


def _frame(off: int, sym: str | None = None, loc: int | None = None, idx: int = 1) -> dict:
    f = {"imageOffset": off, "imageIndex": idx}
    if sym is not None:
        f["symbol"], f["symbolLocation"] = sym, loc
    return f


def report_bytes(i: int, *, symbolicated: bool, crash_in_thread1: bool = False) -> bytes:
    """A crash whose crashing thread runs ANECompiler functions at fixed offsets. Symbolicated
    reports name them; unsymbolicated ones only carry offsets. ``crash_in_thread1``: the
    symbolicated functions appear only in thread 1 (the crash is elsewhere)."""
    iid = str(uuidlib.UUID(int=10_000 + i)).upper()
    named = [_frame(0x1010, "ANEC::Lower::run()", 0x10), _frame(0x2040, "ANEC::compile()", 0x40),
             _frame(0x3008, "ANEC::main()", 0x8)]
    bare = [_frame(0x1010), _frame(0x2040), _frame(0x3008)]
    objc = {"imageOffset": 0x50, "imageIndex": 0, "symbol": "objc_release", "symbolLocation": 8}
    if crash_in_thread1:
        threads = [{"id": 1, "triggered": True, "frames": [objc, _frame(0x900, "other()", 0)]},
                   {"id": 2, "frames": named}]
    else:
        threads = [{"id": 1, "triggered": True, "frames": [objc] + (named if symbolicated else bare)},
                   {"id": 2, "frames": [objc]}]
    hdr = {"bug_type": "309", "timestamp": "2026-09-18 08:24:00.00 +0000",
           "os_version": "macOS 26.0 (26A5353q)", "incident_id": iid, "name": "anecompilerservice"}
    body = {"incident": iid, "procName": "anecompilerservice", "pid": 500 + i,
            "captureTime": f"2026-09-18 08:{i // 60 % 60:02d}:{i % 60:02d}.00 +0000",
            "osVersion": {"train": "macOS 26.0", "build": "26A5353q"},
            "exception": {"type": "EXC_BAD_ACCESS", "signal": "SIGSEGV"},
            "faultingThread": 0, "threads": threads,
            "usedImages": [{"name": "libobjc.A.dylib", "base": 4096, "size": 9000,
                            "uuid": "BBBBBBBB-1111-2222-3333-444444444444"},
                           {"name": "ANECompiler", "base": 1 << 32, "size": 1 << 20,
                            "uuid": UUID_ANE}]}
    return orjson.dumps(hdr) + b"\n" + orjson.dumps(body)


def _write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_bytes(data)
    return p


def _rows(store: Store) -> dict[str, tuple]:
    out = {}
    for path, frames, sig, stack, needs in store.conn.execute(
            "SELECT path, frames, signature, stack_id, needs_symbols FROM incidents"):
        out[Path(path).name] = (load_frames(frames), sig, stack, needs)
    return out


def test_unsymbolicated_report_before_its_peer_is_named_by_the_final_pass(tmp_path):
    _write(tmp_path / "DR", "a-bare.ips", report_bytes(0, symbolicated=False))
    _write(tmp_path / "DR", "b-named.ips", report_bytes(1, symbolicated=True))
    store = Store.open(tmp_path / "s.db")
    s = ing.run_ingest(store, [tmp_path / "DR"], workers=1)
    assert s["ingested"] == 2 and s["peer_symbolicated"] == 3
    rows = _rows(store)
    bare, named = rows["a-bare.ips"], rows["b-named.ips"]
    assert [f.get("symbolicated_by") for f in bare[0][1:]] == ["peer"] * 3
    assert [f["symbol"] for f in bare[0][1:]] == [f["symbol"] for f in named[0][1:]]
    assert bare[1] == named[1] and bare[2] == named[2] and bare[3] == 0
    assert store.conn.execute("SELECT COUNT(*) FROM stacks WHERE count > 0").fetchone()[0] == 1
    store.close()


def test_report_after_its_peer_is_named_in_the_parser(tmp_path):
    _write(tmp_path / "DR", "a-named.ips", report_bytes(0, symbolicated=True))
    _write(tmp_path / "DR", "b-bare.ips", report_bytes(1, symbolicated=False))
    store = Store.open(tmp_path / "s.db")
    s = ing.run_ingest(store, [tmp_path / "DR"], workers=1)
    rows = _rows(store)
    assert rows["b-bare.ips"][1] == rows["a-named.ips"][1]
    assert rows["b-bare.ips"][3] == 0
    assert s["peer_symbolicated"] == 3      # named in the parser; the final pass had nothing
    store.close()


def test_rerun_after_an_interrupted_run_names_what_it_left(tmp_path, monkeypatch):
    """Ctrl-C after the batches were stored but before the peer pass and clustering: the next
    run names the stored, never-clustered reports too, as one clean run would have."""
    _write(tmp_path / "DR", "a-bare.ips", report_bytes(0, symbolicated=False))
    _write(tmp_path / "DR", "b-bare.ips", report_bytes(1, symbolicated=False))
    store = Store.open(tmp_path / "s.db")

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(ing, "_after_peers", interrupted)
        with pytest.raises(KeyboardInterrupt):
            ing.run_ingest(store, [tmp_path / "DR"], workers=1)
    assert all(r[3] == 1 for r in _rows(store).values())     # stored, unnamed, unclustered
    _write(tmp_path / "DR", "c-named.ips", report_bytes(2, symbolicated=True))
    s = ing.run_ingest(store, [tmp_path / "DR"], workers=1)
    assert s["ingested"] == 1 and s["already_known"] == 2 and s["peer_symbolicated"] == 6
    rows = _rows(store)
    assert len({r[2] for r in rows.values()}) == 1 and all(r[3] == 0 for r in rows.values())
    # no stack row is left behind by the re-signed reports: a recluster changes nothing
    from triage.cluster import recluster

    diff = recluster(store, dry_run=True)
    assert diff.stacks_before == diff.stacks_after == 1 and not diff.merged and not diff.new
    store.close()


def test_symbols_learned_from_another_thread_raw_json(tmp_path):
    # the only named copy of the ANECompiler functions is in thread 1 of a report that crashed
    # elsewhere: lazy ingest never builds that thread, symbol_facts learns from its raw JSON
    _write(tmp_path / "DR", "a-other.ips", report_bytes(0, symbolicated=True, crash_in_thread1=True))
    _write(tmp_path / "DR", "b-bare.ips", report_bytes(1, symbolicated=False))
    store = Store.open(tmp_path / "s.db")
    ing.run_ingest(store, [tmp_path / "DR"], workers=1)
    frames = _rows(store)["b-bare.ips"][0]
    assert [f.get("symbol") for f in frames[1:]] == \
        ["ANEC::Lower::run()", "ANEC::compile()", "ANEC::main()"]
    assert store.conn.execute("SELECT COUNT(*) FROM symbol_map WHERE image_uuid=?",
                              (UUID_ANE.lower(),)).fetchone()[0] == 4  # + other()
    store.close()


def test_worker_pool_names_every_unsymbolicated_report(tmp_path):
    # >= POOL_MIN_FILES files: parsed by 2 workers, each with its own peer table; bare reports
    # come first, in between and last, so some are named in a worker, the rest by the final pass
    n = ing.POOL_MIN_FILES + 36
    for i in range(n):
        _write(tmp_path / "DR", f"r{i:04d}.ips", report_bytes(i, symbolicated=(i % 3 == 1)))
    store = Store.open(tmp_path / "s.db")
    s = ing.run_ingest(store, [tmp_path / "DR"], workers=2)
    assert s["ingested"] == n and s["workers"] == 2
    rows = _rows(store)
    assert len({r[2] for r in rows.values()}) == 1          # one stack: every report named
    assert all(r[3] == 0 for r in rows.values())
    by = [f.get("symbolicated_by") for r in rows.values() for f in r[0][1:]]
    assert by.count("peer") == 3 * len([i for i in range(n) if i % 3 != 1])
    # a stored bare report reads back with its named crashing thread and its raw other thread
    iid = store.conn.execute("SELECT incident_id FROM incidents WHERE path LIKE '%r0000.ips'"
                             ).fetchone()[0]
    rep = load_report(store.conn, iid)
    assert [f.symbol for f in rep.crashing_frames()][1:] == \
        ["ANEC::Lower::run()", "ANEC::compile()", "ANEC::main()"]
    assert len(rep.threads) == 2 and rep.threads[1].frames[0].normalized == "objc_release"
    store.close()


def test_symbolicate_then_recluster_maps_every_old_cluster_id(tmp_path):
    """QA: fixture reports without symbols clustered in a first run, their symbolicated peers
    arrive in a second; `symbolicate` names the old ones (new stacks, not clustered yet), then
    `recluster` must account for every old cluster id (kept, split, or merged with merged_into
    set), never drop one."""
    import shutil

    from triage.cluster import recluster
    from triage.frames.resymbolicate import resymbolicate_store

    dr = Path(__file__).resolve().parents[1] / "fixtures" / "DiagnosticReports"
    bare = ["ANECompilerService-2026-09-12-082135.ips", "ChatPlayground-2026-08-26-111227.crash",
            "coreai-build-2026-08-06-094332.ips", "coreai-build-2026-08-14-081410.crash",
            "coreai-build-2026-08-20-120005.ips", "coreai-build-2026-09-01-095102.crash",
            "coreai-build-2026-09-01-105058.ips", "coreai-build-2026-09-09-113823.ips",
            "python3.12-2026-08-13-105132.ips", "python3.12-2026-08-18-144622.ips",
            "python3.12-2026-09-08-185630.ips"]
    (tmp_path / "first").mkdir()
    for name in bare:
        shutil.copy2(dr / name, tmp_path / "first" / name)
    store = Store.open(tmp_path / "s.db")
    ing.run_ingest(store, [tmp_path / "first"], workers=1)
    ing.run_ingest(store, [dr], workers=1)
    before = {c for (c,) in store.conn.execute(
        "SELECT DISTINCT cluster_id FROM incidents WHERE cluster_id IS NOT NULL")}
    res = resymbolicate_store(store, [])
    assert res["signatures_changed"] > 0
    diff = recluster(store)
    accounted = set(diff.kept) | {m["id"] for m in diff.merged} | {s["id"] for s in diff.split}
    assert accounted == before, sorted(before - accounted)
    assert diff.merged, "the re-signed reports join their peers' clusters"
    for m in diff.merged:
        assert store.conn.execute("SELECT merged_into FROM clusters WHERE cluster_id=?",
                                  (m["id"],)).fetchone()[0] == m["into"]
    store.close()
