"""`triage original` / `Triage.original`: the stored report file, byte for byte, redacted by
default; works after the file is gone; older stores fall back to the unchanged file."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import triage
from triage.cli import main

ROOT = Path(__file__).resolve().parents[1]
DR = ROOT / "fixtures" / "DiagnosticReports"
IPS = "coreai-build-2026-07-28-185803.ips"
CRASH = "coreai-build-2026-08-14-081410.crash"


@pytest.fixture
def env(tmp_path, monkeypatch):
    folder = tmp_path / "DR"
    folder.mkdir()
    for name in (IPS, CRASH):
        shutil.copy2(DR / name, folder / name)
    db = tmp_path / "t.db"
    monkeypatch.setenv("TRIAGE_DB", str(db))
    assert main(["ingest", str(folder)]) == 0
    with triage.open(db) as t:
        ids = {Path(r["path"]).name: r["incident_id"] for r in t.incidents_records()}
    return folder, db, ids


def _out(capsysbinary, argv) -> tuple[int, bytes, str]:
    capsysbinary.readouterr()
    code = main(argv)
    got = capsysbinary.readouterr()
    return code, got.out, got.err.decode()


def test_original_is_the_file_byte_for_byte(env, capsysbinary):
    folder, _, ids = env
    for name in (IPS, CRASH):            # JSON (parsed lazily) and text reports alike
        code, out, _ = _out(capsysbinary, ["original", ids[name], "--no-redact"])
        assert code == 0 and out == (folder / name).read_bytes()


def test_original_survives_the_file_and_redacts_by_default(env, capsysbinary, tmp_path):
    folder, db, ids = env
    src = (folder / CRASH).read_bytes()
    (folder / CRASH).unlink()            # macOS rotated it away: the store still has it
    code, out, _ = _out(capsysbinary, ["original", ids[CRASH][:8]])
    assert code == 0
    assert b"/Users/carol.diaz/" in src and b"/Users/carol.diaz/" not in out
    assert b"/Users/USER/" in out and len(out) > len(src) // 2
    key = b"141577FE-9E24-345E-8D07-5A82E24C17F9"
    assert key in (folder / IPS).read_bytes()
    code, out, _ = _out(capsysbinary, ["original", ids[IPS]])
    assert code == 0 and key not in out
    with triage.open(db) as t:
        assert t.original(ids[IPS], redact=False) == (folder / IPS).read_bytes()
        assert t.original(ids[IPS]) == out
    dest = tmp_path / "attach.ips"
    assert main(["original", ids[IPS], "-o", str(dest), "--no-redact"]) == 0
    assert dest.read_bytes() == (folder / IPS).read_bytes()


def test_original_bad_input_is_one_line(env, capsysbinary, tmp_path):
    _, _, ids = env
    code, _, err = _out(capsysbinary, ["original", "ZZZZZZZZ"])
    assert code == 2 and "ZZZZZZZZ: no such incident" in err and len(err.splitlines()) == 1
    code, _, err = _out(capsysbinary, ["original", ids[IPS], "-o", str(tmp_path)])
    assert code == 2 and f"{tmp_path}: cannot write" in err and "Traceback" not in err


def test_store_without_the_copy_falls_back_to_the_unchanged_file(env, capsysbinary):
    folder, db, ids = env
    import sqlite3

    with sqlite3.connect(db) as conn:    # as a store written before originals existed
        conn.execute("DELETE FROM originals")
    code, out, _ = _out(capsysbinary, ["original", ids[IPS], "--no-redact"])
    assert code == 0 and out == (folder / IPS).read_bytes()
    (folder / IPS).write_bytes((folder / IPS).read_bytes() + b"\n")
    code, _, err = _out(capsysbinary, ["original", ids[IPS]])
    assert code == 2 and "has changed since it was ingested" in err
    (folder / IPS).unlink()
    code, _, err = _out(capsysbinary, ["original", ids[IPS]])
    assert code == 2 and "cannot be read" in err and len(err.strip().splitlines()) == 1
