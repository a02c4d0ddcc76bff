"""Weight-encoding detection on the committed model fixtures (triage.context.encoding)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from triage.context.encoding import encoding_from_compression, inspect_model
from triage.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "fixtures" / "models"
sys.path.insert(0, str(ROOT / "fixtures"))
from make_models import EXPECTED  # noqa: E402

def model_path(folder, name):
    (p,) = [p for p in folder.glob(name + ".*") if p.suffix in (".mlpackage", ".mlmodel")]
    return p


FIELDS = ("scheme", "nbits", "dtype", "granularity", "block_size", "group_size", "ops",
          "uncompressed_weights", "source")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_encodings(name):
    res = inspect_model(model_path(MODELS, name))
    enc = res["encoding"]
    assert "problem" not in res
    for f in FIELDS:
        assert f in enc
    assert enc["source"] == "model"
    for k, v in EXPECTED[name].items():
        assert enc[k] == v, (name, k, enc)


def test_fixtures_are_small():
    total = sum(f.stat().st_size for f in MODELS.rglob("*") if f.is_file())
    assert len(list(MODELS.glob("*.ml*"))) == len(EXPECTED)
    assert total < 60_000


def test_no_coremltools_init_import():
    code = ("import sys; from triage.context.encoding import inspect_model; "
            f"r = inspect_model({str(MODELS / 'int8_channel.mlpackage')!r}); "
            "assert r['encoding']['dtype'] == 'int8'; "
            "assert 'coremltools' not in sys.modules, 'coremltools package imported'; "
            "assert 'coremltools.optimize' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Failed to load" not in out.stderr and "scikit-learn" not in out.stderr


def test_corrupt_and_unreadable(tmp_path):
    bad = tmp_path / "bad.mlpackage"
    (bad / "Data" / "com.apple.CoreML").mkdir(parents=True)
    (bad / "Manifest.json").write_text("{nope")
    res = inspect_model(bad)
    assert res["encoding"] is None and "Manifest.json" in res["problem"]
    res = inspect_model(bad, {"compression": "int4_linear_block32"})
    assert res["encoding"]["source"] == "flags" and res["encoding"]["block_size"] == 32
    junk = tmp_path / "junk.mlmodel"
    junk.write_bytes(os.urandom(300))
    res = inspect_model(junk)
    assert res["encoding"] is None or res["encoding"]["scheme"] is None
    ai = tmp_path / "m.aimodel"
    ai.write_bytes(b"x")
    res = inspect_model(ai, {"compression": "4bit_weight_palettized_group32"})
    enc = res["encoding"]
    assert (enc["scheme"], enc["nbits"], enc["group_size"], enc["granularity"], enc["source"]) \
        == ("palettized", 4, 32, "per_grouped_channel", "flags")
    assert ".aimodel" in res["problem"]
    with pytest.raises(UserError):
        inspect_model(tmp_path / "missing.mlpackage")


GRAMMAR = [
    ("4bit_weight_palettized_group32", dict(scheme="palettized", nbits=4, group_size=32,
                                            granularity="per_grouped_channel", dtype="uint4")),
    ("int4_linear_block32", dict(scheme="linear", nbits=4, dtype="int4", block_size=32,
                                 granularity="per_block")),
    ("int8_linear_per_channel", dict(scheme="linear", dtype="int8", granularity="per_channel")),
    ("int8", dict(scheme="linear", nbits=8, dtype="int8")),
    ("uint4-per-tensor", dict(scheme="linear", dtype="uint4", granularity="per_tensor")),
    ("sparse50", dict(scheme="sparse", sparsity=0.5)),
    ("sparse+palettized4", dict(scheme="sparse+palettized", nbits=4)),
    ("lut6", dict(scheme="palettized", nbits=6)),
    ("fp16", dict(scheme="float16", dtype="float16")),
    ("W4A16", dict(nbits=4)),
]


@pytest.mark.parametrize("text,expected", GRAMMAR)
def test_compression_grammar(text, expected):
    enc = encoding_from_compression(text)
    assert enc["source"] == "flags"
    for k, v in expected.items():
        assert enc[k] == v, (text, k, enc)


def test_compression_grammar_unknown():
    assert encoding_from_compression("banana") is None
    assert encoding_from_compression("") is None


@pytest.mark.skipif(importlib.util.find_spec("coremltools") is None, reason="no coremltools")
def test_rebuild_fixtures_matches_committed(tmp_path):
    """Rebuild every fixture with coremltools (~5 s) and compare summaries semantically."""
    script = ROOT / "fixtures" / "make_models.py"
    env = {**os.environ, "TQDM_DISABLE": "1"}
    out = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in EXPECTED:
        new = inspect_model(model_path(tmp_path, name))["encoding"]
        old = inspect_model(model_path(MODELS, name))["encoding"]
        assert new == old, name


def test_truncated_spec_in_valid_package(tmp_path):
    import shutil

    pkg = tmp_path / "t.mlpackage"
    shutil.copytree(MODELS / "int8_channel.mlpackage", pkg)
    spec = pkg / "Data" / "com.apple.CoreML" / "model.mlmodel"
    spec.write_bytes(spec.read_bytes()[:57])
    res = inspect_model(pkg, {"compression": "int8_linear_per_channel"})
    assert res["encoding"]["source"] == "flags" and "unreadable model" in res["problem"]
    (pkg / "Manifest.json").write_text('{"rootModelIdentifier": "x", "itemInfoEntries": {}}')
    res = inspect_model(pkg)
    assert res["encoding"] is None and "Manifest.json" in res["problem"]
