"""Compile flag parsing for the tools our users run (pure functions, no I/O).

``parse_flags(argv)`` understands ``coreai-build compile``, ``xcrun coremlcompiler compile``,
``coremlc``, ``python -m coreai.llm.export``-style exporters and falls back to generic
``--key value`` / ``--key=value`` parsing. Keys are normalized to snake_case
(``--preferred-compute`` -> ``preferred_compute``); a few aliases map to the canonical names
(``ALIASES``); unknown flags are kept. Values are kept as written (strings), a flag without a
value is ``True``, a repeated flag becomes a list.
"""

from __future__ import annotations

import os
import re
from typing import Any

CANONICAL = ("platform", "preferred_compute", "architecture", "compression")

ALIASES = {
    "compute_units": "preferred_compute",
    "compute_unit": "preferred_compute",
    "preferred_compute_units": "preferred_compute",
    "preferred_compute_unit": "preferred_compute",
    "compute": "preferred_compute",
    "arch": "architecture",
    "target_platform": "platform",
    "o": "output",
    "out": "output",
    "output_dir": "output",
    "quantization": "compression",
    "compress": "compression",
}

# flags known to take no value (so the next token is not swallowed)
BOOLEAN = {
    "help", "h", "verbose", "v", "quiet", "q", "force", "f", "dry_run", "version",
    "add_mlprogram_if_eligible", "strip", "debug", "no_cache", "overwrite",
}

MODEL_SUFFIXES = (".mlpackage", ".mlmodel", ".aimodel", ".mlmodelc")

_XCRUN_VALUED = {"--sdk", "-sdk", "--toolchain", "-toolchain"}


def _norm_key(raw: str) -> str:
    """snake_case key of a flag; letters and digits of any script are kept (``--名前`` ->
    ``名前``, ``--Ωmega`` -> ``ωmega``); a flag with none (``--+++``) keeps its text."""
    key = raw.lstrip("-")
    key = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)      # camelCase -> camel_case
    norm = re.sub(r"[\W_]+", "_", key).strip("_").lower()
    if not norm:
        return key or raw
    return ALIASES.get(norm, norm)


def _base(token: str) -> str:
    return os.path.basename(token.rstrip("/"))


def split_tool(argv: list[str]) -> tuple[str | None, str | None, list[str]]:
    """(tool, subcommand, remaining args) for a command line.

    ``python3.12 -m coreai.llm.export ...`` -> ("coreai.llm.export", None, [...]);
    ``xcrun coremlcompiler compile m out`` -> ("coremlcompiler", "compile", ["m", "out"]);
    ``coreai-build compile m --platform macOS`` -> ("coreai-build", "compile", [...]).
    """
    if not argv:
        return None, None, []
    args = list(argv)
    tool = _base(args[0])
    rest = args[1:]
    if re.match(r"^(python|pypy)[0-9.]*$", tool, re.I):
        i = 0
        while i < len(rest):
            a = rest[i]
            if a == "-m" and i + 1 < len(rest):
                tool, rest = rest[i + 1], rest[i + 2:]
                break
            if a.startswith("-m") and len(a) > 2:
                tool, rest = a[2:], rest[i + 1:]
                break
            if a in ("-X", "-W") and i + 1 < len(rest):
                i += 2
                continue
            if a.startswith("-"):
                i += 1
                continue
            tool, rest = _base(a), rest[i + 1:]
            break
        else:
            rest = []
    elif tool == "xcrun":
        i = 0
        while i < len(rest) and rest[i].startswith("-"):
            i += 2 if rest[i] in _XCRUN_VALUED else 1
        if i < len(rest):
            tool, rest = _base(rest[i]), rest[i + 1:]
        else:
            rest = []
    sub = None
    if rest and not rest[0].startswith("-") and re.fullmatch(r"[a-z][a-z0-9_-]*", rest[0]) \
            and not rest[0].endswith(MODEL_SUFFIXES):
        sub, rest = rest[0], rest[1:]
    return tool, sub, rest


def parse_flags(argv: list[str]) -> dict[str, Any]:
    """Flags of a compile command line. Always has the four canonical keys (None when absent)
    plus ``output`` when known and every other flag seen."""
    _tool, sub, rest = split_tool([str(a) for a in argv])
    flags: dict[str, Any] = {k: None for k in CANONICAL}
    positional: list[str] = []
    seen: set[str] = set()

    def put(key: str, value: Any) -> None:
        if key in seen and flags.get(key) is not None and flags[key] != value:
            prev = flags[key]
            flags[key] = (prev if isinstance(prev, list) else [prev]) + [value]
        else:
            flags[key] = value
        seen.add(key)

    i = 0
    while i < len(rest):
        tok = rest[i]
        if tok == "--":
            positional.extend(rest[i + 1:])
            break
        if tok.startswith("-") and len(tok) > 1 and not _is_number(tok):
            if "=" in tok:
                k, v = tok.split("=", 1)
                put(_norm_key(k), v)
                i += 1
                continue
            key = _norm_key(tok)
            if key.startswith("no_") and len(key) > 3:
                put(key[3:], False)
                i += 1
                continue
            nxt = rest[i + 1] if i + 1 < len(rest) else None
            if key not in BOOLEAN and nxt is not None and \
                    (not nxt.startswith("-") or _is_number(nxt)):
                put(key, nxt)
                i += 2
            else:
                put(key, True)
                i += 1
            continue
        positional.append(tok)
        i += 1

    # compile MODEL OUTPUT (coremlcompiler / coremlc): the second positional is the output folder
    models = [p for p in positional if p.rstrip("/").endswith(MODEL_SUFFIXES)]
    if flags.get("output") is None and sub == "compile" and models:
        after = positional[positional.index(models[0]) + 1:]
        if after:
            flags["output"] = after[0]
    return flags


def find_model(argv: list[str]) -> str | None:
    """First ``.mlpackage`` / ``.mlmodel`` / ``.aimodel`` path in argv (also in ``--x=PATH``)."""
    for a in argv[1:] if argv else []:
        cand_list = [a.split("=", 1)[1]] if a.startswith("-") and "=" in a else [a]
        for cand in cand_list:
            if cand and cand.rstrip("/").lower().endswith((".mlpackage", ".mlmodel", ".aimodel")):
                return cand
    return None


def _is_number(tok: str) -> bool:
    return re.fullmatch(r"-?\d+(\.\d+)?", tok) is not None
