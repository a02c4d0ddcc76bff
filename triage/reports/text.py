"""Legacy text crash reports (``.crash``, the crash dialog's "Translated Report", iOS 14 ``.ips``
text bodies) and text-bodied ``.ips`` reports (bug_type 202 cpu_resource and friends).

Entry points (called by ``triage.reports.detect``):

- ``parse_text(text, path, sha256, notes, fmt) -> Report``
- ``parse_text_body(header, text, path, sha256, notes) -> Report`` (JSON header + text body)

Grammar: docs/formats.md and /work/shared/notes/apple-crash-formats.md section 6.
"""

from __future__ import annotations

import re

from triage.records import (
    KIND_CRASH,
    KIND_HANG,
    KIND_PANIC,
    KIND_RESOURCE,
    Frame,
    Image,
    ParseError,
    Report,
    Thread,
)
from triage.reports.common import (
    ZERO_UUID,
    as_int,
    canon_uuid,
    clean_symbol,
    fallback_incident_id,
    kind_for,
    norm_bug_type,
    parse_time,
    platform_from_os,
    split_os_version,
)

# --- line grammars ----------------------------------------------------------------------------

# Linear-time patterns only (a report is untrusted input): each runs on a right-stripped line,
# a lazy group never ends inside a run of blanks ((?<![ \t]) before a possessive blank run), so
# a line of thousands of spaces costs one pass, not a cubic backtrack.
_KV = re.compile(r"^([A-Za-z][A-Za-z0-9 /_.()-]{0,40}?):[ \t]++(\S.*)$")
_THREAD_HDR = re.compile(r"^Thread[ \t]++(\d++)(?:[ \t]++(Crashed))?[ \t]*+:++[ \t]*+(.*)$")
_THREAD_NAME = re.compile(r"^Thread[ \t]++(\d++)[ \t]++name:[ \t]*+(.*)$")
_THREAD_STATE = re.compile(r"^Thread[ \t]+\d+[ \t]+(?:crashed with|instruction state)", re.I)
_FRAME = re.compile(
    r"^[ \t]*+(\d++)[ \t]++(?:(.+?)(?<![ \t])[ \t]++)?(0x[0-9a-fA-F]++)(?:[ \t]++(.*))?$")
_SRC = re.compile(r"\(([^()]+?):(\d+)(?::\d+)?\)$")       # matched at the last "(" only
_LOAD_OFF = re.compile(r"^(0x[0-9a-fA-F]+)[ \t]+\+[ \t]+(\d+)(?:[ \t]+\((.*)\))?$")
_SYM_OFF = re.compile(r"^(.*?)(?<![ \t])[ \t]++\+[ \t]++(\d++)$")
_IMAGE = re.compile(
    r"^[ \t]*+(0x[0-9a-fA-F]++)[ \t]*+-[ \t]*+(0x[0-9a-fA-F]++)[ \t]++(.*)$")
_UUID_IN = re.compile(r"<([0-9a-fA-F-]{32,36})>")
_NAME_PID = re.compile(r"^(.*?)(?<![ \t])[ \t]*+\[(\d++)\]")
_EXC_TYPE = re.compile(r"^(\S+)(?:[ \t]*\(([^()]*)\))?")
_TERM = re.compile(r"Namespace[ \t]+([A-Za-z_]+)(?:,[ \t]*Code[ \t]+(0x[0-9a-fA-F]+|-?\d+))?")
_TID = re.compile(r"^tid_([0-9a-fA-F]+)[ \t]*")
_ADDR_LIST = re.compile(r"0x[0-9a-fA-F]+")
_TRAIL_PATH = re.compile(r"[ \t](/.*|\?\?\?)$")
_TRAIL_PAREN = re.compile(r"\(([^()]*)\)$")

_ARCHES = frozenset(("arm64", "arm64e", "arm64_32", "armv7", "armv7s", "armv7k", "armv6", "arm",
                     "x86_64", "x86_64h", "i386", "ppc", "ppc64", "arm64e.old"))

# Header keys -> handler name (a table, not a chain of ifs).
_SECTION_STARTS = ("Application Specific Information:", "Last Exception Backtrace:",
                   "Binary Images:")


def _name_pid(value: str) -> tuple[str | None, int | None]:
    m = _NAME_PID.match(value)
    if m:
        return (m.group(1).strip() or None), int(m.group(2))
    return (value.strip() or None), None


def _thread_label(rest: str, th: Thread) -> None:
    """``tid_103 Dispatch queue: com.apple.main-thread`` / ``SGen worker`` -> th.id/name/queue."""
    if not rest:
        return
    m = _TID.match(rest)
    if m:
        th.id = int(m.group(1), 16)
        rest = rest[m.end():]
    if "Dispatch queue:" in rest:
        before, _, q = rest.partition("Dispatch queue:")
        th.queue = q.strip() or th.queue
        before = before.strip()
        if before:
            th.name = before
    elif rest.strip():
        th.name = rest.strip()


def parse_frame_line(line: str) -> Frame | None:
    """One text frame line -> Frame (module/address/symbol/offsets), or None if not a frame."""
    m = _FRAME.match(line.rstrip())
    if not m:
        return None
    module = (m.group(2) or "").strip()
    addr = int(m.group(3), 16)
    rest = m.group(4) or ""
    inline = False
    if rest.endswith("[inlined]"):
        inline = True
        rest = rest[:-len("[inlined]")].rstrip()
    src_file = src_line = None
    i = rest.rfind("(") if rest.endswith(")") else -1
    if i > 0 and rest[i - 1] in " \t":
        ms = _SRC.match(rest, i)
        if ms and not _LOAD_OFF.match(rest):
            src_file, src_line = ms.group(1), int(ms.group(2))
            rest = rest[:i]
    rest = rest.strip()
    fr = Frame(module=None if module in ("???", "") else module, address=addr, inline=inline,
               source_file=src_file, source_line=src_line)
    ml = _LOAD_OFF.match(rest)
    if ml:
        load = int(ml.group(1), 16)
        fr.image_base = load
        fr.offset = int(ml.group(2))
        inner = ml.group(3)
        if inner:                                  # KSCrash: 0x28000 + 30048 (sym + 24)
            mo = _SYM_OFF.match(inner.strip())
            raw = mo.group(1) if mo else inner.strip()
            fr.raw_symbol = raw
            fr.symbol = clean_symbol(raw)
            if mo:
                fr.symbol_offset = int(mo.group(2))
        else:
            fr.raw_symbol = ml.group(1)
            fr.symbol = None
    elif rest:
        mo = _SYM_OFF.match(rest)
        raw = mo.group(1) if mo else rest
        fr.raw_symbol = raw
        fr.symbol = clean_symbol(raw)
        if mo:
            fr.symbol_offset = int(mo.group(2))
    if fr.symbol is not None:
        fr.symbolicated_by = "report"
    return fr


def parse_image_line(line: str, index: int) -> Image | None:
    """One ``Binary Images`` line (iOS or macOS form) -> Image, or None."""
    m = _IMAGE.match(line.rstrip())
    if not m:
        return None
    start, end = int(m.group(1), 16), int(m.group(2), 16)
    rest = m.group(3)
    uuid = None
    path = None
    mu = _UUID_IN.search(rest)
    if mu:
        uuid = canon_uuid(mu.group(1))
        path = rest[mu.end():].strip() or None
        middle = rest[:mu.start()].strip()
    else:
        # no UUID: path is the trailing absolute path (or ???)
        mp = _TRAIL_PATH.search(rest)
        if mp:
            path = mp.group(1).strip()
            middle = rest[:mp.start()].strip()
        else:
            middle = rest.strip()
    if path == "???":
        path = None
    if middle.startswith("+"):
        middle = middle[1:].strip()
    version = None
    arch = None
    mv = _TRAIL_PAREN.search(middle) if middle.endswith(")") else None
    if mv:
        inner = mv.group(1).strip()
        middle = middle[:mv.start()].strip()
        if inner in _ARCHES:
            arch = inner
        elif inner and inner != "???":
            version = inner
    if " " in middle or "\t" in middle:
        head, _, last = middle.rpartition(" ")
        if last.strip() in _ARCHES:
            arch = last.strip()
            middle = head.strip()
    elif middle in _ARCHES:
        arch, middle = middle, ""
    name = middle or (path.rsplit("/", 1)[-1] if path else None)
    if uuid == ZERO_UUID:
        uuid = None
    bundle_id = None
    base_name = path.rsplit("/", 1)[-1] if path else None
    if name and "." in name and base_name and name != base_name \
            and not name.endswith((".dylib", ".so")) and " " not in name:
        # macOS form names the bundle; keep the binary's name like JSON usedImages do
        bundle_id = name
        name = base_name
    size = end - start + 1 if end >= start else None
    return Image(index=index, name=name, uuid=uuid, base=start, size=size, path=path, arch=arch,
                 bundle_id=bundle_id, version=version)


# --- the parser -------------------------------------------------------------------------------


def _set_header(rep: Report, key: str, value: str, st: dict) -> None:
    k = key.strip().lower()
    notes = rep.notes
    if k == "incident identifier":
        rep.incident_id = value
    elif k in ("crashreporter key", "anonymous uuid"):
        rep.crash_reporter_key = rep.crash_reporter_key or value
    elif k in ("hardware model", "model"):
        rep.hardware_model = rep.hardware_model or value.split(",  ")[0].strip()
    elif k in ("process", "command"):
        name, pid = _name_pid(value)
        rep.process = rep.process or name
        rep.pid = rep.pid if rep.pid is not None else pid
    elif k == "pid":
        rep.pid = rep.pid if rep.pid is not None else as_int(value.split()[0])
    elif k == "path":
        rep.process_path = rep.process_path or value
    elif k == "identifier":
        rep.bundle_id = rep.bundle_id or value
    elif k == "version":
        rep.app_version = rep.app_version or value
    elif k == "code type":
        rep.cpu_type = rep.cpu_type or value.split("(")[0].strip() or None
    elif k == "parent process":
        rep.parent_process, rep.parent_pid = _name_pid(value)
    elif k in ("responsible", "responsible process"):
        rep.responsible_process, rep.responsible_pid = _name_pid(value)
    elif k == "date/time":
        rep.captured_at = parse_time(value, notes) or rep.captured_at
    elif k == "launch time":
        rep.launched_at = parse_time(value, notes)
    elif k == "os version":
        if rep.os_version is None:
            rep.os_version = value
        train, build = split_os_version(value)
        rep.os_train = rep.os_train or train
        rep.os_build = rep.os_build or build
    elif k == "release type":
        rep.os_release_type = value
    elif k == "exception type":
        m = _EXC_TYPE.match(value)
        if m:
            rep.exception_type = m.group(1)
            if m.group(2):
                rep.signal = m.group(2).strip() or None
            elif m.group(1).startswith("SIG"):      # old macOS: "Exception Type: SIGSEGV"
                rep.signal = m.group(1)
    elif k == "exception codes":
        rep.exception_codes = value
    elif k == "exception subtype":
        rep.exception_subtype = value
    elif k in ("exception message", "exception reason"):
        rep.exception_message = value
    elif k == "exception note":
        rep.extra.setdefault("exception_notes", []).append(value)
    elif k == "termination reason":
        m = _TERM.search(value)
        if m:
            rep.termination_namespace = m.group(1)
            if m.group(2):
                rep.termination_code = int(m.group(2), 0)
            tail = value[m.end():].strip()
            if tail:
                rep.termination_indicator = tail
        else:
            rep.termination_indicator = value
    elif k == "terminating process":
        rep.termination_by_process, rep.termination_by_pid = _name_pid(value)
    elif k == "termination signal":
        st.setdefault("termination_signal", value)
    elif k in ("triggered by thread", "crashed thread"):
        m = re.match(r"(\d+)[ \t]*(.*)$", value)
        if m:
            st["crashed"] = int(m.group(1))
            st["crashed_label"] = m.group(2).strip()
    elif k == "beta identifier":
        rep.extra["beta_identifier"] = value
    elif k in ("event", "duration", "steps", "action taken"):
        st.setdefault(k, value)


def parse_text(text: str, path: str, sha256: str, notes: list[str] | None = None,
               fmt: str = "crash-text") -> Report:
    """Legacy text crash report -> Report. ParseError when nothing useful is in it."""
    notes = notes if notes is not None else []
    rep = Report(incident_id="", path=path, sha256=sha256, format=fmt, kind=KIND_CRASH,
                 notes=notes)
    st: dict = {}
    threads: dict[int, Thread] = {}
    order: list[int] = []
    images: list[Image] = []
    asi_lines: list[str] = []
    leb: list[Frame] | None = None
    crashed_marked: list[int] = []

    section = "header"
    cur: list[Frame] | None = None
    saw_frames = False
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            if section in ("asi", "frames", "leb", "state", "other"):
                section = "body"
                cur = None
            continue
        if section == "images":
            im = parse_image_line(line, len(images))
            if im is not None:
                images.append(im)
                continue
            if stripped.startswith(("External Modification Summary", "VM Region Summary",
                                    "Model:", "-----", "EOF", "Extra Information", "Error Formulating")):
                section = "tail"
                continue
            continue                            # wrapped / odd line: keep looking
        if section == "tail":
            continue
        if section in ("asi", "state"):
            if stripped.startswith("Binary Images:"):
                section = "images"
                continue
            if section == "state" or not (_THREAD_HDR.match(line) or _THREAD_NAME.match(line)
                                          or stripped.startswith(_SECTION_STARTS)):
                if section == "asi":
                    asi_lines.append(stripped)
                continue
            section = "body"

        mt = _THREAD_HDR.match(line)
        if mt and not _THREAD_STATE.match(line):
            idx = int(mt.group(1))
            th = threads.get(idx)
            if th is None:
                th = threads[idx] = Thread(index=idx)
                order.append(idx)
            if mt.group(2):
                th.triggered = True
                crashed_marked.append(idx)
            _thread_label(mt.group(3), th)
            cur = th.frames
            section = "frames"
            continue
        mn = _THREAD_NAME.match(line)
        if mn:
            idx = int(mn.group(1))
            th = threads.get(idx)
            if th is None:
                th = threads[idx] = Thread(index=idx)
                order.append(idx)
            _thread_label(mn.group(2), th)
            continue
        if _THREAD_STATE.match(line):
            section = "state"
            cur = None
            continue
        if stripped == "Binary Images:" or stripped.startswith("Binary Images:"):
            section = "images"
            cur = None
            continue
        if stripped.startswith("Application Specific Information:"):
            section = "asi"
            tail = stripped[len("Application Specific Information:"):].strip()
            if tail:
                asi_lines.append(tail)
            continue
        if stripped.startswith("Last Exception Backtrace:"):
            leb = []
            cur = leb
            section = "leb"
            tail = stripped[len("Last Exception Backtrace:"):].strip()
            if tail.startswith("("):
                leb.extend(Frame(address=int(a, 16)) for a in _ADDR_LIST.findall(tail))
            continue
        if stripped.startswith("Application Specific Backtrace"):
            if leb is None:         # old macOS: the uncaught exception's backtrace
                leb = []
                cur = leb
                section = "leb"
                notes.append("Application Specific Backtrace stored as last_exception_backtrace")
            else:
                cur = None
                section = "other"
            continue
        if section in ("frames", "leb") and cur is not None:
            fr = parse_frame_line(line)
            if fr is not None:
                cur.append(fr)
                saw_frames = True
                continue
            if section == "leb" and stripped.startswith("("):
                cur.extend(Frame(address=int(a, 16)) for a in _ADDR_LIST.findall(stripped))
                continue
        if section == "other":
            continue
        mk = _KV.match(line)
        if mk and section in ("header", "body", "frames", "leb"):
            _set_header(rep, mk.group(1), mk.group(2), st)
            section = "header" if section == "header" else "body"
            continue

    # -- assemble ---------------------------------------------------------------------------
    order.sort()
    thread_list: list[Thread] = []
    pos_of: dict[int, int] = {}
    for idx in order:
        th = threads[idx]
        pos_of[idx] = len(thread_list)
        if th.index != len(thread_list):
            notes.append(f"thread numbers are not contiguous (Thread {idx} stored at position "
                         f"{len(thread_list)})")
        th.index = len(thread_list)
        thread_list.append(th)
    rep.threads = thread_list
    rep.images = images
    if asi_lines:
        rep.asi = {"": asi_lines}
    if leb is not None:
        rep.last_exception_backtrace = leb

    crashed = st.get("crashed")
    crashing = None
    if crashed is not None and crashed in pos_of:
        crashing = pos_of[crashed]
        if crashed_marked and crashed not in crashed_marked:
            notes.append(f"Crashed Thread {crashed} disagrees with 'Thread {crashed_marked[0]} "
                         f"Crashed': using {crashed}")
        if st.get("crashed_label") and not thread_list[crashing].queue:
            _thread_label(st["crashed_label"], thread_list[crashing])
    else:
        if crashed is not None:
            notes.append(f"crashed thread {crashed} has no backtrace in the report")
        if crashed_marked and crashed_marked[0] in pos_of:
            crashing = pos_of[crashed_marked[0]]
    for th in thread_list:
        th.triggered = crashing is not None and th.index == crashing
    rep.crashing_thread = crashing
    if crashing is None and thread_list:
        notes.append("no crashed thread marked")

    _resolve_images(rep)

    if rep.signal is None and st.get("termination_signal"):
        sig = st["termination_signal"]
        rep.extra["termination_signal"] = sig
    if not rep.incident_id:
        rep.incident_id = fallback_incident_id(sha256)
    if rep.platform is None:
        rep.platform = platform_from_os(rep.os_version)
    if not saw_frames and rep.exception_type is None:
        other = _other_text_kind(rep, text, st)
        if other is not None:
            return other
        if rep.process or rep.os_version:
            raise ParseError("text report has no exception and no backtrace (truncated?)")
        raise ParseError("not a crash report (no header, exception or backtrace found)")
    if not saw_frames:
        notes.append("no backtrace in the report")
    if rep.exception_type is None:
        notes.append("no Exception Type line (fragment?)")
    return rep


_PANIC = re.compile(r"^[ \t]*panic\(cpu \d+ caller [^)\n]*\):[^\n]*", re.M | re.I)
_EVENT_KINDS = (("hang", KIND_HANG), ("spin", KIND_HANG), ("cpu", KIND_RESOURCE),
                ("wakeups", KIND_RESOURCE), ("disk writes", KIND_RESOURCE),
                ("memory", KIND_RESOURCE))


def _other_text_kind(rep: Report, text: str, st: dict) -> Report | None:
    """Text reports that are not crashes: legacy kernel panics and .hang/.spin/.diag samples."""
    pm = _PANIC.search(text)
    if pm:
        rep.kind = KIND_PANIC
        rep.extra["panic"] = pm.group(0).strip()
        rep.notes.append("text kernel panic: no crash backtrace")
        return rep
    event = st.get("event")
    if event:
        low = event.lower()
        for key, kind in _EVENT_KINDS:
            if key in low:
                rep.kind = kind
                rep.extra["event"] = event
                for k in ("duration", "steps", "action taken"):
                    if st.get(k):
                        rep.extra[k.replace(" ", "_")] = st[k]
                return rep
    return None


def _resolve_images(rep: Report) -> None:
    """Attach image index/uuid/base/path and image offset to every text frame."""
    images = rep.images
    if not images:
        return
    ranges = sorted(((im.base, im.base + (im.size or 1), im) for im in images
                     if im.base is not None), key=lambda t: t[0])
    starts = [r[0] for r in ranges]
    by_base = {im.base: im for im in images if im.base is not None}
    by_name: dict[str, Image] = {}
    for im in images:
        for key in (im.name, im.bundle_id, im.path.rsplit("/", 1)[-1] if im.path else None):
            if key and key not in by_name:
                by_name[key] = im
    import bisect

    def find(fr: Frame) -> Image | None:
        if fr.image_base is not None and fr.image_base in by_base:
            return by_base[fr.image_base]
        if fr.address is not None:
            i = bisect.bisect_right(starts, fr.address) - 1
            if i >= 0 and ranges[i][0] <= fr.address < ranges[i][1]:
                return ranges[i][2]
        if fr.module:
            return by_name.get(fr.module)
        return None

    def fix(frames: list[Frame]) -> None:
        for fr in frames:
            im = find(fr)
            if im is None:
                continue
            fr.image_index = im.index
            fr.image_uuid = im.uuid
            fr.image_path = im.path
            if fr.image_base is None:
                fr.image_base = im.base
            if fr.offset is None and fr.address is not None and im.base is not None \
                    and fr.address >= im.base:
                fr.offset = fr.address - im.base
            if im.name and (fr.module is None or (im.bundle_id and fr.module == im.bundle_id)):
                fr.module = im.name          # "com.apple.SwiftUI" -> "SwiftUI", as in JSON

    for th in rep.threads:
        fix(th.frames)
    if rep.last_exception_backtrace:
        fix(rep.last_exception_backtrace)


# --- JSON header + text body ------------------------------------------------------------------

_RESOURCE_KEYS = {
    "event": "event", "action taken": "action", "duration": "duration", "steps": "steps",
    "cpu": "cpu", "wakeups": "wakeups", "writes": "writes", "data source": "data_source",
    "end time": "end_time", "reason": "reason", "footprint": "footprint",
}


def parse_text_body(header: dict, text: str, path: str, sha256: str,
                    notes: list[str]) -> Report:
    """A JSON header followed by a text body.

    bug_type 109/309 (iOS 14, Xcode exports) or a body that reads as a crash: parsed with the
    legacy text grammar and classified as a crash. Anything else (202 cpu_resource, .diag):
    header facts plus the body's ``Key: value`` lines; never an error.
    """
    from triage.reports import ips

    bug_type = norm_bug_type(header.get("bug_type"))
    kind = kind_for(bug_type)
    crashish = ("Exception Type:" in text or _has_crashed_thread(text))
    if kind == KIND_CRASH or (crashish and kind == "unknown"):
        rep = parse_text(text, path, sha256, notes, "ips-text-body")
        rep.header = header
        rep.bug_type = bug_type
        rep.kind = KIND_CRASH
        hdr_id = header.get("incident_id")
        if isinstance(hdr_id, str) and hdr_id:
            if rep.incident_id.startswith("sha256:"):
                rep.incident_id = hdr_id
            elif rep.incident_id.upper() != hdr_id.upper():
                notes.append(f"header incident_id {hdr_id} differs from the body's "
                             f"{rep.incident_id}")
        hv = header.get("os_version")
        if isinstance(hv, str) and hv:
            rep.os_version = hv
            t, b = split_os_version(hv)
            rep.os_train = rep.os_train or t
            rep.os_build = rep.os_build or b
        hdr = ips.report_from_header(header, path, sha256, "ips-text-body", [])
        rep.platform = hdr.platform or rep.platform
        rep.bundle_id = rep.bundle_id or hdr.bundle_id
        rep.process = rep.process or hdr.process
        rep.captured_at = rep.captured_at or hdr.captured_at
        return rep

    rep = ips.report_from_header(header, path, sha256, "ips-text-body", notes)
    st: dict = {}
    for raw in text.splitlines():
        if not raw.strip():
            continue
        if raw.startswith(("Thread ", "Binary Images", "  ")):
            if raw.startswith("Binary Images"):
                break
            continue
        mk = _KV.match(raw.rstrip())
        if not mk:
            continue
        key, value = mk.group(1).strip(), mk.group(2)
        low = key.lower()
        if low in _RESOURCE_KEYS:
            rep.extra.setdefault(_RESOURCE_KEYS[low], value)
        elif low in ("date/time", "os version", "command", "process", "path", "pid",
                     "hardware model", "model", "identifier", "version", "parent process",
                     "incident identifier", "crashreporter key", "release type",
                     "code type", "responsible"):
            _set_header(rep, key, value, st)
    if rep.platform is None:
        rep.platform = platform_from_os(rep.os_version)
    return rep


def _has_crashed_thread(text: str) -> bool:
    return re.search(r"^Thread \d+ Crashed:", text, re.M) is not None
