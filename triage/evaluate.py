"""Quality harness: score a clustering against a labelled set, side by side with Mozilla siggen.

Labels file (``fixtures/eval/labels.json``)::

    {"version": 1, "labels": {incident_id: true_bug}, "split": {incident_id: "tune"|"holdout"}}

``evaluate(...)`` ingests the labelled reports into a temporary store (or reads an existing one),
then computes pairwise and B-cubed precision / recall / F1 and cluster counts for

- ``triage``: the store's ``incidents.cluster_id`` (what ingest + clustering produced);
- ``siggen``: exact-signature grouping by ``siggen.generator.SignatureGenerator`` fed the raw
  crashing-thread frames of the same reports.

Only labelled incidents of the chosen split are scored; unlabelled reports (non-crash noise)
are ingested too, so they can only hurt (by joining a cluster).
"""

from __future__ import annotations

import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Optional

from triage.errors import UserError, refuse_special_file


# ------------------------------------------------------------------------------------ metrics

def pairwise(pred: dict[str, Any], truth: dict[str, Any]) -> dict[str, float]:
    """Pairwise precision/recall/F1 over all item pairs (items = keys of ``truth``)."""
    items = [i for i in truth if i in pred]
    joint = Counter((pred[i], truth[i]) for i in items)
    pc = Counter(pred[i] for i in items)
    tc = Counter(truth[i] for i in items)

    def c2(n):
        return n * (n - 1) / 2

    tp = sum(c2(n) for n in joint.values())
    pp = sum(c2(n) for n in pc.values())
    tt = sum(c2(n) for n in tc.values())
    p = tp / pp if pp else 1.0
    r = tp / tt if tt else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f}


def bcubed(pred: dict[str, Any], truth: dict[str, Any]) -> dict[str, float]:
    """B-cubed precision/recall/F1 (Bagga & Baldwin), averaged over items."""
    items = [i for i in truth if i in pred]
    if not items:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    joint = Counter((pred[i], truth[i]) for i in items)
    pc = Counter(pred[i] for i in items)
    tc = Counter(truth[i] for i in items)
    p = sum(joint[(pred[i], truth[i])] / pc[pred[i]] for i in items) / len(items)
    r = sum(joint[(pred[i], truth[i])] / tc[truth[i]] for i in items) / len(items)
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f}


def score(pred: dict[str, Any], truth: dict[str, Any]) -> dict[str, Any]:
    items = [i for i in truth if i in pred]
    pw, bc = pairwise(pred, truth), bcubed(pred, truth)
    return {
        "reports": len(items),
        "clusters": len({pred[i] for i in items}),
        "true_bugs": len({truth[i] for i in items}),
        "pairwise_precision": round(pw["precision"], 4),
        "pairwise_recall": round(pw["recall"], 4),
        "pairwise_f1": round(pw["f1"], 4),
        "bcubed_precision": round(bc["precision"], 4),
        "bcubed_recall": round(bc["recall"], 4),
        "bcubed_f1": round(bc["f1"], 4),
    }


def mistakes(pred: dict[str, Any], truth: dict[str, Any], limit: int = 20) -> dict[str, list]:
    """Over-merged predicted clusters and over-split true bugs (for tuning)."""
    items = [i for i in truth if i in pred]
    by_pred: dict[Any, Counter] = defaultdict(Counter)
    by_true: dict[Any, Counter] = defaultdict(Counter)
    for i in items:
        by_pred[pred[i]][truth[i]] += 1
        by_true[truth[i]][pred[i]] += 1
    merged = [{"cluster": str(c), "bugs": dict(t)} for c, t in by_pred.items() if len(t) > 1]
    split = [{"bug": str(b), "clusters": {str(k): v for k, v in c.items()}}
             for b, c in by_true.items() if len(c) > 1]
    return {"over_merged": merged[:limit], "over_split": split[:limit]}


# ------------------------------------------------------------------------------------ labels

def load_labels(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    import json

    refuse_special_file(path)
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: labels file not found")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path}: not a readable labels JSON file: {exc}")
    if not isinstance(doc, dict) or not isinstance(doc.get("labels"), dict):
        raise UserError(f"{path}: expected {{\"version\": 1, \"labels\": {{incident_id: bug}}, "
                        "\"split\": {...}}")
    labels = {str(k): str(v) for k, v in doc["labels"].items() if v is not None}
    split = {str(k): str(v) for k, v in (doc.get("split") or {}).items()}
    return labels, split


def select(labels: dict[str, str], split_of: dict[str, str], split: str) -> dict[str, str]:
    if split == "all":
        return dict(labels)
    if split not in ("tune", "holdout"):
        raise UserError(f"--split must be holdout, tune or all (got {split!r})")
    return {i: b for i, b in labels.items() if split_of.get(i, "tune") == split}


# ------------------------------------------------------------------------------------ siggen

def siggen_crash_data(row) -> dict:
    """siggen input for one stored incident: raw crashing-thread frames (function = the symbol
    as written in the report, module, offsets), abort message from asi, as Socorro would get."""
    from triage.store.db import jload, load_frames

    frames = []
    for f in load_frames(row["frames"]) or []:
        fr: dict[str, Any] = {}
        # the symbol as the report wrote it (not what dSYMs / peers added later)
        fn = f.get("raw_symbol") or (f.get("symbol") if f.get("symbolicated_by") in
                                     (None, "report") else None)
        if fn:
            fr["function"] = fn
        if f.get("module"):
            fr["module"] = f["module"]
        if isinstance(f.get("offset"), int):
            fr["module_offset"] = hex(f["offset"])
        if isinstance(f.get("address"), int):
            fr["offset"] = hex(f["address"])
        if f.get("source_file"):
            fr["file"] = f["source_file"]
            if isinstance(f.get("source_line"), int):
                fr["line"] = f["source_line"]
        frames.append(fr)
    data: dict[str, Any] = {"os": "Mac OS X", "crashing_thread": 0 if frames else None,
                            "threads": [{"frames": frames}] if frames else []}
    asi = jload(row["asi"]) or {}
    msgs = [m for v in asi.values() for m in (v if isinstance(v, list) else [v])
            if isinstance(m, str) and m.strip()]
    if msgs and (row["signal"] in ("SIGABRT", "SIGTRAP") or row["exception_type"] == "EXC_CRASH"):
        data["abort_message"] = msgs[0]
    return data


def siggen_signatures(store, incident_ids: Iterable[str]) -> dict[str, str]:
    import sqlite3

    try:
        from siggen.generator import SignatureGenerator
    except ImportError:  # pragma: no cover
        raise UserError("siggen is not installed (pip install siggen) - needed for the comparison")
    gen = SignatureGenerator()
    ids = list(incident_ids)
    out: dict[str, str] = {}
    for k in range(0, len(ids), 500):
        chunk = ids[k:k + 500]
        cur = store.conn.execute(
            f"SELECT incident_id, frames, asi, signal, exception_type FROM incidents "
            f"WHERE incident_id IN ({','.join('?' * len(chunk))})", chunk)
        cur.row_factory = sqlite3.Row
        for row in cur:
            out[row["incident_id"]] = gen.generate(siggen_crash_data(row)).signature
    return out


# ------------------------------------------------------------------------------------ run

def ingest_reports(store, reports: Path, rule_files: Iterable[Path] = ()) -> dict:
    """Ingest ``reports`` exactly as ``triage ingest`` does (peer symbols included), so the
    scores measure what users get."""
    from triage.ingest import run_ingest

    summary = run_ingest(store, [str(reports)], rule_files=list(rule_files))
    summary["pipeline"] = ["ingest"]
    return summary


def triage_assignment(store) -> dict[str, str]:
    return {iid: cid for iid, cid in store.conn.execute(
        "SELECT incident_id, cluster_id FROM incidents WHERE cluster_id IS NOT NULL")}


def batch_assignment(store, settings) -> dict[str, str]:
    """Cluster the store's stacks in memory with ``settings`` (no writes): for tuning sweeps."""
    from triage.cluster import Scorer, _Interner, _load_stacks, cluster_stacks

    interner = _Interner()
    stacks = _load_stacks(store.conn, "", settings, interner)
    labels = cluster_stacks(stacks, settings, Scorer(settings))
    lab = {st.stack_id: f"L{l}" for st, l in zip(stacks, labels)}
    return {iid: lab[sid] for iid, sid in store.conn.execute(
        "SELECT incident_id, stack_id FROM incidents WHERE stack_id IS NOT NULL") if sid in lab}


def evaluate(labels_path: Path, *, reports: Optional[Path] = None, split: str = "holdout",
             store=None, rule_files: Iterable[Path] = (), with_siggen: bool = True,
             details: bool = False) -> dict[str, Any]:
    """Score triage (and siggen) on the labelled reports; returns the ``eval --format json`` object."""
    from triage.store.db import Store

    labels_path = Path(labels_path)
    labels, split_of = load_labels(labels_path)
    truth = select(labels, split_of, split)
    tmp = None
    ingest_summary = None
    if store is None:
        reports = Path(reports) if reports is not None else labels_path.parent / "reports"
        if not reports.exists():
            raise UserError(f"{reports}: reports folder not found (use --reports DIR)")
        tmp = tempfile.TemporaryDirectory(prefix="triage-eval-")
        store = Store.open(Path(tmp.name) / "eval.db")
        ingest_summary = ingest_reports(store, reports, rule_files)
    try:
        present = {r[0] for r in store.conn.execute("SELECT incident_id FROM incidents")}
        missing = [i for i in truth if i not in present]
        truth = {i: b for i, b in truth.items() if i in present}
        if not truth:
            raise UserError(f"{labels_path}: none of the labelled incidents ({split}) is in the store")
        pred = triage_assignment(store)
        # a labelled crash without a cluster counts as its own singleton
        for i in truth:
            pred.setdefault(i, f"unclustered:{i}")
        result: dict[str, Any] = {
            "labels": str(labels_path), "split": split, "reports": len(truth),
            "missing": len(missing), "true_bugs": len(set(truth.values())),
            "triage": score(pred, truth),
        }
        if with_siggen:
            sg = siggen_signatures(store, truth)
            result["siggen"] = score(sg, truth)
        if details:
            result["triage_mistakes"] = mistakes(pred, truth)
            if with_siggen:
                result["siggen_mistakes"] = mistakes(sg, truth)
        if ingest_summary is not None:
            result["ingest"] = {k: ingest_summary.get(k) for k in
                                ("files_seen", "ingested", "errors", "stage_failures",
                                 "pipeline", "peer_symbolicated")}
            if isinstance(result["ingest"].get("errors"), list):
                result["ingest"]["errors"] = len(result["ingest"]["errors"])
        return result
    finally:
        if tmp is not None:
            store.close()
            tmp.cleanup()


METRICS = ("clusters", "true_bugs", "pairwise_precision", "pairwise_recall", "pairwise_f1",
           "bcubed_precision", "bcubed_recall", "bcubed_f1")


def table_rows(result: dict) -> list[dict]:
    rows = []
    for m in METRICS:
        row = {"metric": m, "triage": result["triage"].get(m)}
        if "siggen" in result:
            row["siggen"] = result["siggen"].get(m)
        rows.append(row)
    return rows
