"""Weight-encoding detection for Core ML models, without running them (works on Linux).

``inspect_model(path)`` reads ``.mlpackage`` (Manifest.json -> rootModelIdentifier -> spec) and
``.mlmodel`` files with coremltools' generated protobuf modules, imported WITHOUT running
``coremltools/__init__`` (~3 s, noisy): a placeholder ``coremltools`` package module whose
``__path__`` is the real package folder is put in ``sys.modules`` just long enough to import
``coremltools.proto.Model_pb2`` (~0.1 s), then removed so a later real ``import coremltools``
still works.

``encoding_from_compression(text)`` is the small grammar used when the model cannot be read
(``.aimodel``, corrupt packages): ``4bit_weight_palettized_group32``, ``int4_linear_block32``,
``int8_linear_per_channel``, ``sparse50``, ``fp16``... Every summary carries ``source``:
``"model"`` or ``"flags"``.

Encoding summary fields (see docs/context.md): ``scheme``, ``nbits``, ``dtype``, ``granularity``,
``block_size``, ``group_size``, ``ops``, ``uncompressed_weights``, ``source`` plus extras
(``compressed_weights``, ``lut_dtype``, ``sparsity``, ``asymmetric``, ``opset``, ``notes``).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
import sys
import types
from pathlib import Path
from typing import Any

import orjson

from triage.errors import UserError, refuse_special_file

UNCOMPRESSED_MIN_ELEMENTS = 10   # coremltools never stores (so never compresses) smaller consts
SCHEME_ORDER = ("sparse", "palettized", "linear")

_PB = None


def _proto():
    """(Model_pb2, MIL_pb2) without running coremltools/__init__."""
    global _PB
    if _PB is not None:
        return _PB
    if "coremltools.proto.Model_pb2" in sys.modules:
        _PB = (sys.modules["coremltools.proto.Model_pb2"], sys.modules["coremltools.proto.MIL_pb2"])
        return _PB
    if "coremltools" in sys.modules:  # the real package is already imported: just use it
        from coremltools.proto import MIL_pb2, Model_pb2  # type: ignore

        _PB = (Model_pb2, MIL_pb2)
        return _PB
    spec = importlib.util.find_spec("coremltools")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("coremltools is not installed: cannot read Core ML models")
    placeholder = types.ModuleType("coremltools")
    placeholder.__path__ = list(spec.submodule_search_locations)
    placeholder.__spec__ = spec
    sys.modules["coremltools"] = placeholder
    try:
        import os

        old = os.environ.get("IMPORT_COREMLTOOLS_PROTO")
        os.environ["IMPORT_COREMLTOOLS_PROTO"] = "0"   # keep proto/__init__ light too
        try:
            model_pb2 = importlib.import_module("coremltools.proto.Model_pb2")
            mil_pb2 = importlib.import_module("coremltools.proto.MIL_pb2")
        finally:
            if old is None:
                os.environ.pop("IMPORT_COREMLTOOLS_PROTO", None)
            else:
                os.environ["IMPORT_COREMLTOOLS_PROTO"] = old
    finally:
        if sys.modules.get("coremltools") is placeholder:
            del sys.modules["coremltools"]
    _PB = (model_pb2, mil_pb2)
    return _PB


# ---------------------------------------------------------------------------- flags grammar

def encoding_from_compression(text: str | None) -> dict[str, Any] | None:
    """Encoding facts from a ``--compression`` value (source ``"flags"``); None if unrecognised.

    Grammar (tokens split on ``_``/``-``/``,``/``+``, case-insensitive, any order):
    scheme words ``palettiz*``/``lut``/``kmeans`` -> palettized, ``linear``/``quant*``/``affine``/
    ``blockwise``/``int<N>``/``uint<N>`` -> linear, ``sparse*``/``prun*`` -> sparse,
    ``fp16``/``float16``/``half``/``none`` -> float16; bits ``<N>bit(s)``, ``int<N>``/``uint<N>``
    (also the dtype), ``lut<N>``/``palettize<N>``, ``w<N>``; ``group<N>``/``g<N>`` -> per_grouped_channel
    with group_size N; ``block<N>``/``b<N>`` -> per_block with block_size N; ``per_channel``,
    ``per_tensor``, ``per_block``, ``grouped``; ``sparse<N>`` -> sparsity N %.
    """
    if not text or not isinstance(text, str):
        return None
    s = text.strip().lower()
    s2 = re.sub(r"per[_-]?grouped[_-]?channel", " pergroupedchannel ", s)
    s2 = re.sub(r"per[_-]?(channel|tensor|block)", r" per\1 ", s2)
    toks = [t for t in re.split(r"[\s_,+:/-]+", s2) if t]
    schemes: list[str] = []
    enc: dict[str, Any] = {"scheme": None, "nbits": None, "dtype": None, "granularity": None,
                           "block_size": None, "group_size": None, "ops": {},
                           "uncompressed_weights": None, "source": "flags",
                           # the same keys as a model read (``_empty``); counts are unknown
                           "compressed_weights": None, "notes": []}

    def scheme(name):
        if name not in schemes:
            schemes.append(name)

    recognised = False
    for t in toks:
        m = None
        if t in ("pergroupedchannel", "perchannel", "pertensor", "perblock"):
            enc["granularity"] = {"pergroupedchannel": "per_grouped_channel"}.get(
                t, "per_" + t[3:])
        elif t in ("grouped", "group"):
            enc["granularity"] = "per_grouped_channel"
        elif re.fullmatch(r"palett?i[sz][a-z]*|lut|kmeans|palette", t):
            scheme("palettized")
        elif (m := re.fullmatch(r"(?:palett?i[sz]e?d?|lut|palette)(\d+)", t)):
            scheme("palettized")
            enc["nbits"] = int(m.group(1))
        elif re.fullmatch(r"linear|quant[a-z]*|affine|blockwise|symmetric|asymmetric", t):
            scheme("linear")
            if t == "asymmetric":
                enc["asymmetric"] = True
        elif (m := re.fullmatch(r"(u?int)(\d+)", t)):
            enc["dtype"] = f"{m.group(1)}{m.group(2)}"
            enc["nbits"] = enc["nbits"] or int(m.group(2))
        elif (m := re.fullmatch(r"(\d+)bits?", t)) or (m := re.fullmatch(r"w(\d+)(?:a\d+)?", t)):
            enc["nbits"] = int(m.group(1))
        elif re.fullmatch(r"sparse|sparsity|prun[a-z]*|sparsified", t):
            scheme("sparse")
        elif (m := re.fullmatch(r"(?:sparse|sparsity|pruned?)(\d+)", t)):
            scheme("sparse")
            enc["sparsity"] = int(m.group(1)) / 100
        elif re.fullmatch(r"fp16|float16|half|f16|none|fp32|float32", t):
            scheme("float32" if t in ("fp32", "float32") else "float16")
            enc["dtype"] = "float32" if t in ("fp32", "float32") else "float16"
        elif (m := re.fullmatch(r"(?:group|g|gs)(\d+)", t)):
            enc["granularity"] = "per_grouped_channel"
            enc["group_size"] = int(m.group(1))
        elif (m := re.fullmatch(r"(?:block|b|bs)(\d+)", t)):
            enc["granularity"] = "per_block"
            enc["block_size"] = int(m.group(1))
        elif t in ("weight", "weights", "w", "compression", "mode", "and", "with"):
            continue
        else:
            enc["notes"].append(f"unrecognised token {t!r}")
            continue
        recognised = True
    if not recognised:
        return None
    if enc["dtype"] and not schemes and not enc["dtype"].startswith("float"):
        scheme("linear")
    if not schemes:
        if enc["nbits"]:
            enc["notes"].append("bits without a scheme")
        else:
            return None
    enc["scheme"] = _join_schemes(schemes)
    if enc["scheme"] == "palettized" and enc["nbits"] and not enc["dtype"]:
        enc["dtype"] = f"uint{enc['nbits']}"
    if "linear" in schemes and enc["nbits"] and not enc["dtype"]:
        enc["dtype"] = f"int{enc['nbits']}"
    if enc["granularity"] is None and enc["scheme"] not in ("float16", "float32", "sparse"):
        enc["granularity"] = None  # unknown: flags did not say
    if not enc["notes"]:
        del enc["notes"]
    return enc


def _join_schemes(schemes: list[str]) -> str | None:
    if not schemes:
        return None
    if len(schemes) == 1:
        return schemes[0]
    order = {s: i for i, s in enumerate(SCHEME_ORDER)}
    return "+".join(sorted(schemes, key=lambda s: order.get(s, 99)))


# ---------------------------------------------------------------------------- model reading

def _spec_path(path: Path) -> Path:
    """The protobuf spec file of a package (through Manifest.json) or the .mlmodel itself."""
    if path.is_dir():
        manifest = path / "Manifest.json"
        if not manifest.is_file():
            raise ValueError("no Manifest.json (not an .mlpackage)")
        try:
            m = orjson.loads(manifest.read_bytes())
            root = m["rootModelIdentifier"]
            entry = m["itemInfoEntries"][root]
            rel = entry["path"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"Manifest.json unusable ({type(exc).__name__}: {exc})")
        spec = path / "Data" / rel
        if not spec.is_file():
            raise ValueError(f"spec {rel} named by Manifest.json is missing")
        return spec
    return path


def load_spec(path: Path):
    model_pb2, _ = _proto()
    data = _spec_path(path).read_bytes()
    spec = model_pb2.Model()
    try:
        spec.ParseFromString(data)
    except Exception as exc:  # google.protobuf.message.DecodeError and friends
        raise ValueError(f"not a Core ML model spec ({type(exc).__name__}: {exc})")
    if spec.WhichOneof("Type") is None and spec.specificationVersion == 0:
        raise ValueError("not a Core ML model spec (empty)")
    return spec


def inspect_model(path: str | Path, flags: dict | None = None) -> dict[str, Any]:
    """``{"path", "encoding": {...}, "problem"?}`` for a model file.

    Unreadable models fall back to ``flags["compression"]`` (source ``"flags"``); the reason is
    in ``problem``. Never raises for a bad model file (a missing path raises UserError)."""
    p = Path(path).expanduser()
    result: dict[str, Any] = {"path": str(p), "encoding": None}
    if not p.exists():
        raise UserError(f"{p}: model not found")
    refuse_special_file(p)
    problem = None
    if p.suffix.lower() == ".aimodel":
        problem = "format .aimodel cannot be read"
    else:
        try:
            spec = load_spec(p)
        except (ValueError, OSError) as exc:
            problem = f"unreadable model: {exc}"
        else:
            try:
                result["encoding"] = summarize_spec(spec)
                return result
            except RecursionError:
                problem = "model too deeply nested to analyse"
            except Exception as exc:  # noqa: BLE001 - a spec shape we did not foresee
                problem = f"could not analyse model: {type(exc).__name__}: {exc}"
    comp = (flags or {}).get("compression")
    result["encoding"] = encoding_from_compression(comp) if isinstance(comp, str) else None
    if result["encoding"] is not None:
        problem = (problem or "model not read") + "; encoding taken from flags"
    elif isinstance(comp, str):
        problem = (problem or "model not read") + (
            f"; compression {comp!r} not understood either (no scheme, bits or dtype "
            "recognised; see docs/context.md, Encodings)")
    result["problem"] = problem
    return result


def summarize_spec(spec) -> dict[str, Any]:
    _, mil_pb2 = _proto()
    kind = spec.WhichOneof("Type")
    if kind == "mlProgram":
        return _summarize_program(spec.mlProgram, mil_pb2)
    if kind == "pipeline" or kind in ("pipelineClassifier", "pipelineRegressor"):
        models = (spec.pipeline.models if kind == "pipeline"
                  else getattr(spec, kind).pipeline.models)
        parts = [summarize_spec(m) for m in models]
        return _merge_summaries(parts)
    if kind in ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor"):
        return _summarize_nn(getattr(spec, kind))
    return _empty(notes=[f"model type {kind!r} has no weights triage understands"])


def _empty(**extra) -> dict[str, Any]:
    d = {"scheme": None, "nbits": None, "dtype": None, "granularity": None, "block_size": None,
         "group_size": None, "ops": {}, "uncompressed_weights": 0, "source": "model",
         "compressed_weights": 0}
    d.update(extra)
    return d


# -- MIL program

def _dtype_name(mil_pb2, code: int) -> str:
    try:
        return mil_pb2.DataType.Name(code).lower()
    except ValueError:
        return f"dtype{code}"


def _tensor(vt, mil_pb2) -> tuple[str | None, list[int] | None]:
    """(dtype name, shape) of a MIL ValueType (tensor); shape None if not fully known."""
    if vt is None or vt.WhichOneof("type") != "tensorType":
        return None, None
    tt = vt.tensorType
    shape = []
    for d in tt.dimensions:
        if d.WhichOneof("dimension") == "constant":
            shape.append(int(d.constant.size))
        else:
            shape = None
            break
    if shape is not None and len(shape) == 0 and tt.rank > 0:
        shape = None
    return _dtype_name(mil_pb2, tt.dataType), shape


def _numel(shape: list[int] | None) -> int:
    return math.prod(shape) if shape is not None else 0


def _blocks(fn, opset: str):
    if fn.opset and fn.opset in fn.block_specializations:
        yield fn.block_specializations[fn.opset]
    else:
        yield from fn.block_specializations.values()


def _walk_ops(block):
    for op in block.operations:
        yield op
        for b in op.blocks:
            yield from _walk_ops(b)


def _summarize_program(program, mil_pb2) -> dict[str, Any]:
    ops_all = []
    opsets = set()
    for fname, fn in program.functions.items():
        opsets.add(fn.opset)
        for block in _blocks(fn, fn.opset):
            ops_all.extend(_walk_ops(block))

    producers: dict[str, Any] = {}
    out_types: dict[str, tuple] = {}
    for op in ops_all:
        for o in op.outputs:
            producers[o.name] = op
            out_types[o.name] = _tensor(o.type, mil_pb2)

    consumers: dict[str, list] = {}
    for op in ops_all:
        for arg in op.inputs.values():
            for a in arg.arguments:
                if a.WhichOneof("binding") == "name":
                    consumers.setdefault(a.name, []).append(op)

    counts: dict[str, int] = {}
    for op in ops_all:
        if op.type.startswith("constexpr_"):
            counts[op.type] = counts.get(op.type, 0) + 1

    def operand(op, name):
        """(dtype, shape, producer op or None) of an input (iOS18) or attribute (iOS16/17)."""
        if name in op.inputs and op.inputs[name].arguments:
            a = op.inputs[name].arguments[0]
            which = a.WhichOneof("binding")
            if which == "value":
                dt, sh = _tensor(a.value.type, mil_pb2)
                return dt, sh, None
            if which == "name":
                dt, sh = out_types.get(a.name, (None, None))
                return dt, sh, producers.get(a.name)
        if name in op.attributes:
            dt, sh = _tensor(op.attributes[name].type, mil_pb2)
            return dt, sh, None
        return None, None, None

    def is_constexpr(op):
        return op is not None and op.type.startswith("constexpr_")

    # terminal constexpr ops: at least one consumer that is not a constexpr (or no consumer)
    terminals = []
    for op in ops_all:
        if not is_constexpr(op):
            continue
        cons = [c for o in op.outputs for c in consumers.get(o.name, [])]
        if not cons or any(not is_constexpr(c) for c in cons):
            terminals.append(op)

    weights = []
    for op in terminals:
        weights.append(_describe_chain(op, operand, is_constexpr, out_types))

    uncompressed = 0
    float_dtypes = set()
    for op in ops_all:
        if op.type != "const" or not op.outputs:
            continue
        dt, sh = out_types.get(op.outputs[0].name, (None, None))
        if dt in ("float16", "float32", "bfloat16") and sh is not None and len(sh) >= 2 \
                and _numel(sh) >= UNCOMPRESSED_MIN_ELEMENTS:
            uncompressed += 1
            float_dtypes.add(dt)

    enc = _aggregate(weights, counts, uncompressed, float_dtypes)
    if opsets:
        enc["opset"] = sorted(o for o in opsets if o)[-1] if any(opsets) else None
    return enc


def _describe_chain(op, operand, is_constexpr, out_types) -> dict[str, Any]:
    """Encoding of one compressed weight: walk its constexpr chain back from the terminal op."""
    desc: dict[str, Any] = {"schemes": [], "nbits": None, "dtype": None, "granularity": None,
                            "block_size": None, "group_size": None}
    seen = set()
    stack = [(op, "weight")]
    while stack:
        cur, role = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        t = cur.type
        # follow operands produced by other constexpr ops
        names = set(cur.inputs.keys()) | set(cur.attributes.keys())
        feeding = {}
        for n in names:
            _dt, _sh, prod = operand(cur, n)
            if is_constexpr(prod):
                feeding[n] = prod
        for n, prod in feeding.items():
            stack.append((prod, "lut" if n == "lut" else "data"))
        if t in ("constexpr_lut_to_dense", "constexpr_lut_to_sparse"):
            _add(desc["schemes"], "palettized")
            if t == "constexpr_lut_to_sparse":
                _add(desc["schemes"], "sparse")
            idx_name = "indices" if t == "constexpr_lut_to_dense" else "indices_nonzero_data"
            idt, ish, _ = operand(cur, idx_name)
            ldt, lsh, lprod = operand(cur, "lut")
            nbits = None
            if lsh:
                if len(lsh) == 1:          # iOS16/17: lut is 1-D [2**nbits]
                    k = lsh[0]
                    desc["granularity"] = "per_tensor"
                elif len(lsh) == 2 and cur.attributes:   # iOS16/17 per-channel [C, 2**nbits]
                    k = lsh[1]
                    desc["granularity"] = "per_channel" if lsh[0] > 1 else "per_tensor"
                else:                      # iOS18: lut [..., 2**nbits, vector]
                    k = lsh[-2]
                    if lsh[-1] > 1:
                        desc["vector_size"] = lsh[-1]
                    lead = lsh[:-2]
                    if all(x == 1 for x in lead):
                        desc["granularity"] = "per_tensor"
                    else:
                        wdt, wsh = _out(cur, out_types)
                        gs = None
                        if wsh and len(wsh) == len(lead):
                            for w, l in zip(wsh, lead):
                                if l > 1:
                                    gs = w // l if l else None
                        desc["granularity"] = ("per_channel" if gs == 1
                                               else "per_grouped_channel")
                        desc["group_size"] = gs
                if k and k > 0:
                    nbits = int(round(math.log2(k))) if k & (k - 1) == 0 else math.ceil(math.log2(k))
            if nbits is None and idt and re.fullmatch(r"uint\d+", idt) and idt != "uint8":
                nbits = int(idt[4:])
            desc["nbits"] = nbits
            desc["dtype"] = f"uint{nbits}" if nbits else idt
            if ldt:
                desc["lut_dtype"] = ldt
            if lprod is not None and is_constexpr(lprod):
                pdt, _psh, _ = operand(lprod, "data")
                if pdt is None:
                    pdt, _psh, _ = operand(lprod, "quantized_data")
                if pdt:
                    desc["lut_dtype"] = pdt
                    if pdt.startswith(("float", "bfloat")):
                        desc["per_channel_scale"] = True   # a float LUT scaled per channel
        elif t in ("constexpr_blockwise_shift_scale", "constexpr_affine_dequantize",
                   "constexpr_sparse_blockwise_shift_scale"):
            if role == "lut":
                continue  # quantized / scaled LUT: part of the palettization (lut_dtype)
            _add(desc["schemes"], "linear")
            if t == "constexpr_sparse_blockwise_shift_scale":
                _add(desc["schemes"], "sparse")
            dname = "quantized_data" if t == "constexpr_affine_dequantize" else (
                "nonzero_data" if t == "constexpr_sparse_blockwise_shift_scale" else "data")
            ddt, dsh, _ = operand(cur, dname)
            if ddt:
                desc["dtype"] = ddt
                m = re.fullmatch(r"u?int(\d+)", ddt)
                desc["nbits"] = int(m.group(1)) if m else None
            sdt, ssh, _ = operand(cur, "scale")
            if t == "constexpr_sparse_blockwise_shift_scale":
                _wdt, dsh = _out(cur, out_types)
            if operand(cur, "offset")[0] is not None or (
                    t == "constexpr_affine_dequantize" and _nonzero_zero_point(cur)):
                desc["asymmetric"] = True
            if t == "constexpr_affine_dequantize":
                desc["granularity"] = "per_channel" if ssh and _numel(ssh) > 1 else "per_tensor"
            elif ssh is not None and dsh is not None and len(ssh) == len(dsh):
                blocks = [d // s if s else None for d, s in zip(dsh, ssh)]
                if all(s == 1 for s in ssh):
                    desc["granularity"] = "per_tensor"
                else:
                    big = [(b, s) for b, s in zip(blocks, ssh)]
                    per_block = [b for b, s in big if s > 1 and b and b > 1]
                    if per_block:
                        desc["granularity"] = "per_block"
                        desc["block_size"] = per_block[0]
                    else:
                        desc["granularity"] = "per_channel"
        elif t == "constexpr_sparse_to_dense":
            _add(desc["schemes"], "sparse")
            ndt, nsh, _ = operand(cur, "nonzero_data")
            _wdt, wsh = _out(cur, out_types)
            if nsh and wsh and _numel(wsh):
                desc["sparsity"] = round(1 - _numel(nsh) / _numel(wsh), 3)
            if not feeding and desc["dtype"] is None and ndt:
                desc["dtype"] = ndt
        elif t == "constexpr_cast":
            continue
        else:
            _add(desc["schemes"], t[len("constexpr_"):])
    return desc


def _nonzero_zero_point(op) -> bool:
    zp = op.attributes.get("zero_point") if "zero_point" in op.attributes else None
    if zp is None or zp.WhichOneof("value") != "immediateValue":
        return False
    try:
        tv = zp.immediateValue.tensor
        for field in ("ints", "bytes", "floats"):
            vals = getattr(tv, field, None)
            if vals is not None and field == "bytes" and vals.values:
                return any(b != 0 for b in vals.values)
            if vals is not None and field != "bytes" and len(vals.values):
                return any(v != 0 for v in vals.values)
    except Exception:  # noqa: BLE001 - best effort
        return False
    return False


def _out(op, out_types):
    if not op.outputs:
        return None, None
    return out_types.get(op.outputs[0].name, (None, None))


def _add(lst: list, item) -> None:
    if item not in lst:
        lst.append(item)


def _aggregate(weights: list[dict], counts: dict[str, int], uncompressed: int,
               float_dtypes: set[str]) -> dict[str, Any]:
    enc = _empty(ops=dict(sorted(counts.items())), uncompressed_weights=uncompressed,
                 compressed_weights=len(weights))
    if not weights:
        if float_dtypes:
            enc["scheme"] = "float16" if float_dtypes == {"float16"} else (
                "float32" if float_dtypes == {"float32"} else "mixed")
            enc["dtype"] = enc["scheme"] if enc["scheme"] != "mixed" else None
        return enc
    schemes = {_join_schemes(w["schemes"]) for w in weights}
    enc["scheme"] = schemes.pop() if len(schemes) == 1 else "mixed"
    if enc["scheme"] == "mixed":
        enc["schemes"] = sorted(s for s in {_join_schemes(w["schemes"]) for w in weights} if s)
    for key in ("nbits", "dtype", "granularity", "block_size", "group_size"):
        vals = {w.get(key) for w in weights}
        enc[key] = vals.pop() if len(vals) == 1 else None
    for key in ("lut_dtype", "vector_size", "per_channel_scale"):
        vals = {w.get(key) for w in weights if w.get(key) is not None}
        if len(vals) == 1:
            enc[key] = vals.pop()
    sp = [w["sparsity"] for w in weights if w.get("sparsity") is not None]
    if sp:
        enc["sparsity"] = round(sum(sp) / len(sp), 3)
    if any(w.get("asymmetric") for w in weights):
        enc["asymmetric"] = True
    return enc


def _merge_summaries(parts: list[dict]) -> dict[str, Any]:
    if not parts:
        return _empty()
    ops: dict[str, int] = {}
    for p in parts:
        for k, v in p.get("ops", {}).items():
            ops[k] = ops.get(k, 0) + v
    compressed = [p for p in parts if p.get("compressed_weights")]
    base = dict(compressed[0] if len(compressed) == 1 else parts[0])
    if len(compressed) > 1:
        for key in ("scheme", "nbits", "dtype", "granularity", "block_size", "group_size"):
            vals = {p.get(key) for p in compressed}
            base[key] = vals.pop() if len(vals) == 1 else ("mixed" if key == "scheme" else None)
    base["ops"] = dict(sorted(ops.items()))
    base["uncompressed_weights"] = sum(p.get("uncompressed_weights") or 0 for p in parts)
    base["compressed_weights"] = sum(p.get("compressed_weights") or 0 for p in parts)
    return base


# -- NeuralNetwork (.mlmodel, older format): WeightParams.quantization

def _summarize_nn(nn) -> dict[str, Any]:
    weights: list[dict] = []
    uncompressed = 0
    float_dtypes: set[str] = set()

    def visit(msg):
        from google.protobuf.message import Message

        if type(msg).__name__ == "WeightParams":
            nonlocal uncompressed
            if msg.HasField("quantization"):
                q = msg.quantization
                nb = int(q.numberOfBits) or None
                which = q.WhichOneof("QuantizationType")
                scheme = "palettized" if which == "lookupTableQuantization" else "linear"
                if which == "linearQuantization":
                    n = len(q.linearQuantization.scale)
                    gran = "per_channel" if n > 1 else ("per_tensor" if n == 1 else None)
                elif which == "lookupTableQuantization" and nb:
                    n = len(q.lookupTableQuantization.floatValue)
                    gran = "per_channel" if n > 2 ** nb else "per_tensor"
                else:
                    gran = None
                weights.append({"schemes": [scheme], "nbits": nb,
                                "dtype": f"uint{nb}" if nb else None,   # rawValue is unsigned
                                "granularity": gran, "block_size": None, "group_size": None})
            else:
                n16 = len(msg.float16Value) // 2
                n32 = len(msg.floatValue)
                if max(n16, n32) >= UNCOMPRESSED_MIN_ELEMENTS:
                    uncompressed += 1
                    float_dtypes.add("float16" if n16 >= n32 else "float32")
            return
        for fd, val in msg.ListFields():
            if fd.message_type is None:
                continue
            if isinstance(val, Message):
                visit(val)
            else:  # repeated message field (or a map of messages)
                for v in (val.values() if hasattr(val, "values") else val):
                    if isinstance(v, Message):
                        visit(v)

    visit(nn)
    enc = _aggregate(weights, {}, uncompressed, float_dtypes)
    enc["format"] = "neuralnetwork"
    return enc
