"""Frame normalization: a small rule engine over data files (docs/frames.md, docs/rules.md).

Every frame gets ``function`` (demangled, readable) and ``normalized`` (the form signatures and
clustering compare), and ``rule`` (comma-separated names of the rules that changed it).

The rules are ordered regex substitutions and a few named built-in transforms, read from
``triage/frames/rules/*.toml`` and then from user files (``--rules FILE``). Normalization is
memoized per distinct symbol text (most frames repeat) and never raises.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Sequence

from triage.errors import UserError, refuse_special_file
from triage.frames.demangle import demangle, looks_mangled
from triage.records import Frame, Report

RULES_DIR = Path(__file__).resolve().parent / "rules"

#: symbols longer than this (after demangling and cleaning) are cut before any regex runs
MAX_SYMBOL_CHARS = 1024
#: mangled names longer than this are not demangled (the demangler's cost grows with length)
MAX_MANGLED_CHARS = 4096
#: recursion runs of at least this many identical frames are collapsed by normalized_stack
MIN_RUN = 2

CLASSES = ("objc", "block", "swift", "cxx", "c")

#: symbol texts that mean "no symbol" (the parser maps most to None; be defensive)
PLACEHOLDERS = frozenset({"", "???", "<redacted>", "<deduplicated_symbol>", "<unknown>",
                          "<unavailable>", "<compiler-generated>"})
_HEX_ONLY = re.compile(r"^0x[0-9a-fA-F]+$")
_JUNK = re.compile(r"[\x00-\x1f\x7f-\x9f\ufffd\ufeff]+")
_IN_MODULE = re.compile(r" \(in [^()]*\)$")

_SWIFT_PREFIX = re.compile(
    r"^(?:specialized |merged |partial apply |thunk |reabstraction thunk|closure #|"
    r"\(\d+\) (?:suspend |await )?resume partial function |"
    r"implicit closure #|@objc |protocol witness |outlined |type metadata |static |"
    r"generic specialization |function signature specialization |Swift runtime failure|"
    r"key path |lazy protocol witness |dispatch thunk |method lookup function |"
    r"nominal type descriptor |property descriptor |one-time initialization |"
    r"variable initialization expression |default argument |autoclosure |"
    r"async function pointer |resume partial function |await resume partial function )"
)
_SWIFT_HINT = re.compile(
    r"\((?:_|\w+):(?:(?:_|\w+):)*\)|\.(?:getter|setter|modify|didset|willset|init|deinit|"
    r"subscript|unsafeMutableAddressor)\b|\s->\s|\bin conformance\b"
)


# ---------------------------------------------------------------------------- records

@dataclass(slots=True)
class Rule:
    name: str
    source: str                         # "file:line" where the rule is defined
    pattern: re.Pattern | None = None
    replace: str = ""
    builtin: str | None = None
    classes: frozenset[str] | None = None   # None = every class
    comment: str | None = None

    def apply(self, text: str) -> str:
        if self.builtin is not None:
            return BUILTINS[self.builtin](text)
        assert self.pattern is not None
        return self.pattern.sub(self.replace, text)


@dataclass
class FrameRules:
    """An ordered, immutable rule set (shipped rules, then user files)."""

    rules: tuple[Rule, ...]
    files: tuple[str, ...] = ()
    strip_module: bool = True       # the swift-module-prefix step (see strip_module_prefix)
    _cache: Callable = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._cache = lru_cache(maxsize=262_144)(self._process)

    @property
    def fingerprint(self) -> str:
        """Short hash of the rule definitions (store it with signatures to spot rule changes)."""
        h = hashlib.sha256()
        for r in self.rules:
            h.update(repr((r.name, r.pattern.pattern if r.pattern else None, r.replace,
                           r.builtin, sorted(r.classes) if r.classes else None)).encode())
        return h.hexdigest()[:12]

    def by_name(self, name: str) -> Rule | None:
        for r in self.rules:
            if r.name == name:
                return r
        return None

    def process(self, text: str) -> tuple[str | None, str | None, tuple[str, ...]]:
        """``(function, normalized, rule_names)`` for one raw symbol text (memoized)."""
        if not isinstance(text, str):
            return None, None, ()
        return self._cache(text)

    def _process(self, text: str) -> tuple[str | None, str | None, tuple[str, ...]]:
        changed: list[str] = []
        s = text
        if len(s) > MAX_MANGLED_CHARS * 4:  # bound the cost of everything below
            s = s[: MAX_MANGLED_CHARS * 4]
            changed.append("truncate")
        cleaned = _JUNK.sub("", s).strip()
        if cleaned != s.strip():
            changed.append("sanitize")
        s = cleaned
        if s in PLACEHOLDERS or _HEX_ONLY.match(s):
            return None, None, tuple(changed)
        if looks_mangled(s) and len(s) <= MAX_MANGLED_CHARS:
            d = demangle(s)
            if d != s:
                s = _JUNK.sub("", d).strip()
                changed.append("demangle")
        if len(s) > MAX_SYMBOL_CHARS:
            s = s[:MAX_SYMBOL_CHARS]
            if "truncate" not in changed:
                changed.append("truncate")
        function = _IN_MODULE.sub("", s) or s
        cls = classify(s)
        for rule in self.rules:
            if rule.classes is not None and cls not in rule.classes:
                continue
            try:
                out = rule.apply(s)
            except Exception:  # noqa: BLE001 - a rule never breaks normalization
                continue
            if out != s:
                s = out
                changed.append(rule.name)
        s = s.strip()
        if not s:  # a rule ate everything: fall back to the readable function
            s = function
        return function, s, tuple(changed)


def classify(text: str) -> str:
    """Symbol class deciding which rules apply: objc, block, swift, cxx or c."""
    if "_block_invoke" in text or text.startswith("invocation function for block in "):
        return "block"
    if text[:2] in ("-[", "+["):
        return "objc"
    if _SWIFT_PREFIX.match(text):
        return "swift"
    if "::" in text:
        return "cxx"
    if _SWIFT_HINT.search(text):
        return "swift"
    if "(" in text or "<" in text or " " in text:
        return "cxx"
    return "c"


# ---------------------------------------------------------------------------- built-in transforms

_OPERATOR_TOKENS = ("<<=", "<=>", "<<", "<=", "<", ">>=", ">>", ">=", ">", "->*", "->", "()", "[]")


def _operator_at(text: str, i: int) -> int:
    """If ``text[i:]`` starts with ``operator<sym>``, return the index after it, else -1."""
    if not text.startswith("operator", i):
        return -1
    if i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"):
        return -1
    j = i + 8
    k = j
    while k < len(text) and text[k] == " ":
        k += 1
    for tok in _OPERATOR_TOKENS:
        if text.startswith(tok, k):
            return k + len(tok)
    return -1


def collapse_templates(text: str) -> str:
    """Every outermost ``<...>`` becomes ``<T>``; ``operator<``/``operator<<``/``->`` kept."""
    if "<" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "o":
            end = _operator_at(text, i)
            if end > 0:
                out.append(text[i:end])
                i = end
                continue
        if c == "-" and i + 1 < n and text[i + 1] == ">":
            out.append("->")
            i += 2
            continue
        if c == "<":
            depth, paren, j = 0, 0, i
            while j < n:
                cj = text[j]
                if cj == "o" and _operator_at(text, j) > 0:
                    j = _operator_at(text, j)
                    continue
                if cj == "-" and j + 1 < n and text[j + 1] == ">":
                    j += 2
                    continue
                if cj == "(":
                    paren += 1
                elif cj == ")":
                    paren = max(0, paren - 1)
                elif paren == 0 and cj == "<":
                    depth += 1
                elif paren == 0 and cj == ">":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            out.append("<T>")
            i = j + 1  # an unbalanced (truncated) list swallows the rest
            continue
        out.append(c)
        i += 1
    return "".join(out)


_P_CALL = "\x01"   # protects "operator()"
_P_ANON = "\x02"   # protects "(anonymous namespace)"
_OPERATOR_TAIL = re.compile(r"\boperator\s*[^\w\s()]{1,3}$")
_TRAILING_QUALS = re.compile(r"(?:\s+(?:const|volatile|noexcept|override|final)\b|\s+&&?)+(?=\s*(?:::|$))")


def strip_args(text: str) -> str:
    """Remove every argument list (a ``(`` right after a name), then trailing qualifiers."""
    if "(" not in text:
        return text
    s = text.replace("(anonymous namespace)", _P_ANON)
    s = re.sub(r"\boperator\s*\(\)", "operator" + _P_CALL, s)
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "(" and out and (out[-1].isalnum() or out[-1] in "_>]}'$?!" + _P_CALL
                                 or _OPERATOR_TAIL.search("".join(out[-16:]))):
            depth, j = 0, i
            while j < n:
                if s[j] == "(":
                    depth += 1
                elif s[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            i = j + 1  # unbalanced (truncated names): drop the rest
            continue
        out.append(c)
        i += 1
    s = "".join(out)
    s = _TRAILING_QUALS.sub("", s)
    return s.replace(_P_CALL, "()").replace(_P_ANON, "(anonymous namespace)").strip()


def _top_level_spaces(text: str) -> list[int]:
    spaces, depth, quote = [], 0, False
    for i, c in enumerate(text):
        if c == "'":
            quote = not quote
        elif quote:
            continue
        elif c in "<([{":
            depth += 1
        elif c in ">)]}":
            if c == ">" and i > 0 and text[i - 1] == "-":
                continue
            depth = max(0, depth - 1)
        elif c == " " and depth == 0:
            spaces.append(i)
    return spaces


_OPERATOR_NAME = re.compile(r"(?:^|\s)(\S*\boperator\b)")


def strip_return_type(text: str) -> str:
    """Keep the qualified name: drop a leading return type (or ``non-virtual thunk to`` etc.)."""
    spaces = _top_level_spaces(text)
    if not spaces:
        return text
    m = _OPERATOR_NAME.search(text)
    if m:
        return text[m.start(1):].strip()
    return text[spaces[-1] + 1:].strip() or text


def squash_whitespace(text: str) -> str:
    return " ".join(text.split())


def _per_frame_step(text: str) -> str:
    """Placeholder for steps that need the frame's image name (applied in _normalize_values)."""
    return text


#: builtins applied per frame with the image name, not per symbol text; their presence in the
#: rule files (name = builtin) switches them on, ``disable = true`` off
PER_FRAME_BUILTINS = ("swift-module-prefix",)

BUILTINS: dict[str, Callable[[str], str]] = {
    "cxx-collapse-templates": collapse_templates,
    "cxx-strip-args": strip_args,
    "cxx-strip-return-type": strip_return_type,
    "squash-whitespace": squash_whitespace,
    "swift-module-prefix": _per_frame_step,
}


# ---------------------------------------------------------------------------- loading rule files

_TOML_LINE = re.compile(r"line (\d+)")


def _rule_header_lines(text: str) -> list[int]:
    return [i + 1 for i, line in enumerate(text.splitlines()) if line.strip().startswith("[[rule]]")]


def _parse_rule_file(path: Path, user: bool) -> list[tuple[dict, str]]:
    refuse_special_file(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read rule file: {getattr(exc, 'strerror', None) or exc}")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_LINE.search(str(exc))
        line = m.group(1) if m else "1"
        raise UserError(f"{path}:{line}: not a valid TOML rule file: {exc}")
    entries = data.get("rule", [])
    if not isinstance(entries, list):
        raise UserError(f"{path}:1: 'rule' must be an array of tables ([[rule]])")
    headers = _rule_header_lines(text)
    out = []
    for i, entry in enumerate(entries):
        line = headers[i] if i < len(headers) else 1
        out.append((entry, f"{path}:{line}"))
    return out


def _build_rule(entry: dict, where: str) -> Rule | None:
    if not isinstance(entry, dict):
        raise UserError(f"{where}: a rule must be a table")
    unknown = set(entry) - {"name", "match", "replace", "builtin", "classes", "comment",
                            "disable", "before", "after"}
    if unknown:
        raise UserError(f"{where}: unknown rule key(s): {', '.join(sorted(unknown))}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"{where}: every rule needs a name")
    classes = entry.get("classes")
    if classes is not None:
        if not isinstance(classes, list) or not all(c in CLASSES for c in classes):
            raise UserError(f"{where}: rule '{name}': classes must be a list of {', '.join(CLASSES)}")
        classes = frozenset(classes)
    builtin, match = entry.get("builtin"), entry.get("match")
    disable = entry.get("disable", False)
    if not isinstance(disable, bool):
        raise UserError(f"{where}: rule '{name}': 'disable' must be true or false, "
                        f"not {disable!r}")
    if disable:
        return None
    if (builtin is None) == (match is None):
        raise UserError(f"{where}: rule '{name}' needs exactly one of 'match' or 'builtin'")
    if builtin is not None:
        if builtin not in BUILTINS:
            raise UserError(f"{where}: rule '{name}': unknown builtin '{builtin}' "
                            f"(known: {', '.join(sorted(BUILTINS))})")
        return Rule(name=name, source=where, builtin=builtin, classes=classes,
                    comment=entry.get("comment"))
    if not isinstance(match, str):
        raise UserError(f"{where}: rule '{name}': 'match' must be a string")
    replace = entry.get("replace", "")
    if not isinstance(replace, str):
        raise UserError(f"{where}: rule '{name}': 'replace' must be a string")
    try:
        pattern = re.compile(match)
        pattern.sub(replace, "")  # validates group references in the replacement
    except re.error as exc:
        raise UserError(f"{where}: rule '{name}': bad regex or replacement: {exc}")
    return Rule(name=name, source=where, pattern=pattern, replace=replace, classes=classes,
                comment=entry.get("comment"))


def shipped_rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.toml"))


def _is_frame_rule_file(path: Path) -> bool:
    """User rule files are shared with the signature lists: only TOML files are read here."""
    return path.suffix.lower() == ".toml"


def load_rules(extra_files: Iterable[Path | str] = ()) -> FrameRules:
    """Shipped rules, then each user file in order. A user rule with an existing name replaces
    it in place; ``disable = true`` removes it; ``before``/``after`` position a new rule.
    Non-TOML files (signature lists) are skipped. A bad user file raises UserError naming the
    file and line."""
    extra = [Path(p) for p in extra_files]
    key = tuple((str(p), _mtime(p)) for p in shipped_rule_files() + extra)
    return _load_rules_cached(key)


def _mtime(p: Path) -> int:
    try:
        return p.stat().st_mtime_ns
    except OSError:
        return -1


@lru_cache(maxsize=16)
def _load_rules_cached(key: tuple[tuple[str, int], ...]) -> FrameRules:
    shipped = {str(p) for p in shipped_rule_files()}
    rules: list[Rule] = []
    files: list[str] = []
    for path_s, _ in key:
        path = Path(path_s)
        user = path_s not in shipped
        if user and not path.exists():
            raise UserError(f"{path}: rule file not found")
        if user and not _is_frame_rule_file(path):
            continue
        files.append(path_s)
        for entry, where in _parse_rule_file(path, user):
            rule = _build_rule(entry, where)
            name = entry.get("name")
            idx = next((i for i, r in enumerate(rules) if r.name == name), None)
            if rule is None:  # disable
                if idx is None:
                    raise UserError(f"{where}: no rule named '{name}' to disable")
                del rules[idx]
                continue
            if idx is not None:
                rules[idx] = rule
                continue
            anchor = entry.get("before") or entry.get("after")
            if anchor:
                pos = next((i for i, r in enumerate(rules) if r.name == anchor), None)
                if pos is None:
                    raise UserError(f"{where}: rule '{name}': no rule named '{anchor}' "
                                    "to place it before/after")
                rules.insert(pos if entry.get("before") else pos + 1, rule)
            else:
                rules.append(rule)
    strip_module = any(r.builtin == "swift-module-prefix" for r in rules)
    return FrameRules(rules=tuple(rules), files=tuple(files), strip_module=strip_module)


# ---------------------------------------------------------------------------- frames

def normalize_symbol(text: str | None, rules: FrameRules) -> tuple[str | None, list[str]]:
    """``(normalized, rule_names)`` for one symbol text; ``(None, [...])`` when it is no symbol."""
    if text is None:
        return None, []
    _, norm, names = rules.process(text)
    return norm, list(names)


def unsymbolicated_form(frame: Frame) -> tuple[str, str]:
    """``(normalized, rule)`` for a frame without a symbol: ``Module+0xOFFSET``.

    With a known symbol location the offset is the function start (``imageOffset -
    symbolLocation``), so every return address inside one function gives the same text.
    """
    module = frame.module or "???"
    offset = frame.offset
    if offset is None and frame.address is not None and frame.image_base is not None:
        offset = frame.address - frame.image_base
    if offset is None or not isinstance(offset, int) or offset < 0:
        return module, "unsymbolicated"
    so = frame.symbol_offset
    if isinstance(so, int) and 0 <= so <= offset:
        return f"{module}+0x{offset - so:x}", "unsymbolicated-function-start"
    return f"{module}+0x{offset:x}", "unsymbolicated"


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@lru_cache(maxsize=65536)
def strip_module_prefix(text: str, module: str) -> str:
    """``ChatPlayground.ModelStore.load`` in image ``ChatPlayground`` -> ``ModelStore.load``.

    Swift names are module-qualified in newer reports but not in older ones nor in names
    demangled from a dSYM. Only for images whose name is an identifier (a Swift module name),
    never for C++ (``::``) or Objective-C names."""
    if (not module or "." not in text or "::" in text or text[:2] in ("-[", "+[")
            or not _IDENT.match(module) or module + "." not in text):
        return text
    out = re.sub(r"(?<![\w.$])" + re.escape(module) + r"\.(?=[A-Za-z_$])", "", text)
    return out or text


def _normalize_values(frame: Frame, rules: FrameRules) -> tuple[str | None, str, str | None]:
    try:
        function, norm, names = rules.process(frame.symbol) if frame.symbol is not None \
            else (None, None, ())
        if norm is None:
            n2, r2 = unsymbolicated_form(frame)
            names = tuple(names) + (r2,)
            return None, n2, ",".join(names)
        if frame.module and rules.strip_module:
            n2 = strip_module_prefix(norm, frame.module)
            if n2 != norm:
                norm, names = n2, tuple(names) + ("swift-module-prefix",)
        return function, norm, (",".join(names) or None)
    except Exception:  # noqa: BLE001 - never raise on a frame
        return frame.symbol, frame.symbol or frame.module or "???", "error"


def normalize_frame(frame: Frame, rules: FrameRules) -> Frame:
    """Fill ``function``, ``normalized`` and ``rule`` on ``frame`` (in place) and return it."""
    frame.function, frame.normalized, frame.rule = _normalize_values(frame, rules)
    return frame


def normalize_frames(frames: Iterable[Frame], rules: FrameRules) -> list[Frame]:
    return [normalize_frame(f, rules) for f in frames]


def normalize_report(report: Report, rules: FrameRules) -> None:
    """Normalize every frame of every thread and of ``last_exception_backtrace``, in place."""
    for thread in report.threads or ():
        _normalize_run(thread.frames or (), rules)
    _normalize_run(report.last_exception_backtrace or (), rules)


def _normalize_run(frames, rules: FrameRules) -> None:
    """normalize_frame over ``frames``; a symbolicated frame with the previous frame's symbol
    and module (deep recursion) takes its values: they depend on nothing else."""
    # the last two frames whose values came from their symbol alone (recursions have a
    # period of 1 or 2); function is None when a frame was named by its module/offset
    prev = prev2 = None
    for f in frames:
        sym = f.symbol
        if sym is not None:
            for p in (prev, prev2):
                if p is not None and sym == p.symbol and f.module == p.module:
                    f.function, f.normalized, f.rule = p.function, p.normalized, p.rule
                    break
            else:
                f.function, f.normalized, f.rule = _normalize_values(f, rules)
        else:
            f.function, f.normalized, f.rule = _normalize_values(f, rules)
        if f.function is not None and f is not prev:
            prev, prev2 = f, prev


def _run_marker(count: int, exact: bool) -> str:
    if exact or count < 10:
        return f"[x{count}]"
    return "[x100+]" if count >= 100 else "[x10+]"


def collapse_runs(names: Sequence[str], *, exact_counts: bool = False) -> list[str]:
    """Runs of the same string become one ``"name [xN]"`` entry (see docs/frames.md)."""
    out: list[str] = []
    i, n = 0, len(names)
    while i < n:
        j = i + 1
        while j < n and names[j] == names[i]:
            j += 1
        run = j - i
        out.append(names[i] if run < MIN_RUN else f"{names[i]} {_run_marker(run, exact_counts)}")
        i = j
    return out


def normalized_stack(frames: Iterable[Frame], rules: FrameRules, *, max_frames: int | None = None,
                     drop_inline: bool = False, exact_counts: bool = False) -> list[str]:
    """Normalized frame strings, top (crashing) frame first, recursion runs collapsed.

    Inline frames are kept by default and carry no inline mark, so a build that inlined a call
    (inline entry + physical frame) and one that did not (two physical frames) give the same
    list. ``max_frames`` caps the number of entries returned (after collapsing). The frames are
    not modified.
    """
    names: list[str] = []
    for f in frames:
        if drop_inline and f.inline:
            continue
        names.append(_normalize_values(f, rules)[1])
    out = collapse_runs(names, exact_counts=exact_counts)
    return out[:max_frames] if max_frames is not None else out
