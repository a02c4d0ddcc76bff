"""QA pass 3: linear-time text parsing and message masks on hostile input, an unreadable config
folder, OS errors as one line, readable short ids for content-hash incident ids."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from triage.reports.common import split_os_version
from triage.reports.text import parse_frame_line
from triage.signature import MESSAGE_INPUT_MAX, load_siglists, mask_message

from test_builds import _isolated_config  # noqa: F401 - used by _isolated
from test_qa_followups import REPORT, _isolated, run  # noqa: F401 - autouse: no config/store leaks

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ hostile text, linear time

# Each of these took seconds to minutes with the earlier backtracking patterns (cubic in the
# run of blanks); a linear parser gets through all of them at N=200,000 in about a second. The
# child process is given ten minutes: it only fails when parsing has gone super-linear again.
HOSTILE = r'''
import sys
from triage.reports.text import parse_text, parse_frame_line, parse_image_line
from triage.reports.common import split_os_version
from triage.records import Frame, Report, Thread
from triage.frames.normalize import load_rules, normalize_report
from triage.signature import compute_signature, load_siglists, mask_message
N = 200_000
sp, tb = " " * N, "\t" * N
frames = ["0" + sp + "x", "0" + tb + "x", "0" + sp + "x" + sp + "y", "0 a" + sp + "b",
          "0 m 0x1" + sp + "foo" + sp + "+ 1", "0 m 0x1 foo" + sp + "(" + "a" * N,
          "0 m 0x1 foo" + sp + "[inlined" + sp, "0 m 0x1 " + "a (b:1) " * (N // 8)]
header = ["Process:" + sp + "My App" + sp + "[1", "OS Version: macOS" + sp + "(" + "x" * N,
          "Thread 0" + sp + "x", "Thread 0 Crashed:" + sp + "q" + sp + "r", "Key: " + "x " * N]
images = ["0x1 - 0x2" + sp + "foo" + sp + "(1)" + sp, "0x1" + sp + "-" + sp + "x"]
for line in frames:
    parse_frame_line(line)
for line in images:
    parse_image_line(line, 0)
for line in header:
    split_os_version(line)
text = ("\n".join(header) + "\n\nThread 0 Crashed:\n" + "\n".join(frames)
        + "\n\nBinary Images:\n" + "\n".join(images) + "\n")
try:
    parse_text(text, "x", "s")
except Exception as exc:  # a ParseError is fine: only the time matters here
    print(type(exc).__name__)
rules, lists = load_rules([]), load_siglists([])
for s in ["a" + sp + "b", "f(" + sp, "+" + sp + "1", "-[A " + sp + "b:]", "a+" * N, "/" * N,
          "x" + "::y" * (N // 4) + sp]:
    fr = [Frame(module="m", symbol=s, raw_symbol=s, offset=1, symbolicated_by="report")]
    r = Report(incident_id="i", path="p", sha256="s", format="ips-json", kind="crash",
               crashing_thread=0, exception_type="EXC_CRASH", signal="SIGABRT",
               exception_message=s, threads=[Thread(index=0, triggered=True, frames=fr)])
    normalize_report(r, rules)
    compute_signature(r, lists)
    mask_message(s)
print("done")
'''


def test_hostile_lines_parse_in_linear_time():
    out = subprocess.run([sys.executable, "-c", HOSTILE], capture_output=True, text=True,
                         timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("done")


@pytest.mark.parametrize("line, module, addr, symbol, sym_off, inline, src", [
    ("0   libsystem_kernel.dylib  0x0000000189b3a5d0 __pthread_kill + 8",
     "libsystem_kernel.dylib", 0x189B3A5D0, "__pthread_kill", 8, False, None),
    ("3\tMy App\t0x1000 main + 12 (main.swift:7) [inlined]   ",
     "My App", 0x1000, "main", 12, True, ("main.swift", 7)),
    ("4   Foo   0x2000 f(int) + 4 (a:b:12:3)", "Foo", 0x2000, "f(int)", 4, False, ("a:b", 12)),
    ("5   Foo   0x2000 0x1000 + 4096", "Foo", 0x2000, None, None, False, None),
    ("6       0x1 foo", None, 0x1, "foo", None, False, None),
    ("7   ???   0x3000 ???", None, 0x3000, None, None, False, None),
    ("8   Foo   0x2000 a + b + 16", "Foo", 0x2000, "a + b", 16, False, None),
])
def test_frame_lines_read_as_before(line, module, addr, symbol, sym_off, inline, src):
    f = parse_frame_line(line)
    assert (f.module, f.address, f.symbol, f.symbol_offset, f.inline) == \
        (module, addr, symbol, sym_off, inline)
    assert (None if f.source_file is None else (f.source_file, f.source_line)) == src


@pytest.mark.parametrize("text, expected", [
    ("macOS 26.0 (26A5353q)", ("macOS 26.0", "26A5353q")),
    ("iPhone OS 17.1 (Build 21B74)", ("iPhone OS 17.1", "21B74")),
    ("macOS 14", ("macOS 14", None)), ("  (x)", (None, "x")), ("a (b) (c)", ("a (b)", "c")),
    ("a (b)c", ("a (b)c", None)), ("a (b(c))", ("a (b(c))", None)), ("a ()", ("a", None)),
])
def test_split_os_version(text, expected):
    assert split_os_version(text) == expected


def test_file_line_mask_and_long_messages():
    masks = load_siglists([]).masks
    assert mask_message("Assertion failed: x, file a.mm, line 412.", masks) == \
        "Assertion failed: x"
    assert mask_message("abc , file x.c, line 3", masks) == "abc"
    assert mask_message("abc   file x, line 3 tail", masks) == "abc tail"
    # only the head of a huge message is masked and kept
    assert mask_message("boom " * 100_000, masks) == mask_message(
        ("boom " * 100_000)[:MESSAGE_INPUT_MAX], masks)


# ------------------------------------------------------------------ environment errors

def test_unreadable_config_folder_is_one_line(capsys, monkeypatch, tmp_path):
    real = Path.is_file

    def is_file(self):
        if self.name == "triage.toml":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "is_file", is_file)
    code, _out, err = run(capsys, "--db", tmp_path / "t.db", "ingest", REPORT)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("triage: error: ") and "triage.toml: cannot read config: " \
        "Permission denied" in err


def test_os_error_from_the_machine_is_one_line(capsys, monkeypatch, tmp_path):
    def refuse(*_a, **_k):
        raise OSError(28, "No space left on device", str(tmp_path / "t.db"))

    monkeypatch.setattr("triage.ingest.run_ingest", refuse)
    code, _out, err = run(capsys, "--db", tmp_path / "t.db", "ingest", REPORT)
    assert code == 2 and "Traceback" not in err
    assert err == f"triage: error: {tmp_path / 't.db'}: No space left on device\n"


def test_content_hash_ids_show_apart_and_resolve(capsys, tmp_path):
    from triage.frames.stored import short_incident_id

    assert short_incident_id("sha256:0123456789abcdef") == "sha256:01234567"
    assert short_incident_id("4C2A9E0B-1111-2222") == "4C2A9E0B"
    reports = tmp_path / "r"
    reports.mkdir()
    for n in range(3):   # legacy text reports without an Incident Identifier get sha256: ids
        (reports / f"t{n}.crash").write_text(
            f"Process: X [{n + 1}]\nOS Version: macOS 14.5 (23F79)\n"
            "Exception Type: EXC_BAD_ACCESS (SIGSEGV)\n\nThread 0 Crashed:\n"
            f"0   libfoo.dylib   0x{4096 + n:x} foo + {n}\n")
    code, _out, err = run(capsys, "--db", tmp_path / "t.db", "ingest", reports)
    assert code == 0, err
    code, out, _err = run(capsys, "--db", tmp_path / "t.db", "incidents", "--format", "csv")
    ids = [line.split(",")[0] for line in out.splitlines()[1:]]
    assert len(ids) == 3 and all(i.startswith("sha256:") for i in ids)
    shorts = {short_incident_id(i) for i in ids}
    assert len(shorts) == 3
    code, out, _err = run(capsys, "--db", tmp_path / "t.db", "incidents")
    assert all(s in out for s in shorts), out
    for s in shorts:
        code, out, err = run(capsys, "--db", tmp_path / "t.db", "frames", s)
        assert code == 0, err


def test_ingest_refuses_the_store_as_journal(capsys, tmp_path):
    db = tmp_path / "t.db"
    code, _out, err = run(capsys, "--db", db, "ingest", REPORT)
    assert code == 0, err
    code, _out, err = run(capsys, "--db", db, "ingest", REPORT, "--journal", db)
    assert code == 2 and err.count("\n") == 1 and "not a compile journal" in err, err
