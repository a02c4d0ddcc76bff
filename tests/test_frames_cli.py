"""CLI: `triage frames` (file and stored incident) and `triage symbolicate` on a real dSYM."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from triage.cli import main
from triage.frames.symbolize import DsymIndex

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "fixtures" / "dsym"
INCIDENT = "11111111-2222-3333-4444-555555555555"


def _symbols() -> dict[str, int]:
    return {ln.split()[2]: int(ln.split()[0], 16)
            for ln in (FIXTURE / "libdemo.symbols.txt").read_text().splitlines()}


def _write_ips(path: Path, uuid: str, leb: bool = True) -> Path:
    syms = _symbols()
    hdr = {"bug_type": "309", "name": "democ", "incident_id": INCIDENT,
           "timestamp": "2026-09-18 08:24:04.00 +0000", "os_version": "macOS 26.0 (26A5353q)"}
    body = {
        "procName": "democ", "pid": 42, "incident": INCIDENT,
        "captureTime": "2026-09-18 08:24:00.4423 +0000",
        "osVersion": {"train": "macOS 26.0", "build": "26A5353q", "releaseType": "Beta"},
        "exception": {"type": "EXC_BAD_ACCESS", "signal": "SIGSEGV", "codes": "0x1, 0x0"},
        "faultingThread": 0,
        "threads": [{"id": 1, "triggered": True, "frames": [
            {"imageIndex": 0, "imageOffset": syms["__ZN4demo13outer_computeEi"] + 8},
            {"imageIndex": 0, "imageOffset": syms["__ZN4demo12_GLOBAL__N_113hidden_helperEi"] + 8},
            {"imageIndex": 1, "imageOffset": 4096,
             "symbol": "__91-[MPSGraphExecutable specializeWithDevice:]_block_invoke.246",
             "symbolLocation": 4},
            {"imageIndex": 7, "imageOffset": 12}]}],
        "lastExceptionBacktrace": [
            {"imageIndex": 1, "imageOffset": 64, "symbol": "objc_exception_throw",
             "symbolLocation": 8}],
        "usedImages": [
            {"base": 4294967296, "size": 20000, "uuid": uuid, "name": "libdemo.dylib",
             "arch": "arm64", "source": "P"},
            {"base": 5294967296, "size": 20000, "uuid": "22222222-5555-3144-a138-5a9be930f7b9",
             "name": "MPSGraph", "arch": "arm64e", "source": "P"}],
    }
    if not leb:
        del body["lastExceptionBacktrace"]
    path.write_text(json.dumps(hdr) + "\n" + json.dumps(body, indent=1), encoding="utf-8")
    return path


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_DB", str(tmp_path / "t.db"))
    monkeypatch.chdir(tmp_path)
    uuid = next(iter(DsymIndex.from_paths([FIXTURE]).files))
    return tmp_path, _write_ips(tmp_path / "democ.ips", uuid)


def _json(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_frames_on_a_file(env, capsys):
    _, ips = env
    rows = _json(capsys, ["frames", str(ips), "--format", "json"])
    assert [r["section"] for r in rows] == ["crashed thread 0"] * 4 + ["last exception"]
    assert rows[0]["normalized"].startswith("libdemo.dylib+0x")
    assert rows[2]["normalized"] == \
        "-[MPSGraphExecutable specializeWithDevice:]_block_invoke"
    assert rows[2]["rule"] == "block-length-prefix,block-dot-suffix"
    assert rows[3]["normalized"].startswith("???+0x") or rows[3]["module"] is None
    for key in ("raw_symbol", "module", "normalized", "inline", "rule", "function"):
        assert key in rows[0]


def test_frames_with_dsym_and_user_rules(env, capsys):
    tmp, ips = env
    user = tmp / "mine.toml"
    user.write_text('[[rule]]\nname = "mine"\nmatch = "^demo::"\nreplace = "D::"\n')
    rows = _json(capsys, ["--rules", str(user), "frames", str(ips), "--dsym", str(FIXTURE),
                          "-f", "json"])
    assert [(r["normalized"], r["inline"]) for r in rows[:3]] == [
        ("D::inner_step", True), ("D::outer_compute", False),
        ("D::(anonymous namespace)::hidden_helper", False)]
    assert rows[0]["rule"] == "cxx-strip-args,mine"


def test_frames_table_and_errors(env, capsys):
    _, ips = env
    assert main(["frames", str(ips)]) == 0
    text = capsys.readouterr().out
    assert "crashed thread 0" in text and "raw symbol" in text and "block-length-prefix" in text
    assert main(["frames", "no-such-incident"]) == 2
    assert "no such incident" in capsys.readouterr().err
    bad = ips.parent / "bad.toml"
    bad.write_text("[[rule]]\nname = 'x'\nmatch = '('\n")
    assert main(["--rules", str(bad), "frames", str(ips)]) == 2
    assert f"{bad}:1:" in capsys.readouterr().err


def test_symbolicate_stored_reports(env, capsys):
    tmp, ips = env
    _write_ips(ips, next(iter(DsymIndex.from_paths([FIXTURE]).files)), leb=False)
    assert main(["ingest", str(ips)]) == 0
    rows = _json(capsys, ["frames", INCIDENT[:8], "-f", "json"])
    assert rows[0]["normalized"].startswith("libdemo.dylib+0x")
    before = _json(capsys, ["incidents", "-f", "json"])[0]
    summary = _json(capsys, ["symbolicate", "--dsym", str(FIXTURE), "-f", "json"])
    assert summary["reports_changed"] == 1 and summary["frames_dsym"] == 3
    inc = _json(capsys, ["incidents", "-f", "json"])[0]
    assert [f["normalized"] for f in inc["frames"][:3]] == [
        "demo::inner_step", "demo::outer_compute", "demo::(anonymous namespace)::hidden_helper"]
    assert inc["frames"][1]["function"] == "demo::outer_compute(int)"
    assert inc["frames"][0]["inline"] is True
    if before.get("signature") is not None:  # the signature stage is installed
        assert "libdemo.dylib" in before["signature"] or "+0x" in before["signature"]
        assert "demo::" in inc["signature"], inc["signature"]
        assert summary["signatures_changed"] == 1
    # idempotent: a second run changes nothing
    again = _json(capsys, ["symbolicate", "--dsym", str(FIXTURE), "-f", "json"])
    assert again["signatures_changed"] == 0
    assert again["reports_changed"] == 0 and again["frames_dsym"] == 0     # QA: idempotent
    assert main(["symbolicate", "--dsym", str(tmp / "missing")]) == 2


def test_ingest_with_dsym_names_frames_and_teaches_peers(env, capsys):
    """--dsym at ingest parses every thread (not lazily), and what the dSYM names is learned as
    peer symbols, as frames symbolicated in the report itself are."""
    import sqlite3

    tmp, ips = env
    uuid = next(iter(DsymIndex.from_paths([FIXTURE]).files))
    _write_ips(ips, uuid, leb=False)
    assert main(["ingest", str(ips), "--dsym", str(FIXTURE)]) == 0
    inc = _json(capsys, ["incidents", "-f", "json"])[0]
    assert [f["normalized"] for f in inc["frames"][:2]] == ["demo::inner_step",
                                                            "demo::outer_compute"]
    conn = sqlite3.connect(tmp / "t.db")
    learned = {s for (s,) in conn.execute("SELECT symbol FROM symbol_map WHERE image_uuid=?",
                                          (uuid.lower(),))}
    assert any(s.startswith("demo::outer_compute") for s in learned), learned
    from triage.store.db import unpack

    detail = unpack(conn.execute("SELECT detail FROM incidents").fetchone()[0])
    assert "threads" in detail          # parsed in full: every thread was symbolicated
