"""Compile journal reading/writing (triage.context.journal)."""
from __future__ import annotations

import json
import multiprocessing as mp
import os

import pytest

from triage.context.journal import (append_record, config_of, parse_time, read_journal,
                                    read_sidecar, record_key)
from triage.errors import UserError

GOOD = {"schema": 1, "pid": 10, "process": "coreai-build",
        "started_at": "2026-09-18T08:24:00.442300+00:00", "ended_at": "2026-09-18T08:24:05Z",
        "argv": ["coreai-build", "compile", "m.mlpackage", "--preferred-compute", "gpu"],
        "cwd": "/src", "exit_code": 0, "model": "m.mlpackage", "encoding": None, "flags": {}}


def test_good_bad_and_unknown_keys(tmp_path):
    j = tmp_path / "j.jsonl"
    lines = [json.dumps({**GOOD, "my_key": {"kept": True}}), "{not json", "",
             json.dumps({"pid": 3}), json.dumps([1, 2]),
             json.dumps({**GOOD, "started_at": "2026-09-18T08:24:00"}),  # no zone
             json.dumps({**GOOD, "pid": "12"}), json.dumps({**GOOD, "schema": 99}),
             json.dumps({**GOOD, "pid": 11})]
    j.write_text("\n".join(lines) + "\n")
    recs, probs = read_journal(j)
    assert [r["pid"] for r in recs] == [10, 11]
    assert recs[0]["my_key"] == {"kept": True}
    where = [p.path for p in probs]
    assert where == [f"{j}:2", f"{j}:4", f"{j}:5", f"{j}:6", f"{j}:7", f"{j}:8"]
    reasons = " | ".join(p.reason for p in probs)
    assert "not JSON" in reasons and "missing required fields process, started_at, ended_at" \
        in reasons and "no UTC offset" in reasons and "newer" in reasons


def test_wrong_path_is_user_error(tmp_path):
    with pytest.raises(UserError, match="journal not found"):
        read_journal(tmp_path / "nope.jsonl")
    with pytest.raises(UserError, match="folder"):
        read_journal(tmp_path)


def test_times_and_key():
    assert parse_time("1970-01-01T00:00:10Z") == 10.0
    assert parse_time("1970-01-01T01:00:10+01:00") == 10.0
    assert parse_time(12) == 12.0
    with pytest.raises(ValueError):
        parse_time("yesterday")
    assert record_key({"a": 1, "b": 2}) == record_key({"b": 2, "a": 1})
    assert record_key({"a": 1}) != record_key({"a": 2})


def test_config_from_argv_and_compression():
    cfg = config_of({**GOOD, "flags": None,
                     "argv": GOOD["argv"] + ["--compression", "int4_linear_block32"]})
    assert cfg["flags.preferred_compute"] == "gpu"
    assert cfg["encoding.scheme"] == "linear" and cfg["encoding.dtype"] == "int4"
    assert cfg["encoding.granularity"] == "per_block"


def test_sidecar(tmp_path):
    s = tmp_path / "x.json"
    s.write_text(json.dumps({"process": "coreai-build", "flags": {"platform": "iOS"}}))
    rec, prob = read_sidecar(s)
    assert prob is None and rec["flags"]["platform"] == "iOS"
    s.write_text("garbage")
    rec, prob = read_sidecar(s)
    assert rec is None and "not JSON" in prob.reason


def _writer(path, n, tag):
    for i in range(n):
        append_record(path, {**GOOD, "pid": i, "tag": tag, "pad": "x" * 5000})


def test_concurrent_appends_never_interleave(tmp_path):
    j = tmp_path / "j.jsonl"
    procs = [mp.Process(target=_writer, args=(j, 50, t)) for t in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    recs, probs = read_journal(j)
    assert probs == [] and len(recs) == 200


def test_binary_or_text_file_is_one_problem_not_one_per_line(tmp_path):
    # regression: a binary file passed as --journal gave one "not JSON" line per "line"
    j = tmp_path / "junk.bin"
    j.write_bytes(b"\xff\xfe\x00junk\n" * 20 + b"\x80\x81")
    recs, probs = read_journal(j)
    assert recs == [] and len(probs) == 1
    assert probs[0].path == f"{j}:1" and "not a JSON Lines journal" in probs[0].reason
    j.write_text("hello\n" + json.dumps(GOOD) + "\nworld\n")       # a real journal: per line
    recs, probs = read_journal(j)
    assert len(recs) == 1 and [p.path for p in probs] == [f"{j}:1", f"{j}:3"]


def test_fifo_journal_is_refused(tmp_path):
    # regression: reading a FIFO journal (ingest --journal) blocked until a writer came
    from triage.context.journal import read_journal_incremental

    fifo = tmp_path / "j.jsonl"
    os.mkfifo(fifo)
    for read in (read_journal, lambda p: read_journal_incremental(p, None)):
        with pytest.raises(UserError, match="not a regular file"):
            read(fifo)
