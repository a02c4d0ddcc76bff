"""CLI: `triage ingest` / `triage incidents` contracts, --db / TRIAGE_DB, fast --help."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from triage.cli import main

INGEST_KEYS = {"files_seen", "ingested", "already_known", "skipped", "errors", "by_kind"}
INCIDENT_KEYS = {"incident_id", "path", "sha256", "bug_type", "kind", "process", "pid",
                 "captured_at", "os_version", "os_build", "exception_type", "signal",
                 "crashing_thread", "frames", "signature", "cluster_id", "compile"}


def ips_bytes(i: int, bug_type: str = "309") -> bytes:
    iid = str(uuid.UUID(int=i + 1)).upper()
    hdr = {"bug_type": bug_type, "timestamp": "2026-09-18 08:24:00.00 +0000",
           "os_version": "macOS 26.0 (26A5353q)", "incident_id": iid, "name": "mlc"}
    body = {"incident": iid, "procName": "mlc", "pid": 10 + i,
            "captureTime": f"2026-09-18 08:24:{i:02d}.00 +0000",
            "osVersion": {"train": "macOS 26.0", "build": "26A5353q"},
            "exception": {"type": "EXC_CRASH", "signal": "SIGABRT"}, "faultingThread": 0,
            "threads": [{"id": 7, "triggered": True,
                         "frames": [{"imageOffset": 1234, "symbol": "__pthread_kill",
                                     "symbolLocation": 8, "imageIndex": 0},
                                    {"imageOffset": 99, "imageIndex": 0}]}],
            "usedImages": [{"name": "libsystem_kernel.dylib", "base": 4096, "size": 9999,
                            "uuid": "11111111-2222-3333-4444-555555555555"}]}
    return orjson.dumps(hdr) + b"\n" + orjson.dumps(body)


@pytest.fixture
def reports(tmp_path):
    d = tmp_path / "DiagnosticReports"
    (d / "Retired").mkdir(parents=True)
    (d / "a.ips").write_bytes(ips_bytes(1))
    (d / "Retired" / "b.ips").write_bytes(ips_bytes(2))
    (d / "broken.ips").write_bytes(b"{\"bug_type\":\"309\"}\n{\"procName\": ")
    (d / "readme.txt").write_text("hello")
    return d


@pytest.fixture
def db(tmp_path, monkeypatch):
    path = tmp_path / "store.db"
    monkeypatch.setenv("TRIAGE_DB", str(path))
    return path


def run(capsys, *argv):
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_ingest_json_contract_and_problem_lines(reports, db, capsys):
    code, out, err = run(capsys, "ingest", str(reports), "--format", "json")
    assert code == 0
    s = orjson.loads(out)
    assert INGEST_KEYS <= set(s)
    assert (s["files_seen"], s["ingested"], s["already_known"], s["skipped"]) == (4, 2, 0, 1)
    assert s["by_kind"] == {"crash": 2}
    assert [set(e) for e in s["errors"]] == [{"path", "reason"}]
    assert s["errors"][0]["path"] == str(reports / "broken.ips")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [f"{reports / 'broken.ips'}: {s['errors'][0]['reason']}"]
    assert "Traceback" not in err
    code, out, _ = run(capsys, "ingest", str(reports), "--format", "json")
    s2 = orjson.loads(out)
    assert (s2["ingested"], s2["already_known"]) == (0, 2)


def test_ingest_table_summary_line(reports, db, capsys):
    code, out, _ = run(capsys, "ingest", str(reports))
    assert code == 0
    assert out.count("\n") == 1 and "ingested 2 new reports" in out and "1 error" in out


def test_nonexistent_path_is_one_line_not_a_traceback(reports, db, capsys, tmp_path):
    missing = tmp_path / "does-not-exist"
    code, out, err = run(capsys, "ingest", str(missing), str(reports / "a.ips"))
    assert code == 1
    assert f"{missing}: no such file or folder" in err.splitlines()
    assert "Traceback" not in err and "ingested 1 new report" in out


def test_incidents_json_contract(reports, db, capsys):
    run(capsys, "ingest", str(reports))
    code, out, _ = run(capsys, "incidents", "--format", "json")
    assert code == 0
    recs = orjson.loads(out)
    assert len(recs) == 2
    for r in recs:
        assert INCIDENT_KEYS <= set(r)
        assert os.path.isabs(r["path"]) and r["kind"] == "crash"
        f = r["frames"][0]
        assert {"module", "symbol", "offset", "inline", "function", "normalized"} <= set(f)
    r = recs[0]
    assert r["frames"][0]["symbol"] == "__pthread_kill" and r["frames"][1]["symbol"] is None
    assert r["frames"][0]["offset"] == 1234 and r["frames"][0]["inline"] is False
    assert r["signal"] == "SIGABRT" and r["crashing_thread"] == 0
    assert r["captured_at"].startswith("2026-09-18T08:24:01")


def test_incidents_table_csv_kind_and_errors(reports, db, capsys):
    run(capsys, "ingest", str(reports))
    code, out, _ = run(capsys, "incidents")
    assert code == 0 and "mlc" in out
    assert max(len(ln) for ln in out.splitlines()) <= 100
    code, out, _ = run(capsys, "incidents", "--format", "csv")
    lines = out.splitlines()
    assert lines[0].startswith("incident_id,path,sha256") and len(lines) == 3
    code, out, _ = run(capsys, "incidents", "--kind", "hang", "--format", "json")
    assert orjson.loads(out) == []
    code, out, _ = run(capsys, "incidents", "--errors", "--format", "json")
    errs = orjson.loads(out)
    assert [e["path"] for e in errs] == [str(reports / "broken.ips")]
    code, _, err = run(capsys, "incidents", "--kind", "bogus")
    assert code == 2 and "bogus" in err and "Traceback" not in err


def test_db_option_beats_env(reports, tmp_path, monkeypatch, capsys):
    env_db = tmp_path / "env.db"
    opt_db = tmp_path / "opt.db"
    monkeypatch.setenv("TRIAGE_DB", str(env_db))
    code, _, _ = run(capsys, "--db", str(opt_db), "ingest", str(reports / "a.ips"))
    assert code == 0 and opt_db.exists() and not env_db.exists()
    code, out, _ = run(capsys, "incidents", "--format", "json")  # env store: empty
    assert orjson.loads(out) == [] and env_db.exists()
    code, out, _ = run(capsys, "--db", str(opt_db), "incidents", "--format", "json")
    assert len(orjson.loads(out)) == 1


def test_help_does_not_import_heavy_packages(tmp_path):
    code = ("import sys; from triage.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('pandas', 'sklearn', 'coremltools', 'rapidfuzz') "
            "if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "TRIAGE_DB": str(tmp_path / "h.db")}, timeout=120)
    assert "HEAVY []" in res.stdout, res.stdout + res.stderr
    assert "ingest" in res.stdout and "incidents" in res.stdout


def test_console_script_runs(reports, tmp_path):
    exe = Path(sys.executable).parent / "triage"
    if not exe.exists():
        pytest.skip("console script not installed")
    res = subprocess.run([str(exe), "--db", str(tmp_path / "s.db"), "ingest", str(reports),
                          "--format", "json"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert orjson.loads(res.stdout)["ingested"] == 2


def test_missing_journal_or_dsym_is_a_usage_error(reports, db, capsys, tmp_path):
    code, out, err = run(capsys, "ingest", str(reports), "--journal", str(tmp_path / "no.jsonl"))
    assert code == 2 and "no.jsonl: no such file or folder" in err and out == ""
    assert not db.exists() or orjson.loads(run(capsys, "incidents", "--format", "json")[1]) == []
    code, _, err = run(capsys, "ingest", str(reports), "--dsym", str(tmp_path / "x.dSYM"))
    assert code == 2 and "x.dSYM" in err


def test_usage_errors_are_one_line(db, capsys):
    # regression: typer printed a multi-line usage box for a bad option value
    for argv, needle in ((["export", "--tracker", "nope", "--out", "x"], "'--tracker'"),
                         (["ingest"], "Missing argument"),
                         (["incidents", "--bogus"], "--bogus"),
                         (["nosuchcommand"], "nosuchcommand")):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "", (argv, out)
        assert err.startswith("triage: error: ") and err.count("\n") == 1 and needle in err, err
    code, out, err = run(capsys, "incidents", "--help")
    assert code == 0 and "--kind" in out and err == ""


def test_store_in_read_only_folder_names_the_reason(tmp_path, monkeypatch):
    # regression: "not a usable triage store (unable to open database file)"
    import sqlite3

    from triage.store import db as store_db

    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # root bypasses real modes
    msg = store_db._open_problem(tmp_path / "ro" / "t.db",
                                 sqlite3.OperationalError("unable to open database file"))
    assert "permission denied" in msg and str(tmp_path / "ro") in msg


def test_write_to_read_only_store_is_one_line(reports, db, capsys, monkeypatch):
    # regression: a read-only store file gave "internal error: OperationalError"
    import sqlite3

    import triage.ingest

    def boom(*a, **k):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(triage.ingest, "run_ingest", boom)
    code, out, err = run(capsys, "ingest", str(reports))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"triage: error: {db}: cannot write the store") and "internal" not in err


def test_incidents_unknown_cluster_is_an_error(tmp_path, capsys):
    from triage.cli import main

    db = str(tmp_path / "t.db")
    assert main(["--db", db, "incidents", "--cluster", "C-nope"]) == 2
    err = capsys.readouterr().err
    assert "C-nope: no such cluster" in err and "Traceback" not in err
