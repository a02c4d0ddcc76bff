"""Correlations between crash clusters and compile configurations (pure functions).

Inputs are plain tables: every compile (``id``, ``exit_code``, flattened ``config``) and the
links (``compile_id``, ``cluster_id``) of crash incidents. Per cluster we compute

* ``configurations``: for every configuration seen in the journal, how many compiles crashed in
  this cluster, crashed in another cluster only, succeeded (exit 0, no linked crash), plus
  ``failed`` (non-zero exit, no linked crash report) and ``total``;
* ``correlations``: attribute values over-represented among the compiles that crashed in the
  cluster versus all compiles (Mozilla crash-correlations style): ``in_cluster`` = support among
  the cluster's compiles, ``overall`` = support among all compiles, ``score`` = the support
  difference, ``p_value`` = one-sided Fisher exact test (hypergeometric upper tail) of the 2x2
  table cluster/rest x value/other. Small samples matter (2/2 must be reportable), so the
  p-value is reported but does not filter: a value is listed when it is seen in at least
  ``min(MIN_COUNT, n)`` of the cluster's n compiles and its score is at least ``MIN_SCORE``;
  ``significant`` is ``p_value < ALPHA``;
* ``finding``: one line, e.g. ``crashes only with encoding.scheme=linear, encoding.dtype=int4,
  flags.preferred_compute=neural-engine (2/2 crashed); encoding.scheme=palettized, ... compiled
  1/1``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any, Iterable

from triage.context.journal import ENCODING_KEYS, FLAG_KEYS

ATTRIBUTES = tuple(f"encoding.{k}" for k in ENCODING_KEYS) + tuple(f"flags.{k}" for k in FLAG_KEYS)
MIN_COUNT = 2
MIN_SCORE = 0.05
ALPHA = 0.05
MAX_CONTRASTS = 2
MOSTLY_SUPPORT = 0.75   # "mostly with": a value in >= 75 % of the cluster's compiles ...
MOSTLY_SCORE = 0.3      # ... and >= 30 points above its share of all compiles


def fisher_greater(a: int, n1: int, c: int, n: int) -> float:
    """P(X >= a), X ~ Hypergeometric(population n, successes c, draws n1): one-sided Fisher
    exact p-value that the cluster's compiles carry the value more often than chance."""
    if n <= 0 or n1 <= 0 or c <= 0:
        return 1.0
    hi = min(c, n1)
    lo = max(a, n1 - (n - c), 0)
    if lo > hi:
        return 0.0 if a > hi else 1.0

    def logc(x, y):
        return math.lgamma(x + 1) - math.lgamma(y + 1) - math.lgamma(x - y + 1)

    base = logc(n, n1)
    total = 0.0
    for x in range(lo, hi + 1):
        total += math.exp(logc(c, x) + logc(n - c, n1 - x) - base)
    return min(1.0, max(0.0, total))


def outcome_counts(compiles: list[dict], crashed_in: dict[int, set]) -> dict[int, str]:
    """compile id -> "crashed" | "succeeded" | "failed" | "unknown" (ignoring which cluster)."""
    out = {}
    for c in compiles:
        cid = c["id"]
        if crashed_in.get(cid):
            out[cid] = "crashed"
        elif c.get("exit_code") == 0:
            out[cid] = "succeeded"
        elif c.get("exit_code") is None:
            out[cid] = "unknown"
        else:
            out[cid] = "failed"
    return out


def _cfg_key(cfg: dict) -> tuple:
    return tuple(cfg.get(a) for a in ATTRIBUTES)


def _cfg_dict(key: tuple) -> dict:
    return {a: v for a, v in zip(ATTRIBUTES, key) if v is not None}


def _fmt(v: Any) -> str:
    return str(v)


def compute_contexts(compiles: list[dict], links: Iterable[tuple[int, str]],
                     cluster_ids: Iterable[str]) -> dict[str, dict]:
    """``{cluster_id: {"configurations", "correlations", "finding", "compiles"}}``.

    ``compiles``: dicts with ``id``, ``exit_code``, ``config`` (flattened dict).
    ``links``: (compile_id, cluster_id) pairs of linked crash incidents (duplicates fine).
    """
    crashed_in: dict[int, set] = defaultdict(set)
    for cid, cl in links:
        if cl is not None:
            crashed_in[cid].add(cl)
    by_id = {c["id"]: c for c in compiles}
    outcome = outcome_counts(compiles, crashed_in)
    keys = {c["id"]: _cfg_key(c.get("config") or {}) for c in compiles}
    n_all = len(compiles)

    # per configuration: totals and outcomes
    cfg_total: Counter = Counter(keys.values())
    cfg_out: dict[tuple, Counter] = defaultdict(Counter)
    for cid, k in keys.items():
        cfg_out[k][outcome[cid]] += 1
    # overall value counts per attribute
    overall: list[Counter] = [Counter() for _ in ATTRIBUTES]
    for k in keys.values():
        for i, v in enumerate(k):
            if v is not None:
                overall[i][v] += 1

    members: dict[str, list[int]] = defaultdict(list)
    for cid, cls in crashed_in.items():
        if cid in by_id:
            for cl in cls:
                members[cl].append(cid)

    result: dict[str, dict] = {}
    for cl in cluster_ids:
        mine = members.get(cl, [])
        n1 = len(mine)
        in_cfg: Counter = Counter(keys[c] for c in mine)
        configurations = []
        for k, total in cfg_total.items():
            crashed = in_cfg.get(k, 0)
            crashed_any = cfg_out[k]["crashed"]
            configurations.append({
                "config": _cfg_dict(k),
                "crashed": crashed,
                "succeeded": cfg_out[k]["succeeded"],
                "crashed_other": crashed_any - crashed,
                "failed": cfg_out[k]["failed"],
                "total": total,
            })
        configurations.sort(key=lambda r: (-r["crashed"], -r["crashed_other"], -r["total"],
                                           str(sorted(r["config"].items()))))
        correlations = []
        if n1:
            in_vals = [Counter() for _ in ATTRIBUTES]
            for c in mine:
                for i, v in enumerate(keys[c]):
                    if v is not None:
                        in_vals[i][v] += 1
            need = min(MIN_COUNT, n1)
            for i, attr in enumerate(ATTRIBUTES):
                for v, a in in_vals[i].items():
                    c_all = overall[i][v]
                    s_in = a / n1
                    s_all = c_all / n_all if n_all else 0.0
                    score = s_in - s_all
                    if a < need or score < MIN_SCORE:
                        continue
                    p = fisher_greater(a, n1, c_all, n_all)
                    correlations.append({
                        "attribute": attr, "value": v,
                        "in_cluster": round(s_in, 4), "overall": round(s_all, 4),
                        "score": round(score, 4), "count_in_cluster": a, "cluster_compiles": n1,
                        "count_overall": c_all, "compiles": n_all,
                        "p_value": round(p, 6), "significant": p < ALPHA,
                    })
            correlations.sort(key=lambda r: (-r["score"], r["p_value"], r["attribute"],
                                             _fmt(r["value"])))
        result[cl] = {
            "configurations": configurations,
            "correlations": correlations,
            "finding": _finding(n1, cfg_total, cfg_out, in_cfg, correlations),
            "compiles": n1,
        }
    return result


def _finding(n1: int, cfg_total: Counter, cfg_out: dict[tuple, Counter], in_cfg: Counter,
             correlations: list[dict]) -> str:
    if not n1:
        return "no linked compiles (record compiles with `triage record` or ingest a journal)"
    # attribute values shared by every crashing compile of the cluster and not by every compile
    exclusive = [r for r in correlations if r["count_in_cluster"] == r["cluster_compiles"]
                 and r["overall"] < 1.0]
    idx = {a: i for i, a in enumerate(ATTRIBUTES)}
    if exclusive:
        chosen = _minimal_conditions(exclusive, cfg_total, in_cfg, idx)
        cond = {idx[r["attribute"]]: r["value"] for r in chosen}
        match = [k for k in cfg_total if all(k[i] == v for i, v in cond.items())]
        hit = sum(in_cfg.get(k, 0) for k in match)
        total = sum(cfg_total[k] for k in match)
        text = ("crashes only with " + ", ".join(f"{r['attribute']}={_fmt(r['value'])}"
                                                 for r in chosen)
                + f" ({hit}/{total} crashed)")
        mostly = [r for r in correlations if r not in exclusive
                  and r["in_cluster"] >= MOSTLY_SUPPORT and r["score"] >= MOSTLY_SCORE]
        if mostly:
            text += ", mostly with " + ", ".join(
                f"{r['attribute']}={_fmt(r['value'])} ({r['count_in_cluster']}/"
                f"{r['cluster_compiles']})" for r in mostly[:2])
        contrasts = _contrasts(cond, cfg_total, cfg_out)
        if contrasts:
            text += "; " + "; ".join(contrasts)
        return text
    if correlations:
        top = correlations[0]
        return (f"most over-represented: {top['attribute']}={_fmt(top['value'])} "
                f"({top['count_in_cluster']}/{top['cluster_compiles']} of the cluster's compiles "
                f"vs {top['count_overall']}/{top['compiles']} overall)")
    return (f"{n1} linked compile(s); no configuration attribute stands out "
            f"from the other compiles")


def _minimal_conditions(exclusive: list[dict], cfg_total: Counter, in_cfg: Counter,
                        idx: dict[str, int]) -> list[dict]:
    """Greedy: the fewest exclusive attribute values that rule out the most compiles that did
    not crash in the cluster (``int4`` + ``neural-engine`` rather than every implied value)."""
    remaining = {k: cfg_total[k] - in_cfg.get(k, 0) for k in cfg_total}
    chosen: list[dict] = []
    pool = sorted(exclusive, key=lambda r: (-r["score"], idx[r["attribute"]]))

    def keep(r, rem):
        i = idx[r["attribute"]]
        return {k: n for k, n in rem.items() if k[i] == r["value"] and n}

    while pool:
        best = min(pool, key=lambda r: (sum(keep(r, remaining).values()), pool.index(r)))
        after = keep(best, remaining)
        if chosen and sum(after.values()) >= sum(remaining.values()):
            break
        # values that rule out exactly the same compiles are stated together (linear + int4)
        same = [r for r in pool if keep(r, remaining) == after]
        chosen.extend(same)
        remaining = {k: n for k, n in remaining.items()
                     if all(k[idx[r["attribute"]]] == r["value"] for r in same)}
        pool = [r for r in pool if all(r is not x for x in same)]
        if not sum(remaining.values()):
            break
    return sorted(chosen, key=lambda r: idx[r["attribute"]])


def _contrasts(cond: dict[int, Any], cfg_total: Counter, cfg_out: dict[tuple, Counter]
               ) -> list[str]:
    """Nearest configurations (sharing most of ``cond``) that compiled successfully; described
    by the condition's attributes plus the encoding scheme and bits."""
    order = sorted(set(cond) | {0, 2})
    groups: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for k, total in cfg_total.items():
        proj = tuple(k[i] for i in order)
        g = groups[proj]
        g[0] += cfg_out[k]["succeeded"]
        g[1] += total
    target_groups = [proj for proj in groups
                     if all(proj[order.index(i)] == v for i, v in cond.items())]
    scored = []
    for proj, (ok, total) in groups.items():
        if proj in target_groups or not ok:
            continue
        shared = sum(1 for i, v in cond.items() if proj[order.index(i)] == v)
        scored.append((-shared, -ok, str(proj), proj, ok, total))
    scored.sort()
    out = []
    for _s, _o, _k, proj, ok, total in scored[:MAX_CONTRASTS]:
        desc = ", ".join(f"{ATTRIBUTES[i]}={_fmt(v)}" for i, v in zip(order, proj)
                         if v is not None)
        out.append(f"{desc or 'other configurations'} compiled {ok}/{total}")
    return out


def encoding_label(enc: dict | None) -> str:
    """``linear int4 per_block 32`` style label for an encoding summary (or ``unknown``)."""
    if not enc or not enc.get("scheme"):
        return "unknown"
    parts = [str(enc["scheme"])]
    if enc.get("dtype") and enc.get("dtype") != enc.get("scheme"):
        parts.append(str(enc["dtype"]))
    elif enc.get("nbits"):
        parts.append(f"{enc['nbits']}-bit")
    if enc.get("granularity"):
        parts.append(str(enc["granularity"]))
    if enc.get("block_size"):
        parts.append(f"block {enc['block_size']}")
    if enc.get("group_size"):
        parts.append(f"group {enc['group_size']}")
    return " ".join(parts)
