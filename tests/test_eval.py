"""Quality harness: metrics with known answers, labels loading, siggen input, eval end to end."""
from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from triage.cli import main
from triage.errors import UserError
from triage.evaluate import bcubed, load_labels, mistakes, pairwise, score, select, siggen_crash_data

EVAL = Path(__file__).resolve().parents[1] / "fixtures" / "eval" / "labels.json"

# 4 items: predicted {a,b} {c,d}; truth {a,b,c} {d}
PRED = {"a": 1, "b": 1, "c": 2, "d": 2}
TRUTH = {"a": "X", "b": "X", "c": "X", "d": "Y"}


def test_pairwise_known_answer():
    # predicted pairs ab, cd; true pairs ab, ac, bc; shared: ab
    m = pairwise(PRED, TRUTH)
    assert m["precision"] == pytest.approx(1 / 2)
    assert m["recall"] == pytest.approx(1 / 3)
    assert m["f1"] == pytest.approx(0.4)


def test_bcubed_known_answer():
    # precision per item: a 1, b 1, c 1/2, d 1/2 -> 3/4; recall: a 2/3, b 2/3, c 1/3, d 1 -> 2/3
    m = bcubed(PRED, TRUTH)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(12 / 17)


def test_perfect_and_degenerate_clusterings():
    assert bcubed(TRUTH, TRUTH)["f1"] == pytest.approx(1.0)
    assert pairwise(TRUTH, TRUTH)["f1"] == pytest.approx(1.0)
    singletons = {k: k for k in TRUTH}
    assert bcubed(singletons, TRUTH)["precision"] == pytest.approx(1.0)
    assert bcubed(singletons, TRUTH)["recall"] == pytest.approx((1 / 3 * 3 + 1) / 4)
    one = {k: 0 for k in TRUTH}
    assert bcubed(one, TRUTH)["recall"] == pytest.approx(1.0)
    s = score(PRED, TRUTH)
    assert (s["clusters"], s["true_bugs"], s["reports"]) == (2, 2, 4)


def test_mistakes_lists_over_merge_and_over_split():
    m = mistakes(PRED, TRUTH)
    assert m["over_merged"] == [{"cluster": "2", "bugs": {"X": 1, "Y": 1}}]
    assert m["over_split"] == [{"bug": "X", "clusters": {"1": 2, "2": 1}}]


def test_labels_loading_and_split(tmp_path):
    p = tmp_path / "labels.json"
    p.write_text(json.dumps({"version": 1, "labels": {"a": "X", "b": "Y", "c": None},
                             "split": {"a": "tune", "b": "holdout"}}))
    labels, split_of = load_labels(p)
    assert labels == {"a": "X", "b": "Y"}
    assert select(labels, split_of, "holdout") == {"b": "Y"}
    assert select(labels, split_of, "all") == labels
    with pytest.raises(UserError):
        select(labels, split_of, "nope")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(UserError, match="bad.json"):
        load_labels(bad)
    with pytest.raises(UserError, match="not found"):
        load_labels(tmp_path / "missing.json")


def test_siggen_input_uses_raw_symbols_and_abort_message():
    row = {"frames": orjson.dumps([
        {"module": "libobjc.A.dylib", "raw_symbol": "objc_release", "symbol": "objc_release",
         "offset": 16, "symbolicated_by": "report"},
        {"module": "MPSGraph", "symbol": "GPU::x", "symbolicated_by": "peer", "offset": 32}]),
        "asi": orjson.dumps({"libsystem_c.dylib": ["Assertion failed: x"]}),
        "signal": "SIGABRT", "exception_type": "EXC_CRASH"}
    data = siggen_crash_data(row)
    frames = data["threads"][0]["frames"]
    assert frames[0]["function"] == "objc_release"
    assert "function" not in frames[1] and frames[1]["module_offset"] == "0x20"
    assert data["abort_message"] == "Assertion failed: x"
    from siggen.generator import SignatureGenerator

    assert SignatureGenerator().generate(data).signature.startswith("Abort | Assertion failed")


@pytest.mark.skipif(not EVAL.exists(), reason="fixtures/eval not generated")
def test_eval_holdout_meets_target_and_beats_siggen(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TRIAGE_DB", str(tmp_path / "unused.db"))
    assert main(["eval", str(EVAL), "--split", "holdout", "--format", "json"]) == 0
    res = orjson.loads(capsys.readouterr().out)
    for key in ("triage", "siggen"):
        for m in ("pairwise_precision", "pairwise_recall", "pairwise_f1", "bcubed_precision",
                  "bcubed_recall", "bcubed_f1", "clusters", "true_bugs"):
            assert m in res[key]
    assert res["triage"]["bcubed_f1"] >= 0.97
    assert res["triage"]["bcubed_f1"] > res["siggen"]["bcubed_f1"]
    assert not (tmp_path / "unused.db").exists()      # a temporary store, not the user's


def test_eval_cli_errors(tmp_path, capsys):
    assert main(["--db", str(tmp_path / "x.db"), "eval", str(tmp_path / "nope.json")]) == 2
    assert "not found" in capsys.readouterr().err
