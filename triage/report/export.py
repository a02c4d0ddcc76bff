"""Bug-tracker drafts: one per cluster (GitHub, Jira, markdown), filed once, then updates.

Each draft carries the cluster's fingerprint twice: a marker line in the body (hidden
``<!-- triage-fingerprint: C-3f9a2c -->``; for Jira, whose wiki markup shows HTML comments, a
grey footer line ``triage-fingerprint: C-3f9a2c``) and a label (``triage:C-3f9a2c``). ``triage
filed ID URL`` records where a cluster was filed (table ``filed``); later exports of that
cluster, or of the cluster it was merged into, write an *update* of the earliest-filed issue (a
comment draft with what is new since the last snapshot) instead of a new issue.

Files written in ``--out DIR`` (see docs/reports.md):

- github: ``<id>.json`` (``{"title", "body", "labels"}``, POST /repos/{owner}/{repo}/issues) and
  ``<id>.md`` (the body, for ``gh issue create --title ... --body-file <id>.md``); updates:
  ``<id>.comment.json`` (``{"body"}``, POST .../issues/{n}/comments) and ``<id>.comment.md``.
- jira: ``<id>.json`` (``{"fields": {...}}``, POST /rest/api/2/issue); updates
  ``<id>.comment.json`` (``{"body"}``, POST /rest/api/2/issue/{key}/comment).
- markdown: ``<id>.md`` (title as heading, then the body); updates ``<id>.update.md``.
- ``index.json``: the list of drafts written (the ``export --format json`` array).

Draft files of earlier exports that an export does not write again are removed from ``--out``.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from triage.errors import UserError
from triage.report.build import build_report, resolve_cluster_id
from triage.report.redact import Redactor, redactor_for
from triage.report.render_text import encodings_text, flags_text
from triage.store.db import jdump, jload

TRACKERS = ("github", "jira", "markdown")
MAX_FILES_LISTED = 50
MARKER = "<!-- triage-fingerprint: {id} -->"
#: Jira wiki markup has no hidden comment: there the marker is a small grey footer line
JIRA_MARKER = "{{color:#97a0af}}triage-fingerprint: {id}{{color}}"
SNAPSHOT_META = "export_snapshot:"
#: draft files export writes into --out (per cluster); anything else there is left alone
DRAFT_FILE_RE = re.compile(r"^(C-[0-9A-Za-z]+)\.(?:json|md|comment\.json|comment\.md|update\.md|"
                           r"report\.(?:ips|crash|txt))$")


def fingerprint_marker(cid: str, tracker: str = "github") -> str:
    """The marker line ending every draft body: an HTML comment (hidden by GitHub and by
    markdown renderers); for Jira, whose wiki markup shows HTML comments as text, a grey footer
    line ``triage-fingerprint: C-3f9a2c``."""
    return (JIRA_MARKER if tracker == "jira" else MARKER).format(id=cid)


def fingerprint_label(cid: str) -> str:
    return f"triage:{cid}"


def find_fingerprint(text: str) -> str | None:
    """The cluster id in a body's fingerprint marker (to match issues back to clusters)."""
    m = re.search(r"<!-- triage-fingerprint: (\S+) -->", text or "") or \
        re.search(r"triage-fingerprint: (C-[0-9A-Za-z]+)", text or "")
    return m.group(1) if m else None


def check_labels(labels: list[str], tracker: str) -> list[str]:
    """The labels, duplicates dropped; UserError (one line) for a label the tracker's REST API
    rejects: empty (every tracker), longer than 50 characters (GitHub label names), containing
    whitespace (Jira labels are single words) or longer than 255 characters (Jira)."""
    out: list[str] = []
    for lab in labels:
        if not isinstance(lab, str) or not lab.strip():
            raise UserError(f"--label {lab!r}: empty label (trackers reject empty labels)")
        if lab != lab.strip():
            raise UserError(f"--label {lab!r}: leading or trailing spaces")
        if tracker == "jira" and re.search(r"\s", lab):
            dashed = re.sub(r"\s+", "-", lab)
            raise UserError(f"--label {lab!r}: Jira labels cannot contain spaces (use "
                            f"{dashed!r})")
        if tracker == "jira" and len(lab) > 255:
            raise UserError(f"--label {lab[:20]!r}...: longer than 255 characters (Jira's limit)")
        if tracker == "github" and len(lab) > 50:
            raise UserError(f"--label {lab[:20]!r}...: longer than 50 characters (GitHub's "
                            f"limit for label names)")
        if lab not in out:
            out.append(lab)
    return out


# ----------------------------------------------------------------------------- facts

def _exception(store, cid: str, representative: str | None = None) -> dict[str, Any]:
    """The exception fields of ``representative`` (the newest crash in the report's range),
    else of the cluster's newest crash."""
    cols = ("SELECT exception_type, signal, exception_subtype, termination_indicator, "
            "exception_message FROM incidents ")
    row = None
    if representative:
        row = store.conn.execute(cols + "WHERE incident_id=?", (representative,)).fetchone()
    if row is None:
        row = store.conn.execute(cols + "WHERE cluster_id=? ORDER BY captured_ts DESC LIMIT 1",
                                 (cid,)).fetchone()
    keys = ["exception_type", "signal", "exception_subtype", "termination_indicator",
            "exception_message"]
    return dict(zip(keys, row)) if row else {k: None for k in keys}


def _compiles(store, cid: str, limit: int = 20,
              incidents: list[str] | None = None) -> list[dict]:
    """The compile records linked to the cluster's crashes, newest first; with ``incidents``
    (the crashes in the report's range), only those linked to them."""
    if incidents is None:
        rows = store.conn.execute(
            "SELECT c.raw, c.config, c.process FROM compiles c WHERE c.id IN "
            "(SELECT DISTINCT compile_id FROM incidents WHERE +cluster_id=? "
            "AND compile_id IS NOT NULL) ORDER BY c.started_ts DESC LIMIT ?",
            (cid, limit)).fetchall()
    else:
        ids: set[int] = set()
        for i in range(0, len(incidents), 500):
            chunk = incidents[i:i + 500]
            ids.update(r[0] for r in store.conn.execute(
                f"SELECT DISTINCT compile_id FROM incidents WHERE incident_id IN "
                f"({','.join('?' * len(chunk))}) AND compile_id IS NOT NULL", chunk))
        rows = []
        id_list = sorted(ids)
        for i in range(0, len(id_list), 500):
            chunk = id_list[i:i + 500]
            rows.extend(store.conn.execute(
                f"SELECT c.raw, c.config, c.process, c.started_ts FROM compiles c WHERE c.id IN "
                f"({','.join('?' * len(chunk))})", chunk))
        rows.sort(key=lambda r: (r[3] is None, -(r[3] or 0)))
        rows = [r[:3] for r in rows[:limit]]
    out = []
    for raw, config, process in rows:
        try:
            rec = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            rec = {}
        if not isinstance(rec, dict):
            rec = {}
        rec.setdefault("process", process)
        try:
            rec["_config"] = orjson.loads(config) if config else None
        except orjson.JSONDecodeError:
            rec["_config"] = None
        out.append(rec)
    return out


def _files(store, ids: list[str], limit: int = MAX_FILES_LISTED) -> tuple[list[str], int]:
    """Report file paths of (the newest ``limit`` of) the incidents; total count."""
    chosen = ids[-limit:] if len(ids) > limit else ids
    paths = []
    for i in range(0, len(chosen), 500):
        chunk = chosen[i:i + 500]
        paths += [p for (p,) in store.conn.execute(
            f"SELECT path FROM incidents WHERE incident_id IN ({','.join('?' * len(chunk))}) "
            "ORDER BY captured_ts", chunk)]
    return paths, len(ids)


def _strip_exception_class(sig: str) -> str:
    """The frames part of a signature: ``objc_release | X [EXC_BAD_ACCESS/SIGSEGV] message``
    (or ``EXC_BAD_ACCESS/SIGSEGV objc_release | X``) -> ``objc_release | X``."""
    s = re.sub(r"\s*\[(?:EXC_|SIG)[^\]]*\].*$", "", sig or "", flags=re.S)
    s = re.sub(r"^(?:EXC_[A-Z_]+(?:/SIG[A-Z]+)?|SIG[A-Z]+)\s*[:\-]?\s*", "", s)
    return s.strip()


def draft_title(c: dict, exc: dict) -> str:
    sig = _strip_exception_class(c.get("signature") or "") or "unknown crash"
    what = exc.get("signal") or exc.get("exception_type")
    procs = list((c.get("processes") or {}).keys()) or [None]
    proc = procs[0]
    title = f"[triage {c['id']}] " + (f"{what} in {sig}" if what else sig)
    if proc:
        title += f" ({proc})"
    return title[:250]


def _fmt_counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} ({v})" for k, v in d.items()) or "unknown"


def _configs_table(configs: list[dict], cid: str = "ID", limit: int = 8):
    """("table", headers, rows): the configurations that crashed here first, then the ones
    that compiled (the control group); configurations that only crashed elsewhere are left out."""
    def text(conf):
        if isinstance(conf, dict):
            return ", ".join(f"{k}={v}" for k, v in conf.items() if v is not None)
        return str(conf)

    rel = [cf for cf in configs if isinstance(cf, dict)
           and (cf.get("crashed") or cf.get("succeeded"))]
    rel.sort(key=lambda cf: (-(cf.get("crashed") or 0), -(cf.get("succeeded") or 0)))
    if not rel:
        return None
    rows = [[text(cf.get("config")), str(cf.get("crashed", 0)), str(cf.get("crashed_other", 0)),
             str(cf.get("succeeded", 0))] for cf in rel[:limit]]
    if len(rel) > limit:
        rows.append([f"... {len(rel) - limit} more (`triage show {cid}`)", "", "", ""])
    return ("table", ["configuration", "crashed here", "crashed elsewhere", "compiled"], rows)


def canonical_config(conf) -> str:
    """One configuration as canonical JSON: keys sorted, keys whose value is null dropped (the
    context views list every attribute, null when unset; compile records list only the set
    ones: both name the same configuration)."""
    if isinstance(conf, str):
        try:
            conf = orjson.loads(conf)
        except orjson.JSONDecodeError:
            return conf
    if isinstance(conf, dict):
        conf = {k: v for k, v in conf.items() if v is not None}
    return orjson.dumps(conf, option=orjson.OPT_SORT_KEYS).decode()


def snapshot_of(c: dict, compiles: list[dict]) -> dict[str, Any]:
    """What an update is compared against: counts, builds, configurations, processes."""
    configs = set()
    for cf in c.get("configurations") or []:
        if isinstance(cf, dict) and cf.get("crashed"):
            configs.add(canonical_config(cf.get("config")))
    for rec in compiles:
        if rec.get("_config") is not None:
            configs.add(canonical_config(rec["_config"]))
    return {"cluster": c.get("id"),
            "count_total": c.get("count_total", 0),
            "builds": dict(c.get("builds_total") or c.get("builds") or {}),
            "processes": sorted((c.get("processes") or {}).keys()),
            "hardware_models": sorted((c.get("hardware_models") or {}).keys()),
            "configurations": sorted(configs),
            "last_seen": c.get("last_seen"),
            "taken_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat()}


def diff_snapshot(old: dict | None, new: dict) -> dict[str, Any]:
    old = old or {}
    ob = old.get("builds") or {}
    # snapshots written before configurations were canonical may list one twice
    old_configs = {canonical_config(x) for x in old.get("configurations") or []}
    new_configs: list[str] = []
    for x in new["configurations"]:
        x = canonical_config(x)
        if x not in old_configs and x not in new_configs:
            new_configs.append(x)
    return {
        "new_reports": max(0, new["count_total"] - int(old.get("count_total") or 0)),
        "new_builds": [b for b in new["builds"] if b not in ob],
        "new_configurations": new_configs,
        "new_processes": [p for p in new["processes"] if p not in set(old.get("processes") or [])],
        "new_hardware_models": [h for h in new["hardware_models"]
                                if h not in set(old.get("hardware_models") or [])],
        "since": old.get("taken_at"),
    }


# ----------------------------------------------------------------------------- body

def _seen_build(c: dict, which: str) -> str | None:
    """The OS build of the cluster's first/last crash (``first_seen_build`` /
    ``last_seen_build`` of the report), to print next to ``first_seen``/``last_seen``; reports
    without those fields: ``first_build``/``last_build``."""
    key = f"{which}_seen_build"
    return c.get(key) if key in c else c.get(f"{which}_build")


def body_sections(store, c: dict, exc: dict, compiles: list[dict]) -> list[tuple[str, Any]]:
    """The draft body as (heading, content) sections; content is a str, a list of lines
    (bullets) or ("code", text)."""
    sig = c.get("signature") or "unknown"
    what = " / ".join(x for x in (exc.get("exception_type"), exc.get("signal")) if x)
    sections: list[tuple[str, Any]] = []
    summary = (f"`{sig}` crashed {c['count_total']} time(s) "
               f"({c['count']} in the exported range), first seen {c.get('first_seen')} on "
               f"{_seen_build(c, 'first')}, last seen {c.get('last_seen')} on "
               f"{_seen_build(c, 'last')}. "
               f"Status: **{c['status']}**.")
    if what:
        summary += f" Exception: {what}"
        if exc.get("exception_subtype"):
            summary += f" ({exc['exception_subtype']})"
        summary += "."
    sections.append(("Summary", summary))
    tools = sorted({(r.get("argv") or [None])[0] or r.get("process") for r in compiles
                    if (r.get("argv") or r.get("process"))} - {None})
    env = [f"OS builds: {_fmt_counts(c.get('builds_total') or c.get('builds') or {})}",
           f"Hardware models: {_fmt_counts(c.get('hardware_models') or {})}",
           f"Processes: {_fmt_counts(c.get('processes') or {})}"]
    if tools:
        env.append("Tools: " + ", ".join(str(t) for t in tools))
    sections.append(("Environment", env))
    if compiles:
        rec = compiles[0]
        repro: list = []
        argv = rec.get("argv")
        if argv:
            import shlex

            repro.append(("code", " ".join(shlex.quote(str(a)) for a in argv)))
        facts = []
        if rec.get("cwd"):
            facts.append(f"Working folder: {rec['cwd']}")
        if rec.get("model"):
            facts.append(f"Model: {rec['model']}")
        enc = rec.get("encoding")
        if isinstance(enc, dict):
            facts.append("Encoding: " + ", ".join(f"{k}={v}" for k, v in enc.items()
                                                  if v is not None and k != "ops"))
        flags = rec.get("flags")
        if isinstance(flags, dict) and flags:
            facts.append("Flags: " + ", ".join(f"{k}={v}" for k, v in flags.items()))
        if rec.get("exit_code") is not None:
            facts.append(f"Exit code: {rec['exit_code']}")
        repro.append(facts)
        sections.append(("Reproduction (recorded compile)", repro))
    else:
        sections.append(("Reproduction", "No compile record is linked to these crashes "
                                         "(record compiles with `triage record -- ...`)."))
    sections.append(("Expected vs actual",
                     ["Expected: the compile finishes (or fails with a diagnostic).",
                      f"Actual: the process crashes{(' with ' + what) if what else ''} in "
                      f"`{_strip_exception_class(sig)}`."]))
    if c.get("frames"):
        sections.append(("Crashing thread, top frames", ("code", "\n".join(c["frames"]))))
    counts = [f"{c['count_total']} report(s) in total, {c['count']} in range",
              f"First seen: {c.get('first_seen')} ({_seen_build(c, 'first')})",
              f"Last seen: {c.get('last_seen')} ({_seen_build(c, 'last')})"]
    if c.get("regression"):
        r = c["regression"]
        counts.append(f"Regressed: absent in {r['absent_in']} (compiles of the same "
                      f"configuration recorded), back in {r['back_in']}")
    sections.append(("Counts", counts))
    corr: list = []
    if c.get("finding"):
        corr.append(str(c["finding"]))
    table = _configs_table(c.get("configurations") or [], c["id"])
    if table:
        corr.append(table)
    if c.get("encodings"):
        corr.append("Encodings of the crashes: " + encodings_text(c["encodings"]))
    if c.get("flags"):
        corr.append("Flags of the crashes: " + flags_text(c["flags"]))
    sections.append(("Correlation", corr or "No compile journal linked: nothing to compare."))
    files, total = _files(store, c.get("incidents") or [])
    flist = list(files)
    if total > len(files):
        flist.append(f"... and {total - len(files)} more (`triage report --cluster {c['id']} "
                     f"--format json`)")
    sections.append(("Report files", flist or "none in range"))
    return sections


def to_markdown(sections: list[tuple[str, Any]]) -> str:
    out = []
    for head, content in sections:
        out += [f"### {head}", ""]
        items = content if isinstance(content, list) else [content]
        for it in items:
            if isinstance(it, tuple) and it[0] == "code":
                out += ["```", it[1], "```"]
            elif isinstance(it, tuple) and it[0] == "table":
                esc = lambda x: str(x).replace("|", "\\|")  # noqa: E731
                out += ["", "| " + " | ".join(it[1]) + " |",
                        "|" + "---|" * len(it[1])]
                out += ["| " + " | ".join(esc(x) for x in row) + " |" for row in it[2]]
                out.append("")
            elif isinstance(it, list):
                out += [f"- {x}" for x in it]
            elif isinstance(content, list):
                out.append(f"- {it}")
            else:
                out.append(str(it))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def to_jira(sections: list[tuple[str, Any]]) -> str:
    """Jira wiki markup (REST API v2 ``description``)."""
    out = []
    for head, content in sections:
        out += [f"h3. {head}", ""]
        items = content if isinstance(content, list) else [content]
        for it in items:
            if isinstance(it, tuple) and it[0] == "code":
                out += ["{noformat}", it[1], "{noformat}"]
            elif isinstance(it, tuple) and it[0] == "table":
                esc = lambda x: str(x).replace("|", "\\|") or " "  # noqa: E731
                out.append("||" + "||".join(it[1]) + "||")
                out += ["|" + "|".join(esc(x) for x in row) + "|" for row in it[2]]
            elif isinstance(it, list):
                out += [f"* {_jira_inline(x)}" for x in it]
            elif isinstance(content, list):
                out.append(f"* {_jira_inline(it)}")
            else:
                out.append(_jira_inline(str(it)))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _jira_inline(text: str) -> str:
    text = re.sub(r"`([^`]+)`", r"{{\1}}", str(text))
    return re.sub(r"\*\*([^*]+)\*\*", r"*\1*", text)


def update_lines(c: dict, d: dict, url: str | None, notes: list[str] | None = None
                 ) -> list[str]:
    lines = [f"Update from triage for `{c['id']}`"
             + (f" (filed at {url})" if url else "")
             + (f", since {d['since']}" if d.get("since") else "") + ":", ""]
    lines += [f"- {n}" for n in notes or []]
    lines.append(f"- {d['new_reports']} new report(s); {c['count_total']} in total, "
                 f"last seen {c.get('last_seen')} on {_seen_build(c, 'last')}")
    if d["new_builds"]:
        lines.append("- new OS builds: " + ", ".join(
            f"{b} ({(c.get('builds_total') or {}).get(b, '?')})" for b in d["new_builds"]))
    if d["new_configurations"]:
        lines.append("- new configurations: " + "; ".join(d["new_configurations"]))
    if d["new_processes"]:
        lines.append("- new processes: " + ", ".join(d["new_processes"]))
    if d["new_hardware_models"]:
        lines.append("- new hardware models: " + ", ".join(d["new_hardware_models"]))
    if c.get("finding"):
        lines.append(f"- finding: {c['finding']}")
    lines.append(f"- status: {c['status']}")
    return lines


# ----------------------------------------------------------------------------- export

def current_cluster(store, cid: str) -> str:
    """The cluster that now holds ``cid``'s crashes: ``merged_into`` followed (``triage merge``,
    ``triage recluster``), the same resolution as ``report --cluster``; ``cid`` itself when it
    was not merged or is unknown to the store."""
    try:
        return resolve_cluster_id(store, cid)
    except UserError:
        return cid


def split_sources(store, cid: str) -> list[str]:
    """The clusters ``cid`` was split from (``triage split`` or a recluster split), oldest
    first; [] for a cluster that was not split off another one."""
    src = [r[0] for r in store.conn.execute(
        "SELECT cluster_id FROM cluster_overrides WHERE action='split' AND new_id=? "
        "ORDER BY id", (cid,))]
    for other, note in store.conn.execute(
            "SELECT cluster_id, note FROM clusters WHERE note LIKE 'split by recluster % into %'"):
        ids = re.split(r"[,\s]+", note.split(" into ", 1)[1].strip())
        if cid in ids and other != cid and other not in src:
            src.append(other)
    return src


def filed_records(store) -> list[dict[str, Any]]:
    """``triage filed`` listing, earliest filed first. ``id`` is the cluster as filed,
    ``cluster`` the cluster that now holds its crashes (differs after a merge/recluster)."""
    return [{"id": cid, "url": url, "filed_at": at, "snapshot": jload(snap),
             "cluster": current_cluster(store, cid)}
            for cid, url, at, snap in store.conn.execute(
                "SELECT cluster_id, url, filed_at, snapshot FROM filed ORDER BY filed_at, rowid")]


def filed_by_cluster(store) -> dict[str, dict[str, Any]]:
    """Current cluster id -> its filed issue: the earliest-filed record among the clusters
    merged into it (and its own), with ``others``: the later-filed records of the same
    crashes (they get no updates; the update mentions them)."""
    out: dict[str, dict[str, Any]] = {}
    for r in filed_records(store):                       # earliest first
        if r["cluster"] in out:
            out[r["cluster"]]["others"].append(r)
        else:
            out[r["cluster"]] = {**r, "others": []}
    return out


def record_filed(store, cluster: str, url: str) -> dict[str, Any]:
    """``triage filed ID URL``: remember where a cluster was filed (snapshot: the last export)."""
    if not url.strip():
        raise UserError("filed: the URL is empty")
    cid = resolve_cluster_id(store, cluster)
    snap = store.get_meta(SNAPSHOT_META + cid)
    if snap is None:
        rep = build_report(store, cluster=cid, with_incidents=False)
        c = rep["clusters"][0] if rep["clusters"] else None
        snap = jdump(snapshot_of(c, _compiles(store, cid))) if c else None
    now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    with store.transaction() as conn:
        conn.execute("INSERT INTO filed(cluster_id, url, filed_at, snapshot) VALUES(?,?,?,?) "
                     "ON CONFLICT(cluster_id) DO UPDATE SET url=excluded.url, "
                     "filed_at=excluded.filed_at, snapshot=COALESCE(excluded.snapshot, snapshot)",
                     (cid, url.strip(), now, snap))
    merged_in = [r for r in filed_records(store) if r["cluster"] == cid and r["id"] != cid]
    return {"id": cid, "url": url.strip(), "filed_at": now,
            "also_filed": [{"id": r["id"], "url": r["url"], "filed_at": r["filed_at"]}
                           for r in merged_in]}


def export_drafts(store, tracker: str, out_dir: Path | str, *, since=None, until=None,
                  cluster: str | None = None, process: str | None = None,
                  platform: str | None = None, redact: bool = True,
                  project: str | None = None, issue_type: str = "Bug",
                  labels: list[str] | None = None, attach: bool = True,
                  removed: list[str] | None = None) -> list[dict[str, Any]]:
    """Write one draft per cluster into ``out_dir``; returns the index (one dict per draft).

    Draft files of earlier exports in ``out_dir`` that this export did not write are removed
    (their names are appended to ``removed`` when given): the folder matches ``index.json``.

    ``attach``: next to each new-issue draft, write the newest report file of the cluster in
    range (as ingested, redacted like the draft) for the user to attach to the issue."""
    if tracker not in TRACKERS:
        raise UserError(f"--tracker {tracker!r}: choose one of {', '.join(TRACKERS)}")
    if tracker == "jira" and not project:
        from triage.config import section

        project = section("export").get("jira_project") or section("jira").get("project")
        if not project:
            raise UserError("--tracker jira needs a project key: --project KEY or "
                            "[export] jira_project = \"KEY\" in triage.toml")
    base_labels = check_labels(list(labels or ["triage", "crash"]), tracker)
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the output folder: {exc.strerror or exc}")
    if not out.is_dir():
        raise UserError(f"{out}: not a folder")
    rep = build_report(store, since=since, until=until, cluster=cluster, process=process,
                       platform=platform, with_incidents=True)
    red: Redactor = redactor_for(store, enabled=redact)
    filed = filed_by_cluster(store)
    index = []
    written: set[str] = set()
    meta_updates: dict[str, str] = {}
    filed_updates: dict[str, str] = {}
    for c in rep["clusters"]:
        if c["status"] == "gone" and cluster is None:
            continue                            # nothing in range: nothing to file
        cid = c["id"]
        exc = _exception(store, cid, c.get("representative"))
        compiles = _compiles(store, cid, incidents=c.get("incidents"))
        snap = snapshot_of(c, compiles)
        title = red(draft_title(c, exc))
        marker = fingerprint_marker(cid, tracker)
        clabels = base_labels + [lab for lab in (fingerprint_label(cid), f"status:{c['status']}")
                                 if lab not in base_labels]
        entry: dict[str, Any] = {"id": cid, "status": c["status"], "title": title,
                                 "fingerprint": cid, "labels": clabels}
        fr = filed.get(cid)
        if fr is not None:
            # filed (as this cluster, or as a cluster since merged into it): an update of the
            # earliest-filed issue, never a second new-issue draft of the same crashes
            d = diff_snapshot(fr["snapshot"], snap)
            was = (fr["snapshot"] or {}).get("cluster") or fr["id"]
            notes = []
            if was != cid:
                notes.append(f"`{was}` (the cluster filed here) was merged into `{cid}`: this "
                             f"issue now follows `{cid}` (label `{fingerprint_label(cid)}`)")
            for o in fr["others"]:
                notes.append(f"also filed at {o['url']} as `{o['id']}` (merged into `{cid}`); "
                             f"updates go to this issue only")
            entry.update(kind="update", url=fr["url"], new=d, filed_as=fr["id"],
                         also_filed=[{"id": o["id"], "url": o["url"]} for o in fr["others"]])
            if not (d["new_reports"] or d["new_builds"] or d["new_configurations"]
                    or d["new_processes"] or d["new_hardware_models"] or was != cid):
                entry.update(kind="unchanged", files=[])
                index.append(entry)
                continue
            lines = update_lines(c, d, fr["url"], notes)
            md = red("\n".join(lines + ["", fingerprint_marker(cid)]) + "\n")
            files = _write_update(out, tracker, cid, md, lines, red, marker)
            filed_updates[fr["id"]] = jdump(snap)
        else:
            sections = body_sections(store, c, exc, compiles)
            split_from = []
            for src in split_sources(store, cid):
                fs = filed.get(current_cluster(store, src))
                if fs is not None:
                    split_from.append({"id": src, "url": fs["url"]})
            if split_from:
                entry["split_from"] = split_from
                sections.insert(1, ("Related", [
                    f"Split from `{x['id']}`, filed at {x['url']}: these crashes were counted "
                    f"there until the split (link the two issues)." for x in split_from]))
            attached = _attach_report(store, out, cid, c.get("incidents") or [], red) \
                if attach else None
            entry["attachments"] = [] if attached is None else [str(attached[0])]
            if attached is not None:
                written.add(attached[0].name)
                sections.append(("Attached report", attached[1]))
            if tracker == "jira":
                body = red(to_jira(sections) + "\n" + marker + "\n")
            else:
                body = red(to_markdown(sections) + "\n" + marker + "\n")
            files = _write_new(out, tracker, cid, title, body, clabels, project, issue_type)
            entry["kind"] = "new"
        written |= {Path(f).name for f in files}
        entry["files"] = [str(f) for f in files]
        meta_updates[cid] = jdump(snap)
        index.append(entry)
    _write(out / "index.json", orjson.dumps(index, option=orjson.OPT_INDENT_2))
    gone = _remove_stale(out, written)
    if removed is not None:
        removed.extend(gone)
    with store.transaction() as conn:
        for cid, snap in meta_updates.items():
            conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) "
                         "DO UPDATE SET value=excluded.value", (SNAPSHOT_META + cid, snap))
        for cid, snap in filed_updates.items():
            conn.execute("UPDATE filed SET snapshot=? WHERE cluster_id=?", (snap, cid))
    return index


def _remove_stale(out: Path, written: set[str]) -> list[str]:
    """Remove the draft files (``C-ID.json``, ``.md``, ``.comment.*``, ``.update.md``,
    ``.report.*``) of earlier exports that this export did not write, so ``out`` holds exactly
    the drafts of ``index.json`` (a stale draft posted again would duplicate an issue or a
    comment). Other files are left alone. Returns the names removed."""
    gone = []
    try:
        names = sorted(p.name for p in out.iterdir())
    except OSError as exc:
        raise UserError(f"{out}: cannot list the output folder: {exc.strerror or exc}") from None
    for name in names:
        if name in written or not DRAFT_FILE_RE.match(name) or not (out / name).is_file():
            continue
        try:
            (out / name).unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UserError(f"{out / name}: cannot remove the stale draft: "
                            f"{exc.strerror or exc}") from None
        gone.append(name)
    return gone


def _attach_report(store, out: Path, cid: str, incident_ids: list[str], red: Redactor
                   ) -> tuple[Path, str] | None:
    """Write the newest of ``incident_ids`` as ``out/CID.report.EXT`` (the file as ingested,
    through ``red``); (path, a line for the draft) or None when there is nothing to attach."""
    from triage.frames.stored import original_report

    rows = []                           # per chunk of ids (SQLite's variable limit)
    for start in range(0, len(incident_ids), 900):
        chunk = incident_ids[start:start + 900]
        rows += store.conn.execute(
            f"SELECT coalesce(captured_ts, 0), incident_id, path, captured_at, os_build "
            f"FROM incidents WHERE incident_id IN ({','.join('?' * len(chunk))})",
            chunk).fetchall()
    for _, iid, path, captured, build in sorted(rows, reverse=True):   # newest first
        try:
            data, _ = original_report(store.conn, iid)
        except UserError:
            continue        # an older store whose file is gone: the next newest one
        break
    else:
        return None
    ext = Path(path.split("!", 1)[-1]).suffix.lower()
    dest = out / f"{cid}.report{ext if ext in ('.ips', '.crash', '.txt') else '.ips'}"
    text = red(data.decode("utf-8", errors="surrogateescape"))
    _write(dest, text.encode("utf-8", "surrogateescape"))
    return dest, (f"`{dest.name}`: the newest crash report of this cluster (incident {iid}, "
                  f"{captured}, build {build}), as macOS wrote it"
                  f"{', with user and host names redacted' if red.enabled else ''}. "
                  f"Attach it to the issue.")


def _write(path: Path, text: str | bytes) -> Path:
    try:
        if isinstance(text, str):
            path.write_text(text, encoding="utf-8")
        else:
            path.write_bytes(text)
    except OSError as exc:
        raise UserError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return path


def _write_new(out: Path, tracker: str, cid: str, title: str, body: str, labels: list[str],
               project: str | None, issue_type: str) -> list[Path]:
    dump = lambda o: orjson.dumps(o, option=orjson.OPT_INDENT_2) + b"\n"  # noqa: E731
    if tracker == "github":
        return [_write(out / f"{cid}.json", dump({"title": title, "body": body,
                                                  "labels": labels})),
                _write(out / f"{cid}.md", body)]
    if tracker == "jira":
        return [_write(out / f"{cid}.json", dump({"fields": {
            "project": {"key": project}, "summary": title, "description": body,
            "issuetype": {"name": issue_type}, "labels": labels}}))]
    return [_write(out / f"{cid}.md", f"# {title}\n\nLabels: {', '.join(labels)}\n\n{body}")]


def _write_update(out: Path, tracker: str, cid: str, md: str, lines: list[str], red,
                  marker: str) -> list[Path]:
    dump = lambda o: orjson.dumps(o, option=orjson.OPT_INDENT_2) + b"\n"  # noqa: E731
    if tracker == "github":
        return [_write(out / f"{cid}.comment.json", dump({"body": md})),
                _write(out / f"{cid}.comment.md", md)]
    if tracker == "jira":
        body = red("\n".join(_jira_inline(x) for x in lines) + "\n\n" + marker + "\n")
        return [_write(out / f"{cid}.comment.json", dump({"body": body}))]
    return [_write(out / f"{cid}.update.md", md)]
