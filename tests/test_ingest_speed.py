"""Ingest speed-ups keep every contract: raw usedImages in the detail blob, lazy frame lookups,
workers that read files by path (issue 2 throughput work)."""
from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from triage import ingest as ing
from triage.frames.stored import load_report
from triage.records import Image
from triage.reports import ips
from triage.reports.detect import parse_bytes
from triage.store import db
from triage.store.db import Store, unpack
from triage.store.queries import incident_detail

from test_ingest import ips_bytes, make_reports

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

ODD_IMAGES = [
    {"uuid": "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE", "base": 4096, "size": 10, "path": "/a/libx.dylib",
     "arch": "arm64e", "source": "P", "CFBundleIdentifier": "com.x", "CFBundleShortVersionString": "1"},
    {"uuid": 5, "path": 7, "name": "", "base": "0x10", "size": 1.0, "arch": True},
    "not an image",
    {"path": "/System/Frameworks/Metal.framework/"},
    {"uuid": "00000000-0000-0000-0000-000000000000", "name": None, "base": 2**70},
]


def _old_images(raw):
    """usedImages -> Image, the straightforward way (the contract the fast loop must keep)."""
    out = []
    for i, im in enumerate(raw):
        if not isinstance(im, dict):
            out.append(Image(index=i))
            continue
        from triage.reports.common import ZERO_UUID, as_int, as_str, canon_uuid

        s = lambda v: v if type(v) is str else as_str(v)  # noqa: E731
        n = lambda v: v if type(v) is int else as_int(v)  # noqa: E731
        uuid = canon_uuid(im.get("uuid"))
        path, name = s(im.get("path")), s(im.get("name"))
        if not name and path:
            name = path.rstrip("/").rsplit("/", 1)[-1] or None
        out.append(Image(index=i, name=name, uuid=None if uuid == ZERO_UUID else uuid,
                         base=n(im.get("base")), size=n(im.get("size")), path=path,
                         arch=s(im.get("arch")), source=s(im.get("source")),
                         bundle_id=s(im.get("CFBundleIdentifier")),
                         version=s(im.get("CFBundleShortVersionString"))))
    return out


def test_images_loop_matches_the_plain_rules():
    images, lookup = ips._images(ODD_IMAGES, [])
    assert images == _old_images(ODD_IMAGES)
    assert [(im.name, im.uuid, im.base, im.path) for im in images] == lookup
    assert images[0].uuid == "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    assert images[3].name == "Metal.framework" and images[4].uuid is None
    notes: list[str] = []
    assert ips._images({"x": 1}, notes) == ([], []) and notes


def test_raw_mode_gives_same_frames_and_defers_images():
    data = ips_bytes(3, nthreads=4)
    plain = parse_bytes(data, "/r.ips", "s")
    with ips.raw_images() as held:
        fast = parse_bytes(data, "/r.ips", "s")
    assert len(held) == 1 and held[0][0] is fast
    assert fast.images == [] and plain.images
    assert fast.threads == plain.threads
    assert fast.last_exception_backtrace == plain.last_exception_backtrace
    assert ips.images_from_raw(held[0][1]) == plain.images
    # outside the block nothing is deferred
    assert parse_bytes(data, "/r.ips", "s").images == plain.images


def test_lazy_lookup_matches_full_lookup():
    raw = ODD_IMAGES
    lazy = ips._LazyLookup(raw)
    _, full = ips._images(raw, [])
    assert len(lazy) == len(full)
    assert [lazy[i] for i in range(len(raw))] == full


def test_detail_with_raw_images_reads_as_the_usual_images():
    blob = db.compress_blob(orjson.dumps({"threads": [], "images_raw": ODD_IMAGES[:4],
                                          "header": None, "extra": {}, "notes": []}))
    got = unpack(blob)
    assert "images_raw" not in got
    want = orjson.loads(orjson.dumps(ips.images_from_raw(ODD_IMAGES[:4])))
    assert got["images"] == want and got["images"][0]["index"] == 0
    assert set(got["images"][1]) == {f for f in Image.__dataclass_fields__}


def _stored_vs_parsed(store: Store, path: Path):
    iid = store.conn.execute("SELECT incident_id FROM incidents WHERE path=?",
                             (str(path),)).fetchone()[0]
    rep = load_report(store.conn, iid)
    stages = ing.load_stages()
    parsed = parse_bytes(path.read_bytes(), str(path), rep.sha256)
    ing.enrich(stages, parsed)
    return rep, parsed


def test_stored_report_equals_parsed_report(tmp_path):
    files = make_reports(tmp_path / "DR", 3)
    store = Store.open(tmp_path / "s.db")
    ing.run_ingest(store, [tmp_path / "DR"], workers=1)
    for p in files:
        rep, parsed = _stored_vs_parsed(store, p)
        assert rep.images == parsed.images and len(rep.images) == 2
        assert rep.threads == parsed.threads
        iid = store.conn.execute("SELECT incident_id FROM incidents WHERE path=?",
                                 (str(p),)).fetchone()[0]
        detail = incident_detail(store, iid)
        assert detail["images"] == orjson.loads(orjson.dumps(parsed.images))
        assert detail["threads"] == orjson.loads(orjson.dumps(parsed.threads))
    store.close()


def test_pool_reads_files_in_workers_same_store(tmp_path, monkeypatch):
    """Workers read plain files by path, in chunks; archive members still go as bytes."""
    import zipfile

    make_reports(tmp_path / "DR", 23)
    (tmp_path / "DR" / "mlcompiler-00003-copy.ips").write_bytes(ips_bytes(3))  # same bytes
    (tmp_path / "DR" / "gone.ips").write_bytes(ips_bytes(99))
    with zipfile.ZipFile(tmp_path / "more.zip", "w") as z:
        for i in range(30, 35):
            z.writestr(f"r{i}.ips", ips_bytes(i))
    real_open = os.open
    gone = str(tmp_path / "DR" / "gone.ips")

    def fake_open(path, *a, **kw):
        if os.fspath(path) == gone:
            raise PermissionError(13, "Permission denied", gone)
        return real_open(path, *a, **kw)

    monkeypatch.setattr(os, "open", fake_open)   # inherited by forked workers
    monkeypatch.setattr(ing, "POOL_MIN_FILES", 2)
    monkeypatch.setattr(ing, "POOL_CHUNK", 3)
    a, b = Store.open(tmp_path / "a.db"), Store.open(tmp_path / "b.db")
    paths = [tmp_path / "DR", tmp_path / "more.zip"]
    sa = ing.run_ingest(a, paths, workers=1)
    sb = ing.run_ingest(b, paths, workers=2)
    assert sb["workers"] == 2
    for key in ("files_seen", "ingested", "already_known", "skipped", "errors", "by_kind"):
        assert sa[key] == sb[key], key
    assert sb["ingested"] == 23 + 5 and sb["already_known"] == 1
    assert sb["errors"] == [{"path": gone, "reason": "permission denied"}]
    cols = ", ".join(c for c in ing.INCIDENT_COLUMNS if c != "ingested_at")
    q = f"SELECT {cols} FROM incidents ORDER BY incident_id"
    ra, rb = a.conn.execute(q).fetchall(), b.conn.execute(q).fetchall()
    assert len(ra) == 28 and [r[:-1] for r in ra] == [r[:-1] for r in rb]
    q = "SELECT path, sha256, status, incident_id FROM files ORDER BY path"
    assert a.conn.execute(q).fetchall() == b.conn.execute(q).fetchall()
    a.close()
    b.close()


def test_dead_worker_in_a_chunk_is_found_exactly(tmp_path, monkeypatch):
    make_reports(tmp_path / "DR", 20)
    victim = str(tmp_path / "DR" / "mlcompiler-00011.ips")
    real = ing.process_bytes
    parent = os.getpid()

    def dying(stages, data, path, sha, explicit):
        if path == victim and os.getpid() != parent:
            os._exit(3)
        return real(stages, data, path, sha, explicit)

    monkeypatch.setattr(ing, "POOL_MIN_FILES", 1)
    monkeypatch.setattr(ing, "POOL_CHUNK", 4)
    monkeypatch.setattr(ing, "process_bytes", dying)
    store = Store.open(tmp_path / "s.db")
    s = ing.run_ingest(store, [tmp_path / "DR"], workers=2)
    assert [e["path"] for e in s["errors"]] == [victim]
    assert s["ingested"] == 19
    store.close()


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
def test_corpus_stored_reports_equal_parsed(tmp_path):
    files = sorted(p for p in CORPUS.rglob("*.ips") if p.is_file())[:40]
    if not files:
        pytest.skip("no .ips files in the corpus")
    store = Store.open(tmp_path / "s.db")
    ing.run_ingest(store, [str(p) for p in files], workers=1)
    checked = 0
    for p in files:
        row = store.conn.execute("SELECT incident_id FROM incidents WHERE path=?",
                                 (str(p),)).fetchone()
        if row is None:
            continue
        rep, parsed = _stored_vs_parsed(store, p)
        assert rep.images == parsed.images, p
        checked += 1
    assert checked
    store.close()


def _plain_and_lazy(data: bytes) -> tuple:
    """(full parse, lazy parse, its raw usedImages, its raw threads) of one report."""
    plain = parse_bytes(data, "/r.ips", "s")
    with ips.raw_images(lazy_threads=True) as held:
        lazy = parse_bytes(data, "/r.ips", "s")
    assert len(held) == 1 and held[0][0] is lazy
    return plain, lazy, held[0][1], held[0][2]


def test_lazy_mode_builds_only_the_crashing_thread():
    data = ips_bytes(3, nthreads=4)
    plain = parse_bytes(data, "/r.ips", "s")
    with ips.raw_images(lazy_threads=True) as held:
        lazy = parse_bytes(data, "/r.ips", "s")
    assert len(held) == 1 and held[0][0] is lazy and isinstance(held[0][2], list)
    ct = plain.crashing_thread
    assert lazy.crashing_thread == ct and lazy.crashing_frames() == plain.crashing_frames()
    assert lazy.last_exception_backtrace == plain.last_exception_backtrace
    assert [(t.index, t.id, t.name, t.triggered) for t in lazy.threads] == \
        [(t.index, t.id, t.name, t.triggered) for t in plain.threads]
    assert all(not t.frames for t in lazy.threads if t.index != ct)
    assert any(t.frames for t in plain.threads if t.index != ct)


def test_lazy_mode_picks_the_triggered_thread_when_faulting_thread_is_bad():
    head, _, body = ips_bytes(3, nthreads=4).partition(b"\n")
    b = orjson.loads(body)
    b["faultingThread"] = 99
    for t in b["threads"]:
        t.pop("triggered", None)
    b["threads"][2]["triggered"] = True
    data = head + b"\n" + orjson.dumps(b)
    plain = parse_bytes(data, "/r.ips", "s")
    with ips.raw_images(lazy_threads=True):
        lazy = parse_bytes(data, "/r.ips", "s")
    assert plain.crashing_thread == lazy.crashing_thread == 2
    assert lazy.crashing_frames() == plain.crashing_frames() and lazy.crashing_frames()


def test_symbol_facts_teach_what_the_built_frames_teach():
    from triage.frames.symbolize import observations

    plain, lazy, raw_imgs, raw_threads = _plain_and_lazy(ips_bytes(3, nthreads=4))
    got = observations(lazy, ips.symbol_facts(raw_threads, raw_imgs, lazy.crashing_thread))
    assert got == observations(plain) and got


def test_store_from_schema_1_gains_the_originals_table(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    sql = db._schema_sql()
    start = sql.index("CREATE TABLE IF NOT EXISTS originals")
    sql = sql[:start] + sql[sql.index(");", start) + 2:]
    conn.executescript(sql + "\nPRAGMA user_version=1;")
    conn.close()
    tables = "SELECT name FROM sqlite_master WHERE type='table'"
    assert "originals" not in {r[0] for r in sqlite3.connect(path).execute(tables)}
    store = Store.open(path)
    assert "originals" in {r[0] for r in store.conn.execute(tables)}
    make_reports(tmp_path / "DR", 2)
    assert ing.run_ingest(store, [tmp_path / "DR"], workers=1)["ingested"] == 2
    assert store.conn.execute("SELECT COUNT(*) FROM originals").fetchone()[0] == 2
    store.close()


def test_damaged_original_falls_back_to_the_crashing_thread(tmp_path):
    files = make_reports(tmp_path / "DR", 1)
    store = Store.open(tmp_path / "s.db")
    ing.run_ingest(store, [tmp_path / "DR"], workers=1)
    store.conn.execute("UPDATE originals SET data=?", (b"\x28\xb5\x2f\xfdjunk",))
    iid = store.conn.execute("SELECT incident_id FROM incidents").fetchone()[0]
    rep = load_report(store.conn, iid)
    parsed = parse_bytes(files[0].read_bytes(), str(files[0]), "s")
    assert len(rep.threads) == 1 and [f.symbol for f in rep.threads[0].frames] == \
        [f.symbol for f in parsed.crashing_frames()]
    assert any("stored original unreadable" in n for n in rep.notes)
    store.close()


def test_frames_column_round_trip_and_old_text_rows():
    from triage.records import Frame

    frames = [Frame(module="m", symbol="f", offset=2**64 + 5, inline=False),
              Frame(module="n", symbol=None, offset=16, inline=True)]
    blob = db.dump_frames(frames)
    assert isinstance(blob, bytes) and blob[:4] == b"\x28\xb5\x2f\xfd"
    got = db.load_frames(blob)
    assert [f["module"] for f in got] == ["m", "n"] and got[0]["offset"] == str(2**64 + 5)
    assert got[1]["symbol"] is None and got[1]["inline"] is True
    # written column-wise, read back as one dict per frame holding every Frame field
    from dataclasses import asdict

    assert b"frame_columns" in db.decompress_blob(blob)
    assert got[1] == asdict(frames[1])
    # schema-2 rows written before the column form: a compressed array of frame dicts
    old = db.compress_blob(orjson.dumps([asdict(f) for f in frames[1:]]))
    assert db.load_frames(old) == [asdict(frames[1])]
    # rows written before frames were compressed hold JSON text: still read
    text = orjson.dumps([{"module": "m", "symbol": "f", "offset": 1, "inline": False}]).decode()
    assert db.load_frames(text) == db.load_frames(text.encode()) == orjson.loads(text)
    assert db.load_frames(None) is None and db.dump_frames(None) is None
    # a 600-frame recursion compresses well
    deep = [Frame(module="ANECompiler", symbol="ANEC::visit(Node*)", offset=4096, inline=False)
            for _ in range(600)]
    assert len(db.dump_frames(deep)) * 20 < len(orjson.dumps(deep))


def test_repeated_frames_are_separate_records_with_the_same_values():
    lookup = [("libA", "u-a", 4096, "/a"), ("libB", "u-b", 8192, "/b")]
    rec = {"imageOffset": 64, "imageIndex": 1, "symbol": "f(int)", "symbolLocation": 4}
    bad = {"imageOffset": 8, "imageIndex": 9}
    raw = [rec, dict(rec), dict(rec), bad, dict(bad), {"imageOffset": 1, "imageIndex": 0}]
    notes: list[str] = []
    got = ips._frames(raw, lookup, notes, "thread 0")
    one = [ips._frames([r], lookup, [], "t")[0] for r in raw]
    assert got == one
    assert got[0] is not got[1] and got[1] is not got[2]
    got[1].symbol = "changed"                      # frames are mutable: never shared
    assert got[0].symbol == got[2].symbol == "f(int)"
    assert notes == ["thread 0: 2 frame(s) with imageIndex out of range (0..1): module unknown"]


def test_learning_skips_seen_facts_without_changing_what_is_learned():
    from triage.frames.symbolize import PeerSymbols, observations

    plain, lazy, raw_imgs, raw_threads = _plain_and_lazy(ips_bytes(3, nthreads=4))
    peers = PeerSymbols()
    first = peers.learn(lazy, ips.symbol_facts(raw_threads, raw_imgs, lazy.crashing_thread,
                                               peers.seen))
    assert first == observations(plain) and peers.seen
    # the same report again: every fact is skipped, nothing new is sent to the parent
    again = peers.learn(lazy, ips.symbol_facts(raw_threads, raw_imgs, lazy.crashing_thread,
                                               peers.seen))
    assert again == []
    fresh = PeerSymbols()
    fresh.observe(plain)
    assert {u: {s: (e.end_seen, e.symbol) for s, e in d.items()} for u, d in peers.by_uuid.items()} \
        == {u: {s: (e.end_seen, e.symbol) for s, e in d.items()} for u, d in fresh.by_uuid.items()}


def test_raw_facts_of_every_thread_and_the_leb_equal_the_built_frames():
    """Lazy ingest learns only from the raw JSON (every thread + lastExceptionBacktrace):
    the same rows a full parse's frames teach."""
    from triage.frames.symbolize import PeerSymbols, observations

    head, _, body = ips_bytes(5, nthreads=4).partition(b"\n")
    b = orjson.loads(body)
    b["lastExceptionBacktrace"] = [
        {"imageOffset": 300, "symbol": "__cxa_throw", "symbolLocation": 12, "imageIndex": 0},
        {"imageOffset": 900, "symbol": "MIL::lower()", "symbolLocation": 40, "imageIndex": 1},
        {"imageOffset": 901, "imageIndex": 1}]
    data = head + b"\n" + orjson.dumps(b)
    plain = parse_bytes(data, "/r.ips", "s")
    with ips.raw_images(lazy_threads=True) as held:
        parse_bytes(data, "/r.ips", "s")
    _, raw_imgs, raw_threads, raw_leb = held[0]
    want = observations(plain)
    assert observations(None, ips.symbol_facts(raw_threads, raw_imgs, None, None, raw_leb)) \
        == want
    assert any(r[3] == "MIL::lower()" for r in want)
    peers = PeerSymbols()
    assert peers.learn(None, ips.symbol_facts(raw_threads, raw_imgs, None, peers.seen,
                                              raw_leb)) == want


def test_reports_without_threads_read_back_without_a_phantom_thread_and_keep_images(tmp_path):
    """QA: a stored report with no threads (a hang, or a crash whose body lost `threads`) read
    back with an empty thread 0, and a lazily stored one lost its images."""
    import shutil

    dr = Path(__file__).resolve().parents[1] / "fixtures" / "DiagnosticReports"
    names = ["malformed/no-threads-2026-08-20-101504.ips"] + \
        [p.name for p in dr.glob("*.ips") if p.name.startswith(("JetsamEvent", "WindowServer"))]
    (tmp_path / "DR").mkdir()
    for n in names:
        shutil.copy2(dr / n, tmp_path / "DR" / Path(n).name)
    store = Store.open(tmp_path / "s.db")
    ing.run_ingest(store, [tmp_path / "DR"], workers=1)
    for iid, path in store.conn.execute("SELECT incident_id, path FROM incidents"):
        parsed = parse_bytes(Path(path).read_bytes(), path, "s")
        rep = load_report(store.conn, iid)
        assert len(rep.threads) == len(parsed.threads), path
        assert rep.crashing_thread == parsed.crashing_thread, path
        assert rep.images == parsed.images, path
        detail = incident_detail(store, iid)
        assert len(detail["images"]) == len(parsed.images) and len(detail["threads"]) == \
            len(parsed.threads)
    assert any(len(parse_bytes(Path(p).read_bytes(), p, "s").images) > 0 and
               not parse_bytes(Path(p).read_bytes(), p, "s").threads
               for (p,) in store.conn.execute("SELECT path FROM incidents"))
    store.close()


def test_frames_command_says_when_the_stored_original_is_unreadable(tmp_path, capsys):
    from triage.cli import main

    make_reports(tmp_path / "DR", 1)
    db = tmp_path / "s.db"
    assert main(["--db", str(db), "ingest", str(tmp_path / "DR")]) == 0
    store = Store.open(db)
    store.conn.execute("UPDATE originals SET data=?", (b"\x28\xb5\x2f\xfdjunk",))
    iid = store.conn.execute("SELECT incident_id FROM incidents").fetchone()[0]
    store.close()
    capsys.readouterr()
    assert main(["--db", str(db), "frames", iid[:8], "-f", "json"]) == 0
    cap = capsys.readouterr()
    assert "stored original unreadable" in cap.err and cap.err.count("\n") == 1
    import json

    assert [r["symbol"] for r in json.loads(cap.out)][:1] == ["objc_release"]
