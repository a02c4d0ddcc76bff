"""JSON ``.ips`` reports: header object + JSON body -> Report.

Entry points (called by ``triage.reports.detect``):

- ``loads(data) -> object``: orjson, falling back to the stdlib for integers orjson cannot keep
  exact (above 2**64-1 / below -2**63).
- ``report_from_json(header, body, path, sha256, fmt, notes) -> Report``.
- ``report_from_header(header, path, sha256, fmt, notes) -> Report`` (header facts only; used for
  text bodies before the text parser fills the rest).

No regex runs per frame: frames are plain dict lookups.

Ingest speed-up (``raw_images()``): inside ``with raw_images() as held:``, crash bodies keep
``usedImages`` as the decoded JSON list instead of building ~200-600 ``Image`` records per
report: ``Report.images`` is left empty and ``(report, usedImages)`` is appended to ``held``.
Frames are unaffected (their image name/uuid/base/path are resolved, lazily, from the same raw
entries with the same rules). ``images_from_raw(raw)`` builds the ``Image`` list later, exactly as
the normal path would have; ``triage.store.db.unpack`` does so for stored details.
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager
from functools import lru_cache
from contextvars import ContextVar
from typing import Any, Iterator

import orjson

from triage.records import (
    KIND_CRASH,
    KIND_HANG,
    KIND_JETSAM,
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
    as_str,
    canon_uuid,
    clean_symbol,
    fallback_incident_id,
    flag,
    kind_for,
    norm_bug_type,
    parse_time,
    platform_from_number,
    platform_from_os,
    split_os_version,
)

# An integer literal orjson might turn into a float: 20+ digits, or 19+ digits when negative.
# Found with bytes.translate + find (C speed) rather than a regex over the whole body.
_DIGITS = bytes(ord("9") if 48 <= i <= 57 else (ord("-") if i == 45 else 32) for i in range(256))
_RUN20 = b"9" * 20
_NEG19 = b"-" + b"9" * 19
_U64_MAX = 2**64 - 1
_I64_MIN = -(2**63)


def _needs_stdlib(data: bytes) -> bool:
    if len(data) < 20:
        return False
    t = data.translate(_DIGITS)
    # both patterns below contain 19 nines: one scan for that rules them out (the usual case)
    if _RUN20[1:] not in t:
        return False
    for pat, neg in ((_RUN20, False), (_NEG19, True)):
        start = 0
        while True:
            i = t.find(pat, start)
            if i < 0:
                break
            j = i + len(pat)
            while j < len(t) and t[j] == 57:        # "9"
                j += 1
            digits = data[i + 1 if neg else i:j]
            if len(digits) > 20:
                return True
            v = int(digits)
            if (neg and -v < _I64_MIN) or (not neg and v > _U64_MAX):
                return True
            start = j
    return False


def loads(data: bytes) -> Any:
    """Decode one JSON document exactly (big integers stay ints). Raises ValueError."""
    if _needs_stdlib(data):
        return json.loads(data.decode("utf-8", errors="replace"))
    return orjson.loads(data)


def loads_prefix(text: str) -> tuple[Any, str]:
    """Decode the first JSON value of ``text``; return it and what follows (stripped)."""
    dec = json.JSONDecoder()
    s = text.lstrip()
    obj, end = dec.raw_decode(s)
    return obj, s[end:].strip()


# ---------------------------------------------------------------------------------------------
# header


def report_from_header(header: dict | None, path: str, sha256: str, fmt: str,
                       notes: list[str]) -> Report:
    h = header or {}
    bug_type = norm_bug_type(h.get("bug_type"))
    os_version = as_str(h.get("os_version"))
    train, build = split_os_version(os_version)
    incident = as_str(h.get("incident_id")) or as_str(h.get("incident"))
    rep = Report(
        incident_id=incident or fallback_incident_id(sha256),
        path=path,
        sha256=sha256,
        format=fmt,
        bug_type=bug_type,
        kind=kind_for(bug_type),
        process=as_str(h.get("name")) or as_str(h.get("app_name")),
        bundle_id=as_str(h.get("bundleID")),
        app_version=as_str(h.get("app_version")) or None,
        captured_at=parse_time(h.get("timestamp")),
        os_version=os_version,
        os_train=train,
        os_build=build,
        platform=platform_from_number(h.get("platform")) or platform_from_os(os_version),
        header=header if isinstance(header, dict) else None,
        notes=notes,
    )
    return rep


# ---------------------------------------------------------------------------------------------
# body


def _s(v):
    return v if type(v) is str else as_str(v)


def _i(v):
    return v if type(v) is int else as_int(v)


#: set by raw_images(): a list collecting (report, raw usedImages) instead of building Images
_RAW_IMAGES: ContextVar[list | None] = ContextVar("triage_ips_raw_images", default=None)
#: set by raw_images(lazy_threads=True): only the crashing thread's frames become Frame records
_LAZY_THREADS: ContextVar[bool] = ContextVar("triage_ips_lazy_threads", default=False)


@contextmanager
def raw_images(lazy_threads: bool = False) -> Iterator[list]:
    """Within the block, JSON crash bodies keep ``usedImages`` raw (see the module docstring).

    ``lazy_threads=True`` (what ingest uses): only the crashing thread and the
    ``lastExceptionBacktrace`` get Frame records; the other threads keep their metadata (id,
    name, queue, triggered) with an empty ``frames`` list, and each ``held`` entry is
    ``(report, raw usedImages, raw threads, raw lastExceptionBacktrace)``. Ingest stores the file's own bytes, from which
    ``triage.frames.stored`` builds every thread when a stored report is read, so nothing is
    lost; signatures and clustering only ever read the crashing thread.
    """
    held: list = []
    token = _RAW_IMAGES.set(held)
    token2 = _LAZY_THREADS.set(lazy_threads)
    try:
        yield held
    finally:
        _LAZY_THREADS.reset(token2)
        _RAW_IMAGES.reset(token)


def images_from_raw(raw) -> list[Image]:
    """The ``Image`` records for a raw ``usedImages`` list (same as a normal parse builds)."""
    return _images(raw, [])[0]


def _lookup_entry(im) -> tuple:
    """(name, uuid, base, path) of one raw usedImages entry, as _images computes them."""
    if type(im) is not dict:
        return (None, None, None, None)
    g = im.get
    uuid = canon_uuid(g("uuid"))
    path = _s(g("path"))
    name = _s(g("name"))
    if not name and path:
        name = path.rstrip("/").rsplit("/", 1)[-1] or None
    if uuid == ZERO_UUID:
        uuid = None
    return (name, uuid, _i(g("base")), path)


class _LazyLookup:
    """A lookup list whose entries are computed from the raw images on first use."""

    __slots__ = ("raw", "entries")

    def __init__(self, raw: list):
        self.raw = raw
        self.entries: list = [None] * len(raw)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, idx: int) -> tuple:
        e = self.entries[idx]
        if e is None:
            e = self.entries[idx] = _lookup_entry(self.raw[idx])
        return e


_IMAGE_ORDER = ("index", "name", "uuid", "base", "size", "path", "arch", "source", "bundle_id",
                "version")


def _image_kw(*values) -> Image:
    return Image(**dict(zip(_IMAGE_ORDER, values)))


# Positional construction is faster; only used while records.Image keeps this field order.
_make_image = (Image if tuple(f.name for f in dataclasses.fields(Image))[:len(_IMAGE_ORDER)]
               == _IMAGE_ORDER else _image_kw)


def _images(raw, notes: list[str]) -> tuple[list[Image], list[tuple]]:
    """Images and a parallel lookup list of (name, uuid, base, path) for frames.

    Hot loop (200-600 images per report): type checks inline, positional construction.
    """
    images: list[Image] = []
    lookup: list[tuple] = []
    if type(raw) is not list:
        if raw is not None:
            notes.append("usedImages is not a list: images ignored")
        return images, lookup
    add_image = images.append
    add_lookup = lookup.append
    make = _make_image
    str_ = str
    int_ = int
    for i, im in enumerate(raw):
        if type(im) is not dict:
            add_image(Image(index=i))
            add_lookup((None, None, None, None))
            continue
        g = im.get
        uuid = canon_uuid(g("uuid"))
        if uuid == ZERO_UUID:
            uuid = None
        path = g("path")
        if path is not None and type(path) is not str_:
            path = as_str(path)
        name = g("name")
        if name is not None and type(name) is not str_:
            name = as_str(name)
        if not name and path:
            name = path.rstrip("/").rsplit("/", 1)[-1] or None
        base = g("base")
        if base is not None and type(base) is not int_:
            base = as_int(base)
        size = g("size")
        if size is not None and type(size) is not int_:
            size = as_int(size)
        arch = g("arch")
        if arch is not None and type(arch) is not str_:
            arch = as_str(arch)
        source = g("source")
        if source is not None and type(source) is not str_:
            source = as_str(source)
        bundle = g("CFBundleIdentifier")
        if bundle is not None and type(bundle) is not str_:
            bundle = as_str(bundle)
        version = g("CFBundleShortVersionString")
        if version is not None and type(version) is not str_:
            version = as_str(version)
        add_image(make(i, name, uuid, base, size, path, arch, source, bundle, version))
        add_lookup((name, uuid, base, path))
    return images, lookup


_FRAME_ORDER = ("module", "symbol", "offset", "symbol_offset", "inline", "image_index",
                "image_uuid", "image_base", "image_path", "address", "source_file",
                "source_line", "raw_symbol", "symbolicated_by")


def _frame_kw(*values) -> Frame:
    return Frame(**dict(zip(_FRAME_ORDER, values)))


# Positional construction is ~2x faster; only used while records.Frame keeps this field order.
_make_frame = (Frame if tuple(f.name for f in dataclasses.fields(Frame))[:len(_FRAME_ORDER)]
               == _FRAME_ORDER else _frame_kw)


def _frames(raw, lookup: list[tuple], notes: list[str], where: str) -> list[Frame]:
    """Frame objects for one JSON frames array (hot loop: plain dict lookups, no regex)."""
    out: list[Frame] = []
    if type(raw) is not list:
        return out
    n_images = len(lookup)
    bad_index = 0
    append = out.append
    make = _make_frame
    # deep recursion repeats frames with a period of 1 or 2: an equal raw frame gives the same
    # values (a new Frame each time: frames are mutable)
    prev_raw = prev_args = prev2_raw = prev2_args = None
    prev_bad = prev2_bad = 0
    for f in raw:
        if type(f) is not dict:
            continue
        if f == prev_raw:
            append(make(*prev_args))
            bad_index += prev_bad
            continue
        if f == prev2_raw:
            append(make(*prev2_args))
            bad_index += prev2_bad
            prev_raw, prev_args, prev_bad, prev2_raw, prev2_args, prev2_bad = \
                prev2_raw, prev2_args, prev2_bad, prev_raw, prev_args, prev_bad
            continue
        bad_before = bad_index
        g = f.get
        idx = g("imageIndex")
        off = g("imageOffset")
        if type(off) is not int:
            off = as_int(off)
        raw_sym = g("symbol")
        if raw_sym is None:
            sym = None
        else:
            if type(raw_sym) is not str:
                raw_sym = str(raw_sym)
            sym = clean_symbol(raw_sym)
        loc = g("symbolLocation")
        if loc is not None and type(loc) is not int:
            loc = as_int(loc)
        if type(idx) is not int:
            idx = as_int(idx) if idx is not None else None
            if idx is None and g("imageIndex") is not None:
                bad_index += 1
        if idx is not None and 0 <= idx < n_images:
            module, uuid, base, ipath = lookup[idx]
        else:
            module = uuid = base = ipath = None
            if idx is not None:
                bad_index += 1
        inl = g("inline")
        line = g("sourceLine")
        if line is not None and type(line) is not int:
            line = as_int(line)
        sfile = g("sourceFile")
        args = (
            module, sym, off, loc,
            inl is True or (inl is not None and inl is not False and flag(inl)),
            idx, uuid, base, ipath,
            (base + off) if (base is not None and off is not None) else None,
            sfile if type(sfile) is str else None,
            line, raw_sym,
            "report" if sym is not None else None,
        )
        append(make(*args))
        prev2_raw, prev2_args, prev2_bad = prev_raw, prev_args, prev_bad
        prev_raw, prev_args, prev_bad = f, args, bad_index - bad_before
    if bad_index:
        notes.append(f"{where}: {bad_index} frame(s) with imageIndex out of range "
                     f"(0..{n_images - 1}): module unknown")
    return out


def _asi(raw) -> dict[str, list[str]] | None:
    if raw is None:
        return None
    if isinstance(raw, dict):
        out: dict[str, list[str]] = {}
        for k, v in raw.items():
            if isinstance(v, list):
                out[str(k)] = [x if isinstance(x, str) else json.dumps(x) for x in v]
            elif isinstance(v, str):
                out[str(k)] = [v]
            elif v is not None:
                out[str(k)] = [json.dumps(v)]
        return out or None
    if isinstance(raw, list):
        return {"": [x if isinstance(x, str) else json.dumps(x) for x in raw]} or None
    if isinstance(raw, str):
        return {"": [raw]}
    return None


def _fill_crash(rep: Report, b: dict, notes: list[str]) -> None:
    raw_imgs = b.get("usedImages")
    held = _RAW_IMAGES.get()
    lazy = False
    if held is not None and type(raw_imgs) is list:
        lazy = _LAZY_THREADS.get()
        if lazy:
            held.append((rep, raw_imgs, b.get("threads"), b.get("lastExceptionBacktrace")))
        else:
            held.append((rep, raw_imgs))   # Image records are built when (if) they are read
        rep.images = []
        lookup = _LazyLookup(raw_imgs)
    else:
        images, lookup = _images(raw_imgs, notes)
        rep.images = images

    exc = b.get("exception")
    if isinstance(exc, dict):
        rep.exception_type = as_str(exc.get("type"))
        rep.signal = as_str(exc.get("signal"))
        codes = exc.get("codes")
        if isinstance(codes, list):
            codes = ", ".join(str(c) for c in codes)
        rep.exception_codes = as_str(codes)
        rep.exception_subtype = as_str(exc.get("subtype"))
        rep.exception_message = as_str(exc.get("message"))
    term = b.get("termination")
    if isinstance(term, dict):
        rep.termination_namespace = as_str(term.get("namespace"))
        rep.termination_code = as_int(term.get("code"))
        ind = term.get("indicator")
        rep.termination_indicator = as_str(ind) if ind is not None else None
        rep.termination_by_process = as_str(term.get("byProc"))
        rep.termination_by_pid = as_int(term.get("byPid"))
        reasons = term.get("reasons")
        if isinstance(reasons, list) and reasons:
            rep.extra["termination_reasons"] = [str(x) for x in reasons]
    rep.asi = _asi(b.get("asi"))

    raw_threads = b.get("threads")
    threads: list[Thread] = []
    triggered: list[int] = []
    if isinstance(raw_threads, list):
        wanted = _crashing_index(b.get("faultingThread"), raw_threads) if lazy else None
        for i, t in enumerate(raw_threads):
            if not isinstance(t, dict):
                threads.append(Thread(index=i))
                continue
            trig = flag(t.get("triggered"))
            if trig:
                triggered.append(i)
            threads.append(Thread(
                index=i,
                id=as_int(t.get("id")),
                name=as_str(t.get("name")),
                queue=as_str(t.get("queue")),
                triggered=trig,
                frames=(_frames(t.get("frames"), lookup, notes, f"thread {i}")
                        if not lazy or i == wanted else []),
            ))
    elif raw_threads is None:
        notes.append("body has no threads: report stored without frames")
    else:
        notes.append("threads is not a list: report stored without frames")
    rep.threads = threads

    ft = b.get("faultingThread")
    ft_i = as_int(ft)
    crashing = None
    if ft_i is not None and 0 <= ft_i < len(threads):
        crashing = ft_i
        if triggered and ft_i not in triggered:
            notes.append(f"faultingThread {ft_i} disagrees with triggered thread {triggered[0]}: "
                         f"using faultingThread")
    else:
        if ft is not None and threads:
            notes.append(f"faultingThread {ft!r} out of range (0..{len(threads) - 1})"
                         + (f": using triggered thread {triggered[0]}" if triggered else ""))
        if triggered:
            crashing = triggered[0]
    if crashing is not None and 0 <= crashing < len(threads):
        threads[crashing].triggered = True
    elif threads and rep.kind == KIND_CRASH:
        notes.append("no crashing thread: neither faultingThread nor a triggered thread")
    rep.crashing_thread = crashing

    leb = b.get("lastExceptionBacktrace")
    if isinstance(leb, list):
        rep.last_exception_backtrace = _frames(leb, lookup, notes, "lastExceptionBacktrace")
    else:
        asib = b.get("asiBacktraces")
        if isinstance(asib, list) and asib and isinstance(asib[0], str):
            from triage.reports.text import parse_frame_line

            frames = [f for f in map(parse_frame_line, asib[0].splitlines()) if f is not None]
            if frames:
                rep.last_exception_backtrace = frames
                notes.append("asiBacktraces[0] (text) stored as last_exception_backtrace")


_clean = lru_cache(maxsize=65536)(clean_symbol)


def symbol_facts(raw_threads, raw_images, skip: int | None = None,
                 seen: set | None = None, raw_leb=None) -> Iterator[tuple]:
    """``(image_uuid, offset, symbol_offset, symbol)`` for every symbolicated, non-inline frame of
    the raw ``threads`` (all but thread ``skip``) and of the raw ``lastExceptionBacktrace``
    ``raw_leb``, with the uuid, offset and symbol a parsed Frame would carry: what peer
    symbolication learns from a report, without building Frame records (lazy ingest). ``seen``
    (``PeerSymbols.seen``): frames whose ``(uuid, offset, symbol_offset, symbol as written)`` is
    in it are skipped (an identical fact teaches nothing new), the others added."""
    lookup = raw_images if isinstance(raw_images, _LazyLookup) else _LazyLookup(
        raw_images if type(raw_images) is list else [])
    n_images = len(lookup)
    lists = []
    if type(raw_threads) is list:
        lists = [t.get("frames") for i, t in enumerate(raw_threads)
                 if i != skip and type(t) is dict]
    if raw_leb is not None:
        lists.append(raw_leb)
    for frames in lists:
        if type(frames) is not list:
            continue
        for f in frames:
            if type(f) is not dict:
                continue
            g = f.get
            raw_sym = g("symbol")
            if raw_sym is None:
                continue
            loc = g("symbolLocation")
            off = g("imageOffset")
            idx = g("imageIndex")
            # fast path: the usual all-integer, non-inline frame of a known image
            if (type(loc) is int and type(off) is int and type(idx) is int and type(raw_sym)
                    is str and "inline" not in f and 0 <= loc <= off and 0 <= idx < n_images):
                uuid = lookup[idx][1]
                if uuid is not None:
                    if seen is not None:
                        key = (uuid, off, loc, raw_sym)
                        if key in seen:
                            continue
                        seen.add(key)
                    sym = _clean(raw_sym)
                    if sym is not None:
                        yield uuid, off, loc, sym
                continue
            off = g("imageOffset")
            if type(loc) is not int:
                loc = as_int(loc)
            if type(off) is not int:
                off = as_int(off)
            if loc is None or off is None or loc < 0 or loc > off:
                continue
            inl = g("inline")
            if inl is True or (inl is not None and inl is not False and flag(inl)):
                continue
            idx = g("imageIndex")
            if type(idx) is not int:
                idx = as_int(idx) if idx is not None else None
            if idx is None or not 0 <= idx < n_images:
                continue
            uuid = lookup[idx][1]
            if uuid is None:
                continue
            sym = clean_symbol(raw_sym if type(raw_sym) is str else str(raw_sym))
            if sym is not None:
                yield uuid, off, loc, sym


def _crashing_index(ft, raw_threads: list) -> int | None:
    """The thread _fill_crash will choose as crashing (faultingThread, else the first
    triggered one), computed before any frame is built (lazy mode)."""
    ft_i = as_int(ft)
    if ft_i is not None and 0 <= ft_i < len(raw_threads):
        return ft_i
    for i, t in enumerate(raw_threads):
        if type(t) is dict and flag(t.get("triggered")):
            return i
    return None


def _jetsam_extra(rep: Report, b: dict) -> None:
    extra = rep.extra
    largest = b.get("largestProcess")
    if largest is not None:
        extra["largest_process"] = as_str(largest)
    procs = b.get("processes")
    killed = []
    reasons: dict[str, int] = {}
    if isinstance(procs, list):
        extra["process_count"] = len(procs)
        for p in procs:
            if isinstance(p, dict) and p.get("reason"):
                r = as_str(p.get("reason"))
                killed.append({"name": as_str(p.get("name")), "pid": as_int(p.get("pid")),
                               "reason": r, "rpages": as_int(p.get("rpages"))})
                if r:
                    reasons[r] = reasons.get(r, 0) + 1
    if killed:
        extra["killed"] = killed
    reason = as_str(b.get("reason"))
    if reason is None and reasons:
        reason = max(reasons.items(), key=lambda kv: kv[1])[0]
    if reason is not None:
        extra["reason"] = reason
    if b.get("pageSize") is not None:
        extra["page_size"] = as_int(b.get("pageSize"))
    if rep.process is None and largest:
        rep.process = as_str(largest)


def _panic_extra(rep: Report, b: dict) -> None:
    ps = b.get("panicString")
    if not isinstance(ps, str):
        ps = b.get("string") if isinstance(b.get("string"), str) else None
    if ps:
        first = next((ln.strip() for ln in ps.splitlines() if ln.strip()), "")
        rep.extra["panic"] = first
    for key in ("product", "socId", "kernel", "panicFlags", "macOSPanicString"):
        if key in b and key != "macOSPanicString":
            v = b[key]
            if isinstance(v, (str, int)) and not isinstance(v, bool):
                rep.extra[key] = v


def report_from_json(header: dict | None, body: Any, path: str, sha256: str, fmt: str,
                     notes: list[str]) -> Report:
    if not isinstance(body, dict):
        raise ParseError(f"report body is a JSON {type(body).__name__}, not an object")
    h = header if isinstance(header, dict) else {}
    b = body
    rep = report_from_header(header, path, sha256, fmt, notes)
    if rep.bug_type is None:
        rep.bug_type = norm_bug_type(b.get("bug_type"))
        rep.kind = kind_for(rep.bug_type)
    if rep.kind != KIND_CRASH and rep.bug_type is None and (
            "threads" in b and ("exception" in b or "faultingThread" in b)):
        rep.kind = KIND_CRASH
        notes.append("no bug_type: classified as crash from its body")

    incident = as_str(b.get("incident"))
    hdr_incident = as_str(h.get("incident_id"))
    if incident and hdr_incident and incident.upper() != hdr_incident.upper():
        notes.append(f"header incident_id {hdr_incident} differs from body incident {incident}")
    if not hdr_incident and incident:
        rep.incident_id = incident

    rep.process = as_str(b.get("procName")) or rep.process
    rep.process_path = as_str(b.get("procPath"))
    rep.pid = as_int(b.get("pid"))
    rep.parent_process = as_str(b.get("parentProc"))
    rep.parent_pid = as_int(b.get("parentPid"))
    rep.responsible_process = as_str(b.get("responsibleProc"))
    rep.responsible_pid = as_int(b.get("responsiblePid"))
    bi = b.get("bundleInfo")
    if isinstance(bi, dict):
        rep.bundle_id = as_str(bi.get("CFBundleIdentifier")) or rep.bundle_id
        rep.app_version = as_str(bi.get("CFBundleShortVersionString")) or rep.app_version
    cap = parse_time(b.get("captureTime")) or parse_time(b.get("date"))
    if cap:
        rep.captured_at = cap
    rep.launched_at = parse_time(b.get("procLaunch"))
    osv = b.get("osVersion")
    if isinstance(osv, dict):
        rep.os_train = as_str(osv.get("train")) or rep.os_train
        rep.os_build = as_str(osv.get("build")) or rep.os_build
        rep.os_release_type = as_str(osv.get("releaseType"))
    elif isinstance(osv, str) and rep.os_version is None:
        rep.os_version = osv
        rep.os_train, rep.os_build = split_os_version(osv)
    if rep.os_version is None and isinstance(b.get("build"), str):   # stackshots, panics
        rep.os_version = b["build"]
        rep.os_train, rep.os_build = split_os_version(b["build"])
    if rep.platform is None:
        rep.platform = platform_from_os(rep.os_version) or platform_from_os(rep.os_train)
    rep.hardware_model = as_str(b.get("modelCode")) or as_str(b.get("product"))
    rep.cpu_type = as_str(b.get("cpuType"))
    rep.crash_reporter_key = as_str(b.get("crashReporterKey"))

    if rep.kind == KIND_CRASH or "threads" in b or "usedImages" in b:
        _fill_crash(rep, b, notes)
    if rep.kind == KIND_JETSAM:
        _jetsam_extra(rep, b)
    elif rep.kind == KIND_PANIC:
        _panic_extra(rep, b)
    elif rep.kind == KIND_HANG:
        for key in ("reason", "duration", "procName"):
            if key in b and isinstance(b[key], (str, int, float)):
                rep.extra[key] = b[key]
    elif rep.kind == KIND_RESOURCE:
        for key in ("reason", "event", "action"):
            if key in b and isinstance(b[key], (str, int, float)):
                rep.extra[key] = b[key]
    if rep.kind == KIND_CRASH and not rep.threads and not b.get("procName") \
            and rep.exception_type is None:
        raise ParseError("crash report body has no threads, process or exception")
    return rep
