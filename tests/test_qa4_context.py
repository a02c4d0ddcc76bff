"""QA round 4 (context and frames): regressions for the reported bugs and minor items."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from triage.cli import main
from triage.context.flags import parse_flags
from triage.context.journal import validate_record
from triage.context.link import META_KNOWN, link_pending, relink_all
from triage.store.db import Store

from test_link import T0, iso, linkmap as links, store  # noqa: F401 - store: a fixture

ROOT = Path(__file__).resolve().parents[1]
TRIAGE = [sys.executable, "-m", "triage.cli"]
def rec(pid, start, end, process="coreai-build", **kw):
    r = {"schema": 1, "pid": pid, "process": process, "started_at": iso(T0 + start),
         "ended_at": iso(T0 + end), "argv": [process, "compile", "m.mlpackage"],
         "exit_code": 139}
    r.update(kw)
    return r


def inc(store, iid, pid, at, process="coreai-build", parent=None, parent_proc=None):
    store.conn.execute(
        "INSERT INTO incidents(incident_id, path, sha256, kind, process, pid, parent_pid, "
        "parent_process, captured_ts, cluster_id, ingested_at) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
        (iid, f"/reports/{iid}.ips", "sha-" + iid, "crash", process, pid, parent, parent_proc,
         T0 + at, "C-1", "now"))


def write(path: Path, records, mode="w") -> Path:
    with open(path, mode) as fh:
        fh.write("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def run(args, tmp_path, **kw):
    env = {**os.environ, "TRIAGE_DB": str(tmp_path / "store" / "t.db")}
    return subprocess.run(TRIAGE + args, capture_output=True, text=True, env=env,
                          cwd=kw.pop("cwd", tmp_path), **kw)


# ---------------------------------------------------------------- 1. link --relink summary

def test_relink_reports_what_it_linked_and_found_ambiguous(store, tmp_path):
    inc(store, "a", 100, 10)
    inc(store, "b", 200, 10)
    inc(store, "c", 300, 10)
    j = write(tmp_path / "j.jsonl", [rec(100, 0, 20), rec(200, 0, 20), rec(300, 0, 20),
                                     rec(300, 1, 19, argv=["coreai-build", "x"])])
    s = link_pending(store, [j], [])
    assert s["linked"] == 2 and s["ambiguous"] == 1
    s = relink_all(store)
    # the bug: --relink ran a first call that linked everything and reported a second, empty one
    assert s["linked"] == 2 and s["ambiguous"] == 1 and s["changed"] == 0
    assert [a["incident_id"] for a in s["ambiguities"]] == ["c"]
    assert links(store)["a"][0] is not None and links(store)["c"][0] is None


def test_relink_cli_summary_and_stderr(tmp_path, store):
    inc(store, "a", 100, 10)
    inc(store, "c", 300, 10)
    store.close()
    j = write(tmp_path / "j.jsonl", [rec(100, 0, 20), rec(300, 0, 20),
                                     rec(300, 1, 19, argv=["coreai-build", "x"])])
    db = str(tmp_path / "db" / "t.db")
    assert subprocess.run(TRIAGE + ["--db", db, "link", "--journal", str(j)],
                          capture_output=True).returncode == 0
    r = subprocess.run(TRIAGE + ["--db", db, "link", "--relink", "-f", "json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["linked"] == 1 and s["ambiguous"] == 1 and len(s["ambiguities"]) == 1
    assert "ambiguous: 2 compiles match by pid and time" in r.stderr


def test_new_record_makes_an_existing_link_ambiguous(store, tmp_path):
    inc(store, "a", 1001, 10)
    j = write(tmp_path / "j.jsonl", [rec(1001, 0, 20)])
    assert link_pending(store, [j], [])["linked"] == 1
    first = links(store)["a"][0]
    write(j, [rec(1001, 5, 30, argv=["coreai-build", "again"])], mode="a")
    s = link_pending(store, [j], [])
    # the bug: the old link was kept silently
    assert s["records_loaded"] == 1 and s["ambiguous"] == 1 and s["changed"] == 1
    (amb,) = s["ambiguities"]
    assert amb["incident_id"] == "a" and amb["linked_before"] == first
    assert links(store)["a"] == (None, amb["reason"])
    assert link_pending(store, [j], [])["ambiguous"] == 0     # nothing new: not re-examined


def test_new_record_does_not_disturb_an_unambiguous_link(store, tmp_path):
    inc(store, "a", 1001, 10)
    j = write(tmp_path / "j.jsonl", [rec(1001, 0, 20)])
    link_pending(store, [j], [])
    before = links(store)["a"]
    write(j, [rec(1001, 100, 120)], mode="a")               # same pid, other time
    s = link_pending(store, [j], [])
    assert s["changed"] == 0 and s["ambiguous"] == 0 and links(store)["a"] == before


def test_new_parent_pid_record_does_not_override_a_direct_ambiguity(store, tmp_path):
    inc(store, "a", 500, 10, process="coremlcompiler", parent=600, parent_proc="xcrun")
    j = write(tmp_path / "j.jsonl", [rec(500, 0, 20, process="coremlcompiler"),
                                     rec(500, 1, 19, process="coremlcompiler", argv=["x"])])
    assert link_pending(store, [j], [])["ambiguous"] == 1
    write(j, [rec(600, 0, 20, process="xcrun")], mode="a")
    s = link_pending(store, [j], [])
    # the pid tier (ambiguous) stays more direct than the new parent-pid record
    assert s["linked"] == 0 and links(store)["a"][0] is None


# ---------------------------------------------------------------- 3. empty process name

def test_empty_process_is_a_problem_and_never_links(store, tmp_path):
    inc(store, "a", 1001, 10, process="python3.12")
    j = write(tmp_path / "j.jsonl", [rec(1001, 0, 20, process="")])
    s = link_pending(store, [j], [])
    assert s["linked"] == 0 and s["records_loaded"] == 0
    assert [p["reason"] for p in s["problems"]] == [
        "process is empty (a record with a pid needs the process name to link)"]
    assert validate_record(rec(1001, 0, 20, process="  ")) is not None
    # a command that never started (pid null, `triage record -- ''`) links nothing: accepted
    assert validate_record(rec(None, 0, 1, process="")) is None


def test_huge_pid_or_exit_code_is_a_bad_line_not_a_crash(store, tmp_path):
    """A pid SQLite cannot hold is a bad line; the other records still load and link; an
    exit code beyond 64 bits stays in the raw record only."""
    inc(store, "a", 1001, 10)
    big = rec(2**63, 0, 20)
    odd = rec(1001, 0, 20, exit_code=2**63)
    j = write(tmp_path / "j.jsonl", [big, odd])
    s = link_pending(store, [j], [])
    assert [p["reason"] for p in s["problems"]] == [f"pid out of range: {2**63}"]
    assert s["records_loaded"] == 1 and s["linked"] == 1
    code, raw = store.conn.execute("SELECT exit_code, raw FROM compiles").fetchone()
    assert code is None and str(2**63) in raw


# ---------------------------------------------------------------- 4. store / garbage as journal

def test_store_is_never_read_as_a_journal(store, tmp_path):
    inc(store, "a", 1, 10)
    s = link_pending(store, [Path(store.path)], [])
    assert [p["reason"].split(" (")[0] for p in s["problems"]] == ["is the triage store itself"]
    assert s["journals"] == []
    known = store.conn.execute("SELECT value FROM meta WHERE key=?", (META_KNOWN,)).fetchone()
    assert not known or str(store.path) not in known[0]
    assert link_pending(store, [], [])["problems"] == []     # not re-read later


def test_link_cli_refuses_the_store_as_journal(tmp_path):
    db = tmp_path / "s.db"
    Store.open(db).close()
    for target in (db, Path(f"{db}-wal")):
        if not target.exists():
            target.write_bytes(b"")
        r = subprocess.run(TRIAGE + ["--db", str(db), "link", "--journal", str(target)],
                           capture_output=True, text=True)
        assert r.returncode == 2 and "triage store" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_garbage_journal_is_not_remembered(store, tmp_path):
    inc(store, "a", 100, 10)
    junk = tmp_path / "rnd.bin"
    junk.write_bytes(bytes(range(256)) * 8)
    s = link_pending(store, [junk], [])
    assert len(s["problems"]) == 1 and "not a JSON Lines journal" in s["problems"][0]["reason"]
    s = link_pending(store, [], [])
    assert s["problems"] == [] and str(junk) not in s["journals"]      # forgotten
    # named again: reported again (not silently skipped as "already read")
    assert len(link_pending(store, [junk], [])["problems"]) == 1
    # an empty journal (a pipeline will append to it) and a useful one are remembered
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    good = write(tmp_path / "good.jsonl", ["{bad", rec(100, 0, 20)])
    link_pending(store, [empty, good], [])
    s = link_pending(store, [], [])
    assert {str(empty), str(good)} <= set(s["journals"])


# ---------------------------------------------------------------- 5. non-ASCII flag names

def test_non_ascii_flag_names_are_kept():
    f = parse_flags(["true", "compile", "--名前", "値", "--設定", "x", "--Ωmega", "1",
                     "--+++", "v", "--preferredCompute", "ane"])
    assert f["名前"] == "値" and f["設定"] == "x" and f["ωmega"] == "1" and f["+++"] == "v"
    assert f["preferred_compute"] == "ane" and "" not in f and "mega" not in f


# ---------------------------------------------------------------- 6. bare Mach-O after a dSYM

def test_bare_macho_does_not_downgrade_dsym_frames(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_frames_cli import FIXTURE, _write_ips

    from triage.frames.symbolize import DsymIndex

    monkeypatch.setenv("TRIAGE_DB", str(tmp_path / "t.db"))
    uuid = next(iter(DsymIndex.from_paths([FIXTURE]).files))
    ips = _write_ips(tmp_path / "democ.ips", uuid, leb=False)
    assert main(["ingest", str(ips)]) == 0
    assert main(["symbolicate", "--dsym", str(FIXTURE)]) == 0
    capsys.readouterr()
    assert main(["incidents", "-f", "json"]) == 0
    before = json.loads(capsys.readouterr().out)[0]
    assert before["frames"][0]["inline"] is True
    assert main(["symbolicate", "--dsym", str(FIXTURE / "libdemo.dylib"), "-f", "json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["signatures_changed"] == 0 and s["reports_changed"] == 0
    assert main(["incidents", "-f", "json"]) == 0
    after = json.loads(capsys.readouterr().out)[0]
    assert after["frames"] == before["frames"] and after["signature"] == before["signature"]


# ---------------------------------------------------------------- 2. record: signals once

COUNTER = ("import signal,time,sys\nn=[0]\ndef h(s,f): n[0]+=1\n"
           "signal.signal(signal.SIGTERM,h)\nsignal.signal(signal.SIGINT,h)\n"
           "print('ready',flush=True)\n"
           "for i in range(25): time.sleep(0.1)\nprint('got',n[0]); sys.exit(5)")


def _start_recorded(tmp_path, **kw):
    env = {**os.environ, "TRIAGE_DB": str(tmp_path / "store" / "t.db")}
    p = subprocess.Popen(TRIAGE + ["record", "--", sys.executable, "-c", COUNTER],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         stdin=subprocess.DEVNULL, cwd=tmp_path, **kw)
    assert p.stdout.readline().strip() == "ready"
    return p


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_group_signal_reaches_the_child_once(tmp_path, sig):
    p = _start_recorded(tmp_path, start_new_session=True)
    os.killpg(p.pid, sig)                       # CI cancellation, `kill -- -PGID`
    out, err = p.communicate(timeout=30)
    assert "got 1" in out, (out, err)           # was 2: the group's signal plus ours
    assert p.returncode == 5 and err == ""


def test_timeout_style_double_delivery_reaches_the_child_once(tmp_path):
    p = _start_recorded(tmp_path, start_new_session=True)
    os.kill(p.pid, signal.SIGTERM)              # `timeout`: to its child, then to its group
    os.killpg(p.pid, signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert "got 1" in out, (out, err)


def test_direct_signal_is_still_forwarded(tmp_path):
    p = _start_recorded(tmp_path, start_new_session=True)
    os.kill(p.pid, signal.SIGTERM)
    out, _ = p.communicate(timeout=30)
    assert "got 1" in out


def test_group_sigkill_ends_the_compile_too(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    env = {**os.environ, "TRIAGE_DB": str(tmp_path / "store" / "t.db")}
    p = subprocess.Popen(TRIAGE + ["record", "--", "sleep", "30"], env=env, cwd=tmp_path,
                         start_new_session=True, stdin=subprocess.DEVNULL)
    deadline = time.time() + 20
    kids: list[str] = []
    while not kids and time.time() < deadline:
        time.sleep(0.1)
        kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                              text=True).stdout.split()
    assert kids
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    time.sleep(0.5)

    def alive(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            return False
    assert not any(alive(k) for k in kids)


def _record_in_a_terminal(tmp_path, code: str, pause: float = 0.0) -> tuple[str, int]:
    """Run ``triage record -- python -c CODE`` on a pseudo-terminal, type Ctrl-C once the
    child printed "ready" (after ``pause`` seconds); (terminal output, exit status)."""
    import pty
    import select

    env = {**os.environ, "TRIAGE_DB": str(tmp_path / "store" / "t.db")}
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - child
        os.chdir(tmp_path)
        os.execve(sys.executable, [sys.executable, "-m", "triage.cli", "record", "--",
                                   sys.executable, "-c", code], env)
    out = b""
    sent = False
    deadline = time.time() + 30
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                d = os.read(fd, 1000)
            except OSError:
                break
            if not d:
                break
            out += d
        if not sent and b"ready" in out:
            time.sleep(pause)
            os.write(fd, b"\x03")
            sent = True
    _, st = os.waitpid(pid, 0)
    return out.decode(errors="replace"), os.waitstatus_to_exitcode(st)


def test_ctrl_c_from_a_terminal_once_and_quiet(tmp_path):
    text, code = _record_in_a_terminal(tmp_path, COUNTER)
    assert "got 1" in text, text
    assert "interrupted" not in text and code == 5


def test_ctrl_c_killed_child_passes_130_quietly(tmp_path):
    text, code = _record_in_a_terminal(
        tmp_path, "import time;print('ready',flush=True);time.sleep(20)", pause=0.2)
    assert code == 130
    assert "interrupted" not in text and "re-run" not in text, text


# ---------------------------------------------------------------- minor items

def test_record_empty_command_is_127(tmp_path):
    r = run(["record", "--", ""], tmp_path)
    assert r.returncode == 127 and "command not found" in r.stderr
    line = (tmp_path / "store" / "journal.jsonl").read_text().splitlines()[-1]
    assert validate_record(json.loads(line)) is None       # the record it wrote reads back


def test_inspect_says_when_compression_is_not_understood(tmp_path, capsys):
    m = tmp_path / "m.aimodel"
    m.write_bytes(b"x")
    assert main(["inspect", str(m), "--compression", "banana"]) == 2
    err = capsys.readouterr().err
    assert "'banana' not understood" in err and "taken from flags" not in err
    assert main(["inspect", str(m)]) == 2
    assert "--compression" in capsys.readouterr().err
    assert main(["inspect", str(m), "--compression", "int4_block32", "-f", "json"]) == 0
    assert "taken from flags" in capsys.readouterr().err


def test_rule_disable_must_be_a_boolean(tmp_path):
    from triage.errors import UserError
    from triage.frames.normalize import load_rules

    f = tmp_path / "r.toml"
    f.write_text('[[rule]]\nname = "x"\ndisable = "yes"\n')
    with pytest.raises(UserError, match="'disable' must be true or false"):
        load_rules([f])
    f.write_text('[[rule]]\nname = "strip-in-module"\ndisable = true\n')
    assert "strip-in-module" not in {r.name for r in load_rules([f]).rules}


def test_garbage_journal_remembered_by_an_older_triage_is_forgotten(store, tmp_path):
    junk = tmp_path / "rnd.bin"
    junk.write_bytes(bytes(range(256)) * 8)
    st = junk.stat()
    legacy = {"ino": [st.st_dev, st.st_ino], "offset": st.st_size, "line": 1, "tail": None,
              "head": __import__("hashlib").sha256(junk.read_bytes()[:4096]).hexdigest()}
    store.conn.execute("INSERT INTO meta(key, value) VALUES(?, ?)",
                       (f"context.journal:{junk}", json.dumps(legacy)))
    store.conn.execute("INSERT INTO meta(key, value) VALUES(?, ?)",
                       (META_KNOWN, json.dumps([str(junk)])))
    s = link_pending(store, [], [])
    assert len(s["problems"]) == 1          # read once more from the start, reported, dropped
    assert str(junk) not in link_pending(store, [], [])["journals"]
