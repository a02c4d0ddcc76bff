"""Ingest pipeline: storage, idempotency, unchanged re-runs, bad files, interrupts, concurrency."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import orjson
import pytest

from triage import ingest as ing
from triage.reports import discover as disc
from triage.store.db import Store, jload, unpack
from triage.store.queries import error_records, incident_records

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def ips_bytes(i: int = 0, bug_type: str = "309", proc: str = "mlcompiler", nthreads: int = 3,
              incident: str | None = None, pad: int = 0) -> bytes:
    """A small but well-formed JSON .ips report (header line + body)."""
    iid = incident or str(uuid.UUID(int=i + 1)).upper()
    hdr = {"bug_type": bug_type, "timestamp": "2026-09-18 08:24:00.00 +0000",
           "os_version": "macOS 26.0 (26A5353q)", "incident_id": iid, "name": proc,
           "app_name": proc}
    body = {"incident": iid, "procName": proc, "pid": 100 + i,
            "captureTime": f"2026-09-18 08:{i // 60 % 60:02d}:{i % 60:02d}.4423 +0000",
            "osVersion": {"train": "macOS 26.0", "build": "26A5353q", "releaseType": "Beta"},
            "exception": {"type": "EXC_BAD_ACCESS", "signal": "SIGSEGV", "codes": "0x1, 0x8"},
            "faultingThread": 0,
            "threads": [{"id": 1000 + t, "triggered": t == 0,
                         "frames": [{"imageOffset": 100 + t, "symbol": "objc_release",
                                     "symbolLocation": 8, "imageIndex": 0},
                                    {"imageOffset": 200 + i % 7, "imageIndex": 1}]}
                        for t in range(nthreads)],
            "usedImages": [{"name": "libobjc.A.dylib", "base": 4096, "size": 100000,
                            "uuid": "11111111-2222-3333-4444-555555555555",
                            "path": "/usr/lib/libobjc.A.dylib", "arch": "arm64e",
                            "source": "P"},
                           {"name": "MPSGraph", "base": 8192, "size": 100000,
                            "uuid": "11111111-2222-3333-4444-555555555556", "source": "P"}]}
    if pad:
        body["vmSummary"] = "x" * pad
    return orjson.dumps(hdr) + b"\n" + orjson.dumps(body, option=orjson.OPT_INDENT_2)


def make_reports(folder: Path, n: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + n):
        p = folder / f"mlcompiler-{i:05d}.ips"
        p.write_bytes(ips_bytes(i))
        out.append(p)
    return out


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "t.db")
    yield s
    s.close()


def count(store, table="incidents"):
    return store.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_ingest_stores_rows_frames_and_detail(tmp_path, store):
    make_reports(tmp_path / "DR", 3)
    s = ing.run_ingest(store, [tmp_path / "DR"])
    assert (s["files_seen"], s["ingested"], s["already_known"], s["skipped"]) == (3, 3, 0, 0)
    assert s["errors"] == [] and s["by_kind"] == {"crash": 3}
    recs = incident_records(store)
    assert len(recs) == 3
    r = recs[0]
    assert r["incident_id"] == str(uuid.UUID(int=1)).upper()
    assert r["path"] == str(tmp_path / "DR" / "mlcompiler-00000.ips")
    assert r["kind"] == "crash" and r["bug_type"] == "309" and r["pid"] == 100
    assert r["signal"] == "SIGSEGV" and r["crashing_thread"] == 0 and r["os_build"] == "26A5353q"
    assert r["captured_at"].startswith("2026-09-18T08:00:00")
    from datetime import datetime, timezone

    expected = datetime(2026, 9, 18, 8, 0, 0, 442300, tzinfo=timezone.utc).timestamp()
    assert r["captured_ts"] == pytest.approx(expected, abs=1e-3)
    f0 = r["frames"][0]
    for key in ("module", "symbol", "offset", "inline", "function", "normalized", "rule",
                "symbol_offset", "image_uuid", "address", "source_file", "source_line",
                "raw_symbol"):
        assert key in f0
    assert (f0["module"], f0["symbol"], f0["offset"], f0["inline"]) == \
        ("libobjc.A.dylib", "objc_release", 100, False)
    assert r["frames"][1]["symbol"] is None and r["compile"] is None
    row = store.conn.execute("SELECT detail, sha256, o.data FROM incidents i JOIN originals o "
                             "USING (incident_id) WHERE incident_id=?",
                             (r["incident_id"],)).fetchone()
    # the small detail blob holds header/extra/notes; the file's bytes are kept (compressed)
    assert set(unpack(row[0])) == {"header", "extra", "notes"}
    src = (tmp_path / "DR" / "mlcompiler-00000.ips").read_bytes()
    from triage.store.db import decompress_blob

    assert decompress_blob(row[2]) == src
    from triage.store.queries import incident_detail

    detail = incident_detail(store, r["incident_id"])
    assert len(detail["threads"]) == 3 and detail["images"][1]["name"] == "MPSGraph"
    assert detail["threads"][0]["frames"][0]["normalized"] == "objc_release"
    assert all(f.get("normalized") for t in detail["threads"] for f in t["frames"])
    import hashlib

    assert row[1] == hashlib.sha256(src).hexdigest()
    assert count(store, "files") == 3


def test_signature_and_stacks_are_stored(tmp_path, store):
    make_reports(tmp_path / "DR", 4)
    ing.run_ingest(store, [tmp_path / "DR"])
    rows = store.conn.execute("SELECT signature, stack_id FROM incidents").fetchall()
    assert all(sig and sid for sig, sid in rows)
    total = store.conn.execute("SELECT SUM(count) FROM stacks").fetchone()[0]
    assert total == 4
    frames = jload(store.conn.execute("SELECT frames FROM stacks LIMIT 1").fetchone()[0])
    assert isinstance(frames, list) and frames


def test_idempotent_rerun_and_same_content_other_name(tmp_path, store):
    make_reports(tmp_path / "DR", 5)
    first = ing.run_ingest(store, [tmp_path / "DR"])
    second = ing.run_ingest(store, [tmp_path / "DR"])
    assert second["already_known"] == first["ingested"] == 5 and second["ingested"] == 0
    (tmp_path / "copy.ips").write_bytes((tmp_path / "DR" / "mlcompiler-00002.ips").read_bytes())
    third = ing.run_ingest(store, [tmp_path / "copy.ips"])
    assert (third["ingested"], third["already_known"]) == (0, 1)
    # same incident id, different bytes (e.g. re-symbolicated copy): known too
    (tmp_path / "resym.ips").write_bytes(ips_bytes(3, pad=10))
    fourth = ing.run_ingest(store, [tmp_path / "resym.ips"])
    assert (fourth["ingested"], fourth["already_known"]) == (0, 1)
    assert count(store) == 5
    status = dict(store.conn.execute("SELECT path, status FROM files"))
    assert status[str(tmp_path / "copy.ips")] == "duplicate"


def test_duplicates_within_one_run(tmp_path, store):
    make_reports(tmp_path / "DR", 2)
    (tmp_path / "DR" / "again.ips").write_bytes((tmp_path / "DR" / "mlcompiler-00000.ips")
                                                .read_bytes())
    s = ing.run_ingest(store, [tmp_path / "DR"])
    assert (s["ingested"], s["already_known"]) == (2, 1) and count(store) == 2


def test_unchanged_rerun_does_not_read_files(tmp_path, store, monkeypatch):
    make_reports(tmp_path / "DR", 4)
    ing.run_ingest(store, [tmp_path / "DR"])

    def boom(*a, **kw):
        raise AssertionError("an unchanged file was read")

    monkeypatch.setattr(disc, "read_file", boom)
    monkeypatch.setattr(disc.Candidate, "read", boom)
    s = ing.run_ingest(store, [tmp_path / "DR"])
    assert (s["already_known"], s["ingested"], s["errors"]) == (4, 0, [])
    monkeypatch.undo()
    # a changed mtime makes ingest read the file again (and find it by content)
    p = tmp_path / "DR" / "mlcompiler-00001.ips"
    os.utime(p, ns=(1, 1))
    reads = []
    real = disc.read_file
    monkeypatch.setattr(disc, "read_file", lambda path, *a: reads.append(path) or real(path, *a))
    s = ing.run_ingest(store, [tmp_path / "DR"])
    assert reads == [str(p)] and s["already_known"] == 4


BAD_FILES = {
    "empty.ips": b"",
    "truncated.ips": ips_bytes(90)[:300],
    "junk.ips": bytes(range(256)) * 8,
    "badutf8.crash": b"Process: x\xff\xfe\nException Type: \xc3\x28\n",
    "header-only.ips": ips_bytes(91).split(b"\n", 1)[0] + b"\n",
    "nothreads.ips": ips_bytes(92).split(b"\n", 1)[0] + b"\n{\"procName\": \"x\"}",
}


def test_bad_files_beside_good_ones(tmp_path, store):
    make_reports(tmp_path / "DR", 3)
    for name, data in BAD_FILES.items():
        (tmp_path / "DR" / name).write_bytes(data)
    problems = []
    s = ing.run_ingest(store, [tmp_path / "DR"], on_problem=lambda p, r: problems.append((p, r)))
    assert s["files_seen"] == 3 + len(BAD_FILES)
    assert s["ingested"] >= 3
    assert s["files_seen"] == s["ingested"] + s["already_known"] + s["skipped"] + len(s["errors"])
    bad_paths = {e["path"] for e in s["errors"]}
    for name in ("empty.ips", "truncated.ips", "junk.ips"):
        assert str(tmp_path / "DR" / name) in bad_paths
    assert all(e["reason"] and "\n" not in e["reason"] for e in s["errors"])
    assert problems == [(e["path"], e["reason"]) for e in s["errors"]]
    assert {e["path"] for e in error_records(store)} == bad_paths
    # errors are retried on the next run (not skipped as unchanged) and a fixed file clears
    (tmp_path / "DR" / "empty.ips").write_bytes(ips_bytes(95))
    s2 = ing.run_ingest(store, [tmp_path / "DR"])
    assert s2["ingested"] == 1
    assert str(tmp_path / "DR" / "empty.ips") not in {e["path"] for e in error_records(store)}


def test_permission_denied_is_reported(tmp_path, store, monkeypatch):
    make_reports(tmp_path / "DR", 2)
    locked = str(tmp_path / "DR" / "mlcompiler-00001.ips")
    real_open = os.open

    def fake_open(path, *a, **kw):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_open(path, *a, **kw)

    monkeypatch.setattr(os, "open", fake_open)
    s = ing.run_ingest(store, [tmp_path / "DR"])
    assert s["ingested"] == 1
    assert s["errors"] == [{"path": locked, "reason": "permission denied"}]


def test_too_large_and_missing_paths(tmp_path, store, monkeypatch):
    make_reports(tmp_path / "DR", 2)
    (tmp_path / "DR" / "huge.ips").write_bytes(ips_bytes(50, pad=5000))
    monkeypatch.setattr(disc, "MAX_REPORT_BYTES", 4000)
    s = ing.run_ingest(store, [tmp_path / "DR", tmp_path / "nope"])
    reasons = {os.path.basename(e["path"]): e["reason"] for e in s["errors"]}
    assert reasons["huge.ips"].startswith("file too large")
    assert reasons["nope"] == "no such file or folder"
    assert s["ingested"] == 2


def test_explicit_non_report_file_is_skipped(tmp_path, store):
    (tmp_path / "report.txt").write_bytes(ips_bytes(7))
    (tmp_path / "shopping.md").write_bytes(b"# eggs\nmilk\n")
    notes = []
    s = ing.run_ingest(store, [tmp_path / "report.txt", tmp_path / "shopping.md"],
                       on_problem=lambda p, r: notes.append(p))
    assert (s["ingested"], s["skipped"], s["errors"]) == (1, 1, [])
    assert notes == [str(tmp_path / "shopping.md")]


def test_archive_members_are_ingested(tmp_path, store):
    import zipfile

    z = tmp_path / "reports.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i in range(3):
            zf.writestr(f"DiagnosticReports/r{i}.ips", ips_bytes(i))
    s = ing.run_ingest(store, [z])
    assert s["ingested"] == 3
    paths = sorted(r["path"] for r in incident_records(store))
    assert paths[0] == f"{z}!DiagnosticReports/r0.ips"
    assert ing.run_ingest(store, [z])["already_known"] == 3


def test_truncated_tar_member_is_a_problem_not_a_crash(tmp_path, store):
    # regression: a .tgz cut short inside a member raised tarfile.ReadError out of run_ingest
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for i in range(2):
            data = ips_bytes(i) + os.urandom(20_000).hex().encode()  # incompressible padding
            info = tarfile.TarInfo(f"r{i}.ips")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    t = tmp_path / "reports.tgz"
    t.write_bytes(buf.getvalue()[:len(buf.getvalue()) // 3])
    s = ing.run_ingest(store, [t])
    assert s["ingested"] == 0 and s["errors"]
    assert any("unreadable archive" in e["reason"] and e["path"].startswith(str(t))
               for e in s["errors"])


def test_keyboard_interrupt_mid_batch_then_rerun_stores_each_once(tmp_path, store, monkeypatch):
    make_reports(tmp_path / "DR", 25)
    monkeypatch.setattr(ing, "BATCH_SIZE", 10)
    real = ing.incident_row
    calls = [0]

    def flaky(*a, **kw):
        calls[0] += 1
        if calls[0] == 17:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(ing, "incident_row", flaky)
    with pytest.raises(KeyboardInterrupt):
        ing.run_ingest(store, [tmp_path / "DR"])
    assert count(store) == 10 and count(store, "files") == 10  # first batch only
    monkeypatch.setattr(ing, "incident_row", real)
    s = ing.run_ingest(store, [tmp_path / "DR"])
    assert (s["ingested"], s["already_known"]) == (15, 10)
    assert count(store) == 25
    assert store.conn.execute("SELECT COUNT(DISTINCT sha256) FROM incidents").fetchone()[0] == 25


_SCRIPT = textwrap.dedent("""
    import json, sys
    import triage.ingest as ing
    from triage.store.db import Store
    ing.BATCH_SIZE = int(sys.argv[3])
    if len(sys.argv) > 4:  # slow each report down so a kill lands mid-run
        import time
        _row = ing.incident_row
        ing.incident_row = lambda *a: (time.sleep(float(sys.argv[4])), _row(*a))[1]
    s = ing.run_ingest(Store.open(sys.argv[1]), [sys.argv[2]])
    print(json.dumps({k: s[k] for k in ("ingested", "already_known", "errors")}))
""")


def _spawn(db, folder, batch, delay=None):
    extra = [] if delay is None else [str(delay)]
    return subprocess.Popen([sys.executable, "-c", _SCRIPT, str(db), str(folder), str(batch),
                             *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_subprocess_then_rerun_stores_each_once(tmp_path):
    n = 400
    make_reports(tmp_path / "DR", n)
    db = tmp_path / "k.db"
    Store.open(db).close()
    proc = _spawn(db, tmp_path / "DR", 20, delay=0.01)
    probe = Store.open(db)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if count(probe) >= 20:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    partial = count(probe)
    assert partial % 20 == 0 or partial == n  # whole batches only
    assert count(probe, "files") == partial
    s = ing.run_ingest(probe, [tmp_path / "DR"])
    assert s["ingested"] == n - partial and s["already_known"] == partial
    assert count(probe) == n and count(probe, "files") == n
    probe.close()


def test_two_concurrent_ingests_both_succeed(tmp_path):
    n = 300
    make_reports(tmp_path / "DR", n)
    db = tmp_path / "c.db"
    procs = [_spawn(db, tmp_path / "DR", 25) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert "locked" not in err
        results.append(orjson.loads(out.strip().splitlines()[-1]))
    assert sum(r["ingested"] for r in results) == n
    assert all(r["ingested"] + r["already_known"] == n and r["errors"] == [] for r in results)
    s = Store.open(db)
    assert count(s) == n and count(s, "files") == n
    s.close()


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
def test_real_corpus_ingests_without_tracebacks(tmp_path, store):
    files = sorted(p for p in CORPUS.iterdir() if p.is_file())
    problems = []
    s = ing.run_ingest(store, [str(p) for p in files],
                       on_problem=lambda p, r: problems.append((p, r)))
    assert s["files_seen"] == len(files)
    assert s["files_seen"] == s["ingested"] + s["already_known"] + s["skipped"] + len(s["errors"])
    assert s["ingested"] >= len(files) // 2
    assert all("Traceback" not in e["reason"] and "parser failed" not in e["reason"]
               for e in s["errors"])
    # every stored crash names its crashing thread and a first frame
    for r in incident_records(store, kind="crash"):
        assert r["path"].startswith(str(CORPUS))
        if r["crashing_thread"] is not None and r["frames"]:
            assert r["frames"][0]["module"] or r["frames"][0]["offset"] is not None


def _rows(store):
    cols = [c for c in ing.INCIDENT_COLUMNS if c not in ("ingested_at", "detail")]
    rows = store.conn.execute(f"SELECT {', '.join(cols)}, detail FROM incidents "
                              "ORDER BY incident_id").fetchall()
    return [r[:-1] + (unpack(r[-1]),) for r in rows]


def test_worker_pool_gives_the_same_store_as_inline(tmp_path, monkeypatch):
    make_reports(tmp_path / "DR", 30)
    for name, data in BAD_FILES.items():
        (tmp_path / "DR" / name).write_bytes(data)
    monkeypatch.setattr(ing, "POOL_MIN_FILES", 1)
    a, b = Store.open(tmp_path / "a.db"), Store.open(tmp_path / "b.db")
    sa = ing.run_ingest(a, [tmp_path / "DR"], workers=1)
    sb = ing.run_ingest(b, [tmp_path / "DR"], workers=2)
    assert sb["workers"] == 2 and sa["workers"] == 1
    for key in ("files_seen", "ingested", "already_known", "skipped", "errors", "by_kind"):
        assert sa[key] == sb[key], key
    assert _rows(a) == _rows(b)
    a.close()
    b.close()


def test_dead_worker_is_reported_and_the_rest_stored(tmp_path, store, monkeypatch):
    make_reports(tmp_path / "DR", 12)
    victim = str(tmp_path / "DR" / "mlcompiler-00005.ips")
    real = ing.process_bytes
    parent = os.getpid()

    def dying(stages, data, path, sha, explicit):
        if path == victim and os.getpid() != parent:
            os._exit(3)  # a worker killed mid-parse (native crash, OOM killer)
        return real(stages, data, path, sha, explicit)

    monkeypatch.setattr(ing, "POOL_MIN_FILES", 1)
    monkeypatch.setattr(ing, "process_bytes", dying)  # inherited by the forked workers
    s = ing.run_ingest(store, [tmp_path / "DR"], workers=2)
    assert {e["path"] for e in s["errors"]} <= {victim} | {
        str(tmp_path / "DR" / f"mlcompiler-{i:05d}.ips") for i in range(12)}
    assert victim in {e["path"] for e in s["errors"]}
    assert s["ingested"] + len(s["errors"]) == 12 and s["ingested"] >= 1
    # the next run retries the reported file (inline this time) and stores it
    s2 = ing.run_ingest(store, [tmp_path / "DR"], workers=1)
    assert count(store) == 12 and s2["errors"] == []


def _provenance():
    import csv

    with open(CORPUS / "PROVENANCE.tsv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
def test_real_corpus_top_frames_match_provenance(tmp_path, store):
    rows = [r for r in _provenance() if r["top_crashing_frame"]]
    ing.run_ingest(store, [str(CORPUS / r["file"]) for r in rows])
    by_path = {r["path"]: r for r in incident_records(store)}
    checked = 0
    for row in rows:
        top = row["top_crashing_frame"]
        rec = by_path.get(str(CORPUS / row["file"]))
        if rec is None or not rec["frames"] or top.startswith(("(", "<", "0x")):
            continue
        symbol = top.split(" [", 1)[0].split(" + ", 1)[0].split("+ ", 1)[0].strip()
        f0 = rec["frames"][0]
        text = " ".join(str(f0.get(k) or "") for k in ("symbol", "raw_symbol", "function"))
        assert symbol.split("(")[0] in text, (row["file"], symbol, f0)
        checked += 1
    assert checked >= 5


def test_incident_records_filters_and_merged_cluster_ids(tmp_path, store):
    make_reports(tmp_path / "DR", 4)
    (tmp_path / "hang.ips").write_bytes(ips_bytes(9, bug_type="288"))
    ing.run_ingest(store, [tmp_path / "DR", tmp_path / "hang.ips"])
    ids = [r["incident_id"] for r in incident_records(store, kind="crash")]
    assert len(ids) == 4
    assert [r["kind"] for r in incident_records(store, kind="hang")] == ["hang"]
    with store.transaction() as conn:
        conn.execute("UPDATE incidents SET cluster_id='C-new' WHERE incident_id IN (?, ?)",
                     ids[:2])
        conn.execute("INSERT OR REPLACE INTO clusters (cluster_id, signature, created_at, "
                     "merged_into) VALUES ('C-old', 's', 'now', 'C-new')")
    assert {r["incident_id"] for r in incident_records(store, cluster="C-new")} == set(ids[:2])
    assert {r["incident_id"] for r in incident_records(store, cluster="C-old")} == set(ids[:2])
    assert len(incident_records(store, limit=2)) == 2
    (one,) = incident_records(store, incident_ids=[ids[3]], detail=True)
    assert len(one["threads"]) == 3 and one["images"][0]["name"] == "libobjc.A.dylib"
    assert "threads" not in incident_records(store, limit=1)[0]


def test_cluster_filter_finds_rows_still_on_a_retired_id(tmp_path, store):
    make_reports(tmp_path / "DR", 3)
    ing.run_ingest(store, [tmp_path / "DR"])
    ids = [r["incident_id"] for r in incident_records(store)]
    with store.transaction() as conn:
        conn.execute("UPDATE incidents SET cluster_id='C-retired' WHERE incident_id=?", (ids[0],))
        conn.execute("UPDATE incidents SET cluster_id='C-live' WHERE incident_id=?", (ids[1],))
        conn.execute("INSERT OR REPLACE INTO clusters (cluster_id, signature, created_at, "
                     "merged_into) VALUES ('C-retired', 's', 'now', 'C-live')")
    assert {r["incident_id"] for r in incident_records(store, cluster="C-live")} == \
        set(ids[:2])


def test_huge_termination_code_is_kept_exact(tmp_path, store):
    data = ips_bytes(1)
    head, body = data.split(b"\n", 1)
    doc = orjson.loads(body)
    doc["termination"] = {"namespace": "SIGNAL", "code": 18446744073709551615,
                          "indicator": "Segmentation fault: 11"}
    (tmp_path / "t.ips").write_bytes(head + b"\n" + orjson.dumps(doc))
    s = ing.run_ingest(store, [tmp_path / "t.ips"])
    assert s["ingested"] == 1, s
    (rec,) = incident_records(store)
    if rec["termination_code"] is not None:  # parser keeps it: must be exact
        assert rec["termination_code"] in (18446744073709551615, "0xffffffffffffffff")


def test_blobs_zstd_and_legacy_zlib_both_read():
    import zlib

    from triage.store import db

    obj = {"threads": [{"frames": [{"symbol": "objc_release", "offset": 2**64 - 1}]}]}
    packed = db.pack(obj)
    assert db.unpack(packed) == obj
    legacy = zlib.compress(orjson.dumps(obj), 3)      # rows written before zstd
    assert db.unpack(legacy) == obj
    try:
        import zstandard  # noqa: F401
    except ImportError:
        pytest.skip("zstandard not installed: zlib only")
    assert packed[:4] == b"\x28\xb5\x2f\xfd"
