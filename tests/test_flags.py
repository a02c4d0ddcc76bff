"""Compile flag parsing (triage.context.flags)."""
from __future__ import annotations

import pytest

from triage.context.flags import find_model, parse_flags, split_tool

CASES = [
    (["coreai-build", "compile", "models/llama-int4.mlpackage", "--platform", "macOS",
      "--preferred-compute", "neural-engine", "--architecture", "h18p", "--output", "build/"],
     {"platform": "macOS", "preferred_compute": "neural-engine", "architecture": "h18p",
      "output": "build/", "compression": None}),
    (["python3.12", "-m", "coreai.llm.export", "--compression", "4bit_weight_palettized_group32",
      "--platform=iOS", "--output", "out.mlpackage"],
     {"compression": "4bit_weight_palettized_group32", "platform": "iOS",
      "output": "out.mlpackage"}),
    (["xcrun", "coremlcompiler", "compile", "m.mlpackage", "outdir", "--platform", "macos",
      "--deployment-target", "15.0"],
     {"platform": "macos", "deployment_target": "15.0", "output": "outdir"}),
    (["/usr/local/bin/coremlc", "compile", "a.mlmodel", "dest"], {"output": "dest"}),
    (["tool", "--computeUnits", "cpuAndNeuralEngine", "--verbose", "--arch=h16", "-o", "x",
      "--unknown-flag", "7", "--no-cache"],
     {"preferred_compute": "cpuAndNeuralEngine", "verbose": True, "architecture": "h16",
      "output": "x", "unknown_flag": "7", "cache": False}),
    (["tool", "--tag", "a", "--tag", "b"], {"tag": ["a", "b"]}),
    (["tool", "--shift", "-3", "--", "--not-a-flag"], {"shift": "-3"}),
    ([], {"platform": None}),
]


@pytest.mark.parametrize("argv,expected", CASES)
def test_parse_flags(argv, expected):
    got = parse_flags(argv)
    for k, v in expected.items():
        assert got.get(k) == v, (k, got)
    assert set(("platform", "preferred_compute", "architecture", "compression")) <= set(got)
    assert "not_a_flag" not in got


def test_split_tool():
    assert split_tool(["python3", "-u", "-m", "coreai.llm.export", "--x", "1"])[:2] == \
        ("coreai.llm.export", None)
    assert split_tool(["xcrun", "--sdk", "macosx", "coremlcompiler", "compile", "m.mlpackage"])[:2] \
        == ("coremlcompiler", "compile")
    assert split_tool(["coreai-build", "compile", "m.mlpackage"])[:2] == ("coreai-build", "compile")
    assert split_tool(["python", "export.py", "--a", "b"])[:2] == ("export.py", None)


def test_find_model():
    assert find_model(["x", "--in=a/b.mlmodel", "c.mlpackage"]) == "a/b.mlmodel"
    assert find_model(["x", "build/", "M.MLPACKAGE/"]) == "M.MLPACKAGE/"
    assert find_model(["x", "y.aimodel"]) == "y.aimodel"
    assert find_model(["x.mlpackage"]) is None   # argv[0] is the program


from hypothesis import given, settings, strategies as st  # noqa: E402

from triage.context.encoding import encoding_from_compression  # noqa: E402
from triage.context.journal import parse_journal_bytes  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=12))
def test_parse_flags_never_crashes(argv):
    flags = parse_flags(argv)
    assert isinstance(flags, dict) and "preferred_compute" in flags
    find_model(argv)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_compression_grammar_never_crashes(text):
    enc = encoding_from_compression(text)
    assert enc is None or enc["source"] == "flags"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_journal_bytes_never_crash(data):
    records, problems = parse_journal_bytes(data, "j.jsonl")
    assert all(isinstance(r, dict) for r in records)
    assert all(p.path.startswith("j.jsonl:") for p in problems)
