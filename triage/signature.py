"""Crash signatures: Socorro-style frame walk over sentinel / irrelevant / prefix lists.

``load_siglists(extra_files)`` reads the shipped lists (``triage/frames/rules/siglists/*.txt``)
plus user files; ``compute_signature(report, siglists)`` turns one (normalized) report into a
:class:`SignatureResult`. Pure functions: no store, no I/O beyond reading list files.

Signature text (documented in docs/clustering.md)::

    <frames> [<EXC_TYPE/SIGNAL>] <masked message>

e.g. ``objc_release | GPU::anePreCompileBinary [EXC_BAD_ACCESS/SIGSEGV]`` or
``validateShape [EXC_CRASH/SIGABRT] Assertion failed: (tensor.rank() <= N), function validateShape``.
The frame part alone is ``SignatureResult.frames_signature``; exception class and message are
also kept as separate fields.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from itertools import groupby
from pathlib import Path
from typing import Any

from triage.errors import UserError, refuse_special_file
from triage.records import Frame, Report

LIST_NAMES = ("sentinel", "sentinel_message", "irrelevant", "prefix")
SIGLISTS_DIR = Path(__file__).resolve().parent / "frames" / "rules" / "siglists"

MAX_FRAMES_CONSIDERED = 40      # frames of the signed stack the walk looks at (Socorro: 40)
SENTINEL_SEARCH = 20            # sentinels are searched among the top N frames
STACK_DEPTH = 24                # meaningful frames kept for similarity
PROTO_DEPTH = 12                # frames shown in proto_signature
MESSAGE_MAX = 120
MESSAGE_INPUT_MAX = 2048
SIGNATURE_MAX = 255
EMPTY_SIGNATURE = "EMPTY: no crashing thread identified"
UNKNOWN_MODULE = "???"


# ------------------------------------------------------------------------------------ lists

@dataclass(slots=True)
class SigLists:
    """The four lists as regex source lines (in load order) plus compiled matchers."""

    sentinel: list[str] = field(default_factory=list)
    sentinel_message: list[str] = field(default_factory=list)
    irrelevant: list[str] = field(default_factory=list)
    prefix: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    #: message masks, in order: (name, compiled regex, replacement) — see message_masks.toml
    masks: list[tuple[str, "re.Pattern", str]] = field(default_factory=list)
    _compiled: dict = field(default_factory=dict, repr=False)
    _memo: dict = field(default_factory=dict, repr=False)   # (list, text) -> bool
    _results: dict = field(default_factory=dict, repr=False)  # compute_signature memo

    def matcher(self, name: str):
        rx = self._compiled.get(name)
        if rx is None:
            entries = getattr(self, name)
            rx = re.compile("|".join(f"(?:{e})" for e in entries)) if entries else re.compile(r"(?!)")
            self._compiled[name] = rx
        return rx

    def is_(self, name: str, text: str) -> bool:
        if not text:
            return False
        key = (name, text)
        hit = self._memo.get(key)
        if hit is None:
            if len(self._memo) >= 262_144:      # bounded: long runs see many distinct frames
                self._memo.clear()
            hit = self._memo[key] = self.matcher(name).match(text) is not None
        return hit

    def version(self) -> str:
        """A short hash of the list contents (recorded with recluster runs)."""
        h = hashlib.sha1()
        for n in LIST_NAMES:
            h.update(n.encode() + b"\0" + "\n".join(getattr(self, n)).encode() + b"\0")
        for name, rx, rep in self.masks:
            h.update(f"{name}\0{rx.pattern}\0{rx.flags}\0{rep}\0".encode())
        return h.hexdigest()[:12]


_SECTION = re.compile(r"^\[\s*([A-Za-z_]+)\s*\]$")


def _list_for_filename(path: Path) -> str | None:
    stem = path.stem.lower().replace("-", "_")
    for name in sorted(LIST_NAMES, key=len, reverse=True):
        if stem == name or stem.endswith("_" + name) or stem.endswith("." + name):
            return name
    return None


def _parse_txt(path: Path, text: str, default: str | None) -> list[tuple[str, str]]:
    """(list name, entry) pairs from one siglist text file. ``!regex`` removes an entry."""
    out: list[tuple[str, str]] = []
    current = default
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _SECTION.match(line)
        if m:
            name = m.group(1).lower()
            if name not in LIST_NAMES:
                raise UserError(f"{path}:{lineno}: unknown signature list [{name}] "
                                f"(expected one of {', '.join(LIST_NAMES)})")
            current = name
            continue
        if current is None:
            raise UserError(f"{path}:{lineno}: entry before any [sentinel]/[irrelevant]/[prefix] "
                            "header (or name the file e.g. my-prefix.txt)")
        entry = line[1:].strip() if line.startswith("!") else line
        try:
            re.compile(entry)
        except re.error as exc:
            raise UserError(f"{path}:{lineno}: invalid regex {entry!r}: {exc}")
        out.append((current, line))
    return out


def _parse_toml_masks(path: Path, text: str) -> list:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}")
    return _mask_entries(path, data["message_mask"]) if "message_mask" in data else []


def _parse_toml(path: Path, text: str) -> list[tuple[str, str]]:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}")
    table = data.get("siglists")
    if table is None:
        return []
    if not isinstance(table, dict):
        raise UserError(f"{path}: [siglists] must be a table of lists")
    out = []
    for name, entries in table.items():
        if name not in LIST_NAMES:
            raise UserError(f"{path}: unknown signature list siglists.{name} "
                            f"(expected one of {', '.join(LIST_NAMES)})")
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise UserError(f"{path}: siglists.{name} must be a list of regex strings")
        for e in entries:
            body = e[1:].strip() if e.startswith("!") else e
            try:
                re.compile(body)
            except re.error as exc:
                raise UserError(f"{path}: siglists.{name}: invalid regex {body!r}: {exc}")
            out.append((name, e))
    return out


MASKS_FILE = SIGLISTS_DIR / "message_masks.toml"


def _mask_entries(path: Path, tables: Any) -> list[tuple[str, "re.Pattern | None", str]]:
    """``[[mask]]``/``[[message_mask]]`` tables -> (name, compiled regex or None = disable, repl)."""
    if not isinstance(tables, list):
        raise UserError(f"{path}: message masks must be [[...]] tables")
    out = []
    for i, t in enumerate(tables, 1):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise UserError(f"{path}: message mask #{i} needs a string `name`")
        if t.get("disable"):
            out.append((t["name"], None, ""))
            continue
        pattern, replace = t.get("pattern"), t.get("replace", "")
        if not isinstance(pattern, str) or not isinstance(replace, str):
            raise UserError(f"{path}: message mask {t['name']!r} needs string `pattern`/`replace`")
        try:
            rx = re.compile(pattern, re.I if t.get("ignorecase") else 0)
        except re.error as exc:
            raise UserError(f"{path}: message mask {t['name']!r}: invalid regex: {exc}")
        out.append((t["name"], rx, replace))
    return out


def _apply_masks(lists: SigLists, entries) -> None:
    for name, rx, rep in entries:
        idx = next((k for k, m in enumerate(lists.masks) if m[0] == name), None)
        if rx is None:
            if idx is not None:
                del lists.masks[idx]
        elif idx is not None:
            lists.masks[idx] = (name, rx, rep)
        else:
            lists.masks.append((name, rx, rep))


def _default_masks() -> list:
    import tomllib

    lists = SigLists()
    data = tomllib.loads(MASKS_FILE.read_text(encoding="utf-8"))
    _apply_masks(lists, _mask_entries(MASKS_FILE, data.get("mask", [])))
    return lists.masks


def load_siglists(extra_files: list[Path] | tuple = ()) -> SigLists:
    """Shipped lists, then each user file in order.

    User files: ``*.txt`` with ``[prefix]`` / ``[irrelevant]`` / ``[sentinel]`` /
    ``[sentinel_message]`` section headers (or, without headers, a file named after the list:
    ``prefix.txt``, ``my-prefix.txt``); ``*.toml`` files contribute their optional ``[siglists]``
    table (``prefix = ["regex", ...]``) and are otherwise left to the frame rules. A line
    ``!regex`` removes an earlier entry with exactly that text.
    """
    lists = SigLists()
    lists.masks = list(_default_masks())
    for name in LIST_NAMES:
        p = SIGLISTS_DIR / f"{name}.txt"
        if p.is_file():
            for _, e in _parse_txt(p, p.read_text(encoding="utf-8"), name):
                getattr(lists, name).append(e)
    for f in extra_files or ():
        path = Path(f).expanduser()
        refuse_special_file(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"{path}: rule file not found")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: cannot read rule file: {exc}")
        if path.suffix.lower() == ".toml":
            pairs = _parse_toml(path, text)
            masks = _parse_toml_masks(path, text)
            if masks:
                _apply_masks(lists, masks)
                if str(path) not in lists.files:
                    lists.files.append(str(path))
        elif path.suffix.lower() in (".txt", ".siglist", ""):
            pairs = _parse_txt(path, text, _list_for_filename(path))
        else:
            continue  # other rule formats belong to other stages
        if pairs:
            lists.files.append(str(path))
        for name, e in pairs:
            target = getattr(lists, name)
            if e.startswith("!"):
                body = e[1:].strip()
                target[:] = [x for x in target if x != body]
            elif e not in target:
                target.append(e)
    return lists


# ------------------------------------------------------------------------------------ result

@dataclass(slots=True)
class SignatureResult:
    signature: str
    proto_signature: str
    stack: list[str]
    stack_id: str
    notes: list[str] = field(default_factory=list)
    frames_signature: str = ""
    exception: str | None = None
    message: str | None = None
    source: str = "crashing-thread"      # "crashing-thread" | "last-exception" | "none"
    stack_overflow: bool = False


# ------------------------------------------------------------------------------------ frames

def frame_label(f: Frame) -> str:
    """The function text the lists match and the signature shows (no offsets: an unsymbolized
    frame shows as its module name, as in Socorro)."""
    if is_symbolized(f):
        for v in (f.normalized, f.function, f.symbol):
            if v:
                return v
    return f.module or UNKNOWN_MODULE


def is_symbolized(f: Frame) -> bool:
    """Normalized frames (``normalized`` set) count as symbolized only with a ``function``."""
    if f.normalized is not None:
        return bool(f.function)
    return bool(f.function or f.symbol)


_OFF = re.compile(r"\+(0x[0-9A-Fa-f]+)$")


def frame_token(f: Frame, label: str | None = None) -> str:
    """Similarity token: ``module!function``; unsymbolized ``module!+0xOFFSET`` (the function
    start when the frames stage knew it, else the image offset: stable within one build).
    ``label``: ``frame_label(f)`` when the caller has it already."""
    mod = f.module or UNKNOWN_MODULE
    if is_symbolized(f):
        return f"{mod}!{frame_label(f) if label is None else label}"
    m = _OFF.search(f.normalized or "")
    if m:
        return f"{mod}!+{m.group(1).lower()}"
    if f.offset is not None:
        return f"{mod}!+{f.offset:#x}"
    return f"{mod}!?"


def token_module(token: str) -> str:
    return token.split("!", 1)[0]


def token_symbolized(token: str) -> bool:
    rest = token.split("!", 1)[1] if "!" in token else token
    return not (rest == "?" or rest.startswith("+0x"))


def _collapse_recursion(items: list, max_period: int = 4) -> tuple[list, bool]:
    """Collapse immediately repeated runs of 1..max_period items; True if anything collapsed."""
    out: list = []
    collapsed = False
    periods = range(1, max_period + 1)
    # After each item the list ends with that item's value (a collapse removes a block equal
    # to the one before it), so an item equal to the previous *input* item is always removed
    # by the period-1 test: drop such repeats up front (deep recursions are mostly repeats).
    deduped = [k for k, _ in groupby(items)]
    if len(deduped) < len(items):
        collapsed = True
        items = deduped
    for it in items:
        out.append(it)
        n = len(out)
        if n >= 2 and it == out[n - 2]:      # period 1 (the usual recursion): no slices
            out.pop()
            collapsed = True
            continue
        for p in periods:
            if n < 2 * p:
                break
            # cheap test of the newest item first; the whole run only when it matches
            if out[n - 1] == out[n - 1 - p] and out[n - p:] == out[n - 2 * p:n - p]:
                del out[n - p:]
                collapsed = True
                break
    return out, collapsed


# ------------------------------------------------------------------------------------ message

_WS = re.compile(r"\s+")
_MESSAGE_HINTS = re.compile(
    r"assert|fatal error|failed|terminating|uncaught exception|reason:|precondition|"
    r"check failed|abort|error", re.I)
_GENERIC_MESSAGE = re.compile(r"^(namespace \w+|abort trap|crashed on child side|"
                              r"crashing on exception)", re.I)


_DEFAULT_MASKS: list | None = None


def mask_message(text: str, masks: list | None = None) -> str:
    """Apply the message masks (numbers, addresses, paths, UUIDs, file/line parts: the data file
    ``siglists/message_masks.toml`` plus user masks) to an abort message, then fold whitespace."""
    global _DEFAULT_MASKS
    if masks is None:
        if _DEFAULT_MASKS is None:
            _DEFAULT_MASKS = _default_masks()
        masks = _DEFAULT_MASKS
    # only the first MESSAGE_INPUT_MAX characters count: the result keeps MESSAGE_MAX, and a
    # mask (users write their own) must not meet megabytes of untrusted text
    s = text[:MESSAGE_INPUT_MAX]
    for _name, rx, rep in masks:
        s = rx.sub(rep, s)
    s = _WS.sub(" ", s).strip().rstrip(".").strip()
    if len(s) > MESSAGE_MAX:
        s = s[:MESSAGE_MAX - 3].rstrip() + "..."
    return s


_ABORT_CLASSES = ("EXC_CRASH", "EXC_BREAKPOINT", "EXC_GUARD")
_ABORT_SIGNALS = ("SIGABRT", "SIGTRAP", "SIGILL")


def _message_candidates(report: Report) -> list[str]:
    out: list[str] = []
    for _owner, lines in (report.asi or {}).items():
        if isinstance(lines, str):
            lines = [lines]
        for line in lines or ():
            if isinstance(line, str) and line.strip():
                out.append(line.strip())
    reason = (report.extra or {}).get("exception_reason") or (report.extra or {}).get(
        "last_exception_reason")
    if isinstance(reason, str) and reason.strip():
        out.append(reason.strip())
    if report.exception_message and not _GENERIC_MESSAGE.match(report.exception_message.strip()):
        out.append(report.exception_message.strip())
    return out


def abort_message(report: Report, masks: list | None = None) -> str | None:
    """The masked assertion/exception message of an abort-like crash, else None."""
    abortish = (report.exception_type in _ABORT_CLASSES or report.signal in _ABORT_SIGNALS
                or bool(report.last_exception_backtrace))
    if not abortish:
        return None
    cands = _message_candidates(report)
    if not cands:
        return None
    best = next((c for c in cands if _MESSAGE_HINTS.search(c)), cands[0])
    masked = mask_message(best, masks)
    return masked or None


# ------------------------------------------------------------------------------------ overflow

_OVERFLOW = re.compile(r"stack overflow|stack guard|excessive recursion|thread stack size exceeded",
                       re.I)


def is_stack_overflow(report: Report, frames: list[Frame],
                      labels: list[str] | None = None) -> bool:
    return _overflow_by_text(report) or _overflow_by_frames(frames, labels)


def _overflow_by_text(report: Report) -> bool:
    texts = [report.exception_subtype, report.exception_message, report.termination_indicator]
    extra = report.extra or {}
    for k in ("vm_region_info", "vmRegionInfo", "exception_note", "crash_note"):
        v = extra.get(k)
        if isinstance(v, str):
            texts.append(v)
    return any(t and _OVERFLOW.search(t) for t in texts)


def _overflow_by_frames(frames: list[Frame], labels: list[str] | None = None) -> bool:
    if len(frames) >= 500:
        labels = labels[:200] if labels is not None else [frame_label(f) for f in frames[:200]]
        _, collapsed = _collapse_recursion(labels)
        return collapsed and len(set(labels)) < 50
    return False


# ------------------------------------------------------------------------------------ walk

def exception_class(report: Report) -> str | None:
    parts = [p for p in (report.exception_type, report.signal) if p]
    return "/".join(parts) if parts else None


def _walk(frames: list[Frame], lists: SigLists, has_message: bool, notes: list[str],
          labels: list[str] | None = None) -> tuple[list[str], int]:
    """Socorro walk. Returns (signature labels, index where the meaningful stack starts)."""
    frames = frames[:MAX_FRAMES_CONSIDERED]
    labels = labels[:MAX_FRAMES_CONSIDERED] if labels is not None else \
        [frame_label(f) for f in frames]
    start = 0
    for i in range(min(len(labels), SENTINEL_SEARCH) - 1, -1, -1):
        if lists.is_("sentinel", labels[i]) or (has_message and lists.is_("sentinel_message",
                                                                           labels[i])):
            start = i
            notes.append(f"sentinel: started at frame {i} ({labels[i]})")
            break
    sig: list[str] = []
    last_module_only = None
    for f, label in zip(frames[start:], labels[start:]):
        if not label or lists.is_("irrelevant", label):
            continue
        if not is_symbolized(f):
            # unsymbolized: collapse repeated module-only frames (Socorro)
            if label == last_module_only:
                continue
            last_module_only = label
        sig.append(label)
        if not lists.is_("prefix", label):
            break
    if not sig and labels:
        sig = [labels[start]]
        notes.append("every frame was irrelevant: used the first frame")
    return sig, start


def _meaningful_stack(frames: list[Frame], start: int, lists: SigLists) -> list[Frame]:
    out = []
    for f in frames[start:]:
        if lists.is_("irrelevant", frame_label(f)):
            continue
        out.append(f)
    return out


def _stack_hash(*parts) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(repr(p).encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return h.hexdigest()[:16]


_SIG_TEXT = re.compile(r"^(?P<frames>.*?)(?: \[(?P<exc>[A-Z][A-Z0-9_]*(?:/[A-Z0-9_]+)?)\]"
                       r"(?: (?P<msg>.*))?)?$", re.S)


def split_signature_text(signature: str) -> tuple[str, str]:
    """(frame part, tail) of a combined signature; the tail is ``[EXC] message`` or ''."""
    m = _SIG_TEXT.match(signature or "")
    if not m:
        return signature or "", ""
    frames = m.group("frames")
    return frames, signature[len(frames):].strip()


def combine(frames_signature: str, exc: str | None, message: str | None) -> str:
    s = frames_signature
    if exc:
        s += f" [{exc}]"
    if message:
        s += f" {message}"
    s = "".join(ch for ch in s if ch.isprintable())
    s = _WS.sub(" ", s).strip()
    if len(s) > SIGNATURE_MAX:
        s = s[:SIGNATURE_MAX - 3] + "..."
    return s


def compute_signature(report: Report, siglists: SigLists, *,
                      drop_inline: bool = False) -> SignatureResult:
    """Signature, proto signature and similarity stack of one report (frames already normalized).

    Inline frames are kept and carry no mark, so a build that inlined a call (inline entry +
    physical frame) and one that did not (two physical frames) give the same signature and
    stack (measured on the eval set: better than ``drop_inline=True``, docs/clustering.md).
    """
    notes: list[str] = []
    exc = exception_class(report)
    message = abort_message(report, siglists.masks or None)
    source = "crashing-thread"
    frames: list[Frame] = []
    if report.last_exception_backtrace:
        frames = [f for f in report.last_exception_backtrace if not (drop_inline and f.inline)]
        if frames:
            source = "last-exception"
            notes.append("signed the last exception backtrace")
    if not frames:
        frames = [f for f in report.crashing_frames() if not (drop_inline and f.inline)]
    if not frames:
        sig = combine(EMPTY_SIGNATURE, exc, message)
        return SignatureResult(signature=sig, proto_signature="", stack=[],
                               stack_id=_stack_hash(exc, message, ()), notes=notes + [
                                   "no crashing thread frames"],
                               frames_signature=EMPTY_SIGNATURE, exception=exc,
                               message=message, source="none")
    # Everything below depends only on these frame fields, the exception, the message and
    # the report texts that mark an overflow: reports of one bug repeat them (after
    # normalization, addresses aside), so the result is memoized per SigLists (~90% hits on a
    # compile matrix; a key costs ~1/8 of a signature).
    by_text = _overflow_by_text(report)
    key = (exc, message, source, by_text, drop_inline,
           tuple([(f.module, f.symbol, f.function, f.normalized, f.offset) for f in frames]))
    memo = siglists._results
    hit = memo.get(key)
    if hit is not None:
        return replace(hit, stack=list(hit.stack), notes=list(hit.notes))
    res = _sign_frames(frames, siglists, exc, message, source, by_text, notes)
    if len(memo) >= 4096:                       # bounded: a long run sees many distinct bugs
        memo.clear()
    memo[key] = replace(res, stack=list(res.stack), notes=list(res.notes))
    return res


def _sign_frames(frames: list[Frame], siglists: SigLists, exc: str | None, message: str | None,
                 source: str, by_text: bool, notes: list[str]) -> SignatureResult:
    labels = [frame_label(f) for f in frames]     # once per frame (stack overflows: 500+)
    overflow = by_text or _overflow_by_frames(frames, labels)
    if overflow:
        notes.append("stack overflow")
    labels_sig, start = _walk(frames, siglists, message is not None, notes, labels)
    # the meaningful stack (as _meaningful_stack): irrelevant frames after the sentinel dropped
    irrelevant = siglists.is_
    keep = [i for i in range(start, len(frames)) if not irrelevant("irrelevant", labels[i])]
    tokens, collapsed = _collapse_recursion([frame_token(frames[i], labels[i]) for i in keep])
    if collapsed:
        notes.append("recursion collapsed")
    stack = tokens[:STACK_DEPTH]
    proto_labels, _ = _collapse_recursion([labels[i] for i in keep])
    frames_sig = " | ".join(labels_sig)
    if overflow:
        frames_sig = "stackoverflow | " + frames_sig
    return SignatureResult(
        signature=combine(frames_sig, exc, message),
        proto_signature=" | ".join(proto_labels[:PROTO_DEPTH]),
        stack=stack,
        stack_id=_stack_hash(exc, message, frames_sig, stack),
        notes=notes,
        frames_signature=frames_sig,
        exception=exc,
        message=message,
        source=source,
        stack_overflow=overflow,
    )
