"""CLI: triage record / inspect / link / show (triage.commands.context)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
TRIAGE = [sys.executable, "-m", "triage.cli"]


def run(args, tmp_path, **kw):
    env = {**os.environ, "TRIAGE_DB": str(tmp_path / "store" / "t.db")}
    return subprocess.run(TRIAGE + args, capture_output=True, text=True, env=env,
                          cwd=kw.pop("cwd", tmp_path), **kw)


def journal(tmp_path):
    p = tmp_path / "store" / "journal.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def test_record_passthrough_and_exit_code(tmp_path):
    r = run(["record", "--", sys.executable, "-c",
             "import sys; print(sys.stdin.read().upper()); sys.stderr.write('E'); sys.exit(3)"],
            tmp_path, input="hello")
    assert r.returncode == 3 and r.stdout == "HELLO\n" and r.stderr == "E"
    (rec,) = journal(tmp_path)
    for k in ("schema", "pid", "process", "started_at", "ended_at", "argv", "cwd", "exit_code",
              "model", "encoding", "flags"):
        assert k in rec
    assert rec["exit_code"] == 3 and rec["schema"] == 1 and isinstance(rec["pid"], int)
    assert rec["started_at"].endswith("+00:00") and rec["cwd"] == str(tmp_path)


def test_record_model_flags_and_custom_journal(tmp_path):
    model = ROOT / "fixtures" / "models" / "int4_block32.mlpackage"
    j = tmp_path / "my.jsonl"
    r = run(["record", "--journal", str(j), "--", "true", "compile", str(model),
             "--preferred-compute", "neural-engine", "--platform", "macOS"], tmp_path)
    assert r.returncode == 0, r.stderr
    rec = json.loads(j.read_text())
    assert rec["model"] == str(model)
    assert rec["encoding"]["scheme"] == "linear" and rec["encoding"]["block_size"] == 32
    assert rec["encoding"]["source"] == "model"
    assert rec["flags"]["preferred_compute"] == "neural-engine"


def test_record_missing_command_127(tmp_path):
    r = run(["record", "--", "nosuchtool-xyz", "--a"], tmp_path)
    assert r.returncode == 127
    assert r.stderr.strip().count("\n") == 0 and "nosuchtool-xyz: command not found" in r.stderr
    (rec,) = journal(tmp_path)
    assert rec["exit_code"] == 127 and rec["pid"] is None and rec["process"] == "nosuchtool-xyz"
    r = run(["record"], tmp_path)
    assert r.returncode == 2 and "no command given" in r.stderr and "Traceback" not in r.stderr


def test_record_signal_death_and_forwarding(tmp_path):
    r = run(["record", "--", sys.executable, "-c",
             "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"], tmp_path)
    assert r.returncode == 128 + signal.SIGSEGV
    assert journal(tmp_path)[-1]["signal"] == signal.SIGSEGV
    marker = tmp_path / "started"
    env = {**os.environ, "TRIAGE_DB": str(tmp_path / "store" / "t.db")}
    child = ("import signal, sys, time, pathlib\n"
             "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
             f"pathlib.Path({str(marker)!r}).write_text('x')\n"
             "time.sleep(30)\n")
    p = subprocess.Popen(TRIAGE + ["record", "--", sys.executable, "-c", child], env=env,
                         cwd=tmp_path, stdin=subprocess.DEVNULL)
    for _ in range(300):
        if marker.exists():
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 42      # the child got SIGTERM and its status became ours
    assert journal(tmp_path)[-1]["exit_code"] == 42


def test_inspect_json_and_errors(tmp_path):
    r = run(["inspect", str(ROOT / "fixtures" / "models" / "sparse_palettized4.mlpackage"),
             "--format", "json"], tmp_path)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d) >= {"path", "encoding"}
    assert set(d["encoding"]) >= {"scheme", "nbits", "dtype", "granularity", "block_size",
                                  "group_size", "ops", "uncompressed_weights", "source"}
    assert d["encoding"]["scheme"] == "sparse+palettized"
    r = run(["inspect", str(ROOT / "fixtures" / "models" / "fp16.mlpackage")], tmp_path)
    assert r.returncode == 0 and "float16" in r.stdout
    bad = tmp_path / "bad.mlpackage"
    bad.mkdir()
    r = run(["inspect", str(bad)], tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("triage: error: ") and \
        "Traceback" not in r.stderr
    r = run(["inspect", str(tmp_path / "missing.mlmodel")], tmp_path)
    assert r.returncode == 2 and "not found" in r.stderr


def test_fifo_inputs_are_refused_not_opened(tmp_path):
    # regression: a FIFO as --journal / model / labels / --rules blocked forever on open()
    fifo = tmp_path / "p.jsonl"
    os.mkfifo(fifo)
    for args in (["link", "--journal", str(fifo)], ["inspect", str(fifo)],
                 ["eval", str(fifo)], ["record", "--journal", str(fifo), "--", "true"],
                 ["--rules", str(fifo), "recluster", "--dry-run"]):
        r = run(args, tmp_path, timeout=60)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr == f"triage: error: {fifo}: not a regular file (FIFO, socket or " \
            "device), not opened\n", args


def test_link_and_show_cli(tmp_path):
    from test_correlate import _store_with_data

    (tmp_path / "store").mkdir()
    st = _store_with_data(tmp_path / "store")
    st.close()
    env_db = ["--db", str(tmp_path / "store" / "t.db")]
    r = run(env_db + ["link", "--journal", str(tmp_path / "store" / "j.jsonl"),
                      "--format", "json"], tmp_path)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert set(s) >= {"records_loaded", "linked", "ambiguous", "unlinked", "problems"}
    r = run(env_db + ["link", "--journal", str(tmp_path / "nope.jsonl")], tmp_path)
    assert r.returncode == 2 and "journal not found" in r.stderr
    r = run(env_db + ["show", "C-ane", "--format", "json"], tmp_path)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["id"] == "C-ane" and d["correlations"] and "2/2 crashed" in d["finding"]
    r = run(env_db + ["show", "C-ane"], tmp_path)
    assert r.returncode == 0 and "finding:" in r.stdout and "configurations" in r.stdout
    r = run(env_db + ["show", "C-zzz"], tmp_path)
    assert r.returncode == 2 and "no such cluster" in r.stderr
    # regression: -f works like on every other command; link_notes is always in the JSON
    for args in (["show", "C-ane"], ["link"]):
        r = run(env_db + args + ["-f", "json"], tmp_path)
        assert r.returncode == 0, r.stderr
    assert isinstance(json.loads(run(env_db + ["show", "C-ane", "-f", "json"],
                                     tmp_path).stdout)["link_notes"], list)


def test_light_commands_do_not_import_heavy_modules(tmp_path):
    code = ("import sys; from triage.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "import triage.context.link, triage.context.views, triage.context.record\n"
            "heavy = [m for m in ('coremltools', 'coremltools.proto', 'pandas', 'sklearn', "
            "'scipy') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_record_forwards_sigint_when_not_from_a_terminal(tmp_path):
    marker = tmp_path / "started"
    env = {**os.environ, "TRIAGE_DB": str(tmp_path / "store" / "t.db")}
    child = ("import signal, sys, time, pathlib\n"
             "signal.signal(signal.SIGINT, lambda *a: sys.exit(43))\n"
             f"pathlib.Path({str(marker)!r}).write_text('x')\n"
             "time.sleep(30)\n")
    p = subprocess.Popen(TRIAGE + ["record", "--", sys.executable, "-c", child], env=env,
                         cwd=tmp_path, stdin=subprocess.DEVNULL)
    for _ in range(300):
        if marker.exists():
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=20) == 43
    assert journal(tmp_path)[-1]["exit_code"] == 43
