"""Clustering of distinct normalized stacks into bugs, with permanent cluster ids.

Two tiers (docs/clustering.md):

1. identity: the exception class and masked abort message (the signature's tail) must be equal,
   and the signature frames must agree position by position (a symbolized frame only matches the
   same function; an unsymbolized ``module+offset`` frame matches any frame of the same module);
2. similarity: a position-weighted edit distance (TraceSim-like; alignment by rapidfuzz) over
   the top frames, with average linkage and a distance threshold (scikit-learn
   AgglomerativeClustering) inside candidate blocks (same tail and same modules of the first
   two frames). Only pairs that pass tier 1 are scored; connected components of "close" pairs
   are clustered, so there is never an all-pairs matrix over the whole store.

Cluster ids are permanent: ``stacks.cluster_id`` holds the *natural* cluster of a stack, and user
overrides (``merge``/``split``, table ``cluster_overrides``, ``clusters.merged_into``) are applied
on top when computing ``incidents.cluster_id``. ``recluster`` maps old natural ids to new
clusters by largest overlap.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from triage.records import Report

from triage.errors import UserError

# ------------------------------------------------------------------------------------ settings

DEFAULTS: dict[str, Any] = {
    "threshold": 0.22,      # max average-linkage distance to merge (chosen on the tune split)
    "decay": 0.25,          # c: position weight exp(-c * position), top frames weigh most
    "outside": 0.1,         # weight factor of frames below the crash region (callers, entry points)
    "depth": 16,            # top frames compared
    "unsymbolized": 0.9,    # credit of an unsymbolized frame against a frame of the same module
    "unsymbolized_pair": 0.3,  # score of two different unsymbolized frames of the same module
    "linkage": "average",   # average | complete | single
    "block_limit": 500,     # larger candidate blocks are split by exact signature
}


@dataclass(slots=True)
class ClusterSettings:
    threshold: float = DEFAULTS["threshold"]
    decay: float = DEFAULTS["decay"]
    outside: float = DEFAULTS["outside"]
    depth: int = DEFAULTS["depth"]
    unsymbolized: float = DEFAULTS["unsymbolized"]
    unsymbolized_pair: float = DEFAULTS["unsymbolized_pair"]
    linkage: str = DEFAULTS["linkage"]
    block_limit: int = DEFAULTS["block_limit"]

    @classmethod
    def from_mapping(cls, data: dict | None) -> "ClusterSettings":
        s = cls()
        for k, v in (data or {}).items():
            if k not in DEFAULTS:
                continue
            want = type(DEFAULTS[k])
            try:
                if want is float:
                    v = float(v)
                elif want is int:
                    v = int(v)
                else:
                    v = str(v)
            except (TypeError, ValueError):
                raise UserError(f"triage.toml: [cluster] {k} = {v!r} is not a {want.__name__}")
            setattr(s, k, v)
        if not 0 <= s.threshold <= 1:
            raise UserError(f"triage.toml: [cluster] threshold must be in [0, 1], got {s.threshold}")
        if s.linkage not in ("average", "complete", "single"):
            raise UserError("triage.toml: [cluster] linkage must be average, complete or single")
        if s.depth < 1:
            raise UserError("triage.toml: [cluster] depth must be >= 1")
        return s

    @classmethod
    def from_config(cls) -> "ClusterSettings":
        from triage.config import section

        return cls.from_mapping(section("cluster"))


def _settings(settings) -> ClusterSettings:
    if settings is None:
        return ClusterSettings.from_config()
    if isinstance(settings, ClusterSettings):
        return settings
    return ClusterSettings.from_mapping(dict(settings))


# ------------------------------------------------------------------------------------ stacks

def split_signature(signature: str) -> tuple[str, str]:
    """(frame part, tail) of a combined signature; the tail is ``[EXC] message`` or ''."""
    from triage.signature import split_signature_text

    return split_signature_text(signature)


@dataclass(slots=True)
class StackInfo:
    stack_id: str
    signature: str
    tokens: list[str]
    cluster_id: str | None = None
    count: int = 0
    frames_sig: str = ""
    tail: str = ""
    nsig: int = 1
    block: tuple = ()
    region: int = 0
    weights: list[float] | None = None
    ids: list[int] = field(default_factory=list)     # interned tokens (top depth)
    mods: list[int] = field(default_factory=list)    # interned modules
    sym: list[bool] = field(default_factory=list)
    all_sym: bool = True                            # every compared frame symbolized
    wsum: float = -1.0                              # sum of weights (cached)


class _Interner(dict):
    def __missing__(self, key):
        v = self[key] = len(self)
        return v


def make_stack(stack_id: str, signature: str, tokens: list[str], settings: ClusterSettings,
               interner: _Interner, cluster_id: str | None = None, count: int = 0) -> StackInfo:
    from triage.signature import token_module, token_symbolized

    frames_sig, tail = split_signature(signature)
    parts = frames_sig.split(" | ")
    if parts and parts[0] == "stackoverflow":
        parts = parts[1:]
    nsig = max(1, len(parts))
    top = list(tokens[: settings.depth])
    mods = [token_module(t) for t in top]
    block = (tail, tuple(mods[:2]))
    sig_mods = set(mods[:nsig])
    sym = [token_symbolized(t) for t in top]
    region = len(mods)
    for i in range(nsig, len(mods)):
        if mods[i] not in sig_mods:
            region = i
            break
    return StackInfo(
        stack_id=stack_id, signature=signature, tokens=list(tokens), cluster_id=cluster_id,
        count=count, frames_sig=frames_sig, tail=tail, nsig=nsig, block=block, region=region,
        ids=[interner[t] for t in top], mods=[interner["\0mod:" + m] for m in mods],
        sym=sym, all_sym=all(sym),
    )


# ------------------------------------------------------------------------------------ distance

GAP_DP_CELLS = 36   # gaps up to this many cells (len_a * len_b) are scored exactly (_gap_dp)


class Scorer:
    """Pairwise stack distance (1 - position-weighted similarity) with tier-1 constraints."""

    def __init__(self, settings: ClusterSettings):
        self.s = settings
        n = settings.depth + 1
        self.pos = [math.exp(-settings.decay * i) for i in range(n)]
        from rapidfuzz.distance import Indel    # alignment in C (imported lazily: CLI start-up)

        self._opcodes = Indel.opcodes

    def compatible(self, a: StackInfo, b: StackInfo) -> bool:
        if a.tail != b.tail:
            return False
        k = min(a.nsig, b.nsig, len(a.ids), len(b.ids))
        for i in range(k):
            if a.ids[i] == b.ids[i]:
                continue
            if a.mods[i] != b.mods[i]:
                return False
            if a.sym[i] and b.sym[i]:
                return False
        return True

    def weights(self, st: StackInfo) -> list[float]:
        w = st.weights
        if w is None:
            pos, outside = self.pos, self.s.outside
            w = st.weights = [pos[i] if i < st.region else outside * pos[i]
                              for i in range(len(st.ids))]
        return w

    def total(self, st: StackInfo) -> float:
        t = st.wsum
        if t < 0:
            t = st.wsum = sum(self.weights(st))
        return t

    def distance_raw(self, a: StackInfo, b: StackInfo) -> float:
        """Weighted edit distance (TraceSim-like) normalized to [0, 1]; alignment by rapidfuzz.

        Cost model: inserting or deleting a frame costs its weight; substituting costs both
        weights, less the partial credit of an unsymbolized frame against a frame of the same
        module (``unsymbolized``; ``unsymbolized_pair`` for two unsymbolized frames; nothing for
        two different symbolized frames). A frame's weight decays with its position
        (``exp(-decay * i)``) and is multiplied by ``outside`` beyond the crash region. So
        cost = total weight - credit of the aligned pairs (an equal pair earns both weights).

        Alignment (docs/clustering.md, "Distance"): rapidfuzz ``Indel`` (LCS, in C) over the
        interned frame ids gives the anchors (equal frames); each gap between anchors is aligned
        by ``Indel`` over module keys (``_gap_credit``; exactly by a DP when the gap is small or
        mixed); the whole stacks are also aligned by module keys, in case an anchor pinned a
        deep frame. The best credit wins. Each candidate is a valid alignment, so the result is
        never below the exact optimum (the former DP, kept as the reference in
        tests/test_cluster.py) and is usually equal to it.
        """
        ai, bi = a.ids, b.ids
        if ai == bi:
            return 0.0
        total = self.total(a) + self.total(b)
        if total <= 0:
            return 0.0
        wa, wb = a.weights, b.weights
        credit = 0.0
        pi = pj = 0
        for x0, y0, size in self._opcodes(ai, bi).as_matching_blocks():
            if x0 > pi and y0 > pj:
                credit += self._gap_credit(a, b, pi, x0, pj, y0)
            if size:
                credit += sum(wa[x0:x0 + size]) + sum(wb[y0:y0 + size])
            pi, pj = x0 + size, y0 + size
        if credit < total and not (a.all_sym and b.all_sym):
            # anchors on equal frames can pin a deep common frame (low weight) and push the
            # valuable same-module pairs of the top apart: also try the best module alignment
            # of the whole stacks (equal frames earn full credit there too); keep the better
            alt = self._gap_credit(a, b, 0, len(ai), 0, len(bi), whole=True)
            credit = alt if alt > credit else credit
        d = 1.0 - credit / total
        return 0.0 if d < 1e-12 else (1.0 if d > 1.0 else d)

    def _gap_credit(self, a: StackInfo, b: StackInfo, i1: int, i2: int, j1: int, j2: int,
                    whole: bool = False) -> float:
        """Partial credit of the best module alignment of the gap a[i1:i2] / b[j1:j2]
        (``whole``: of the whole stacks, where equal frames also pair and earn full credit).

        Pairs of one module earn ``unsymbolized`` (one side symbolized) or
        ``unsymbolized_pair`` (both unsymbolized); two symbolized frames earn nothing. LCS
        (rapidfuzz ``Indel``) only knows equal/different, so the gap is aligned under a few
        key encodings that each admit one family of pairs (the other frames get unique keys),
        forwards and reversed (LCS ties broken both ways), and the best credit is kept.

        Two things rapidfuzz cannot express go to a small exact DP over the gap only
        (``_gap_dp``): (1) the weights: LCS maximizes the *number* of pairs and breaks ties
        blindly, while a pair near the top is worth more — small gaps (<= ``GAP_DP_CELLS``
        cells, cheap) are scored exactly; (2) a gap where *both* sides mix symbolized and
        unsymbolized frames ("same module and not both symbolized" is not an equivalence:
        sym a1 ~ unsym b2 ~ unsym a2 ~ sym b1, but a1 !~ b1, so no key encoding admits exactly
        those pairs)."""
        am, bm = a.mods[i1:i2], b.mods[j1:j2]
        if set(am).isdisjoint(bm):
            return 0.0
        asym, bsym = a.sym[i1:i2], b.sym[j1:j2]
        a_uns, b_uns = not all(asym), not all(bsym)
        if not (a_uns or b_uns or whole):
            return 0.0          # two symbolized frames of one module: no credit
        a_sym, b_sym = any(asym), any(bsym)
        if not whole and ((i2 - i1) * (j2 - j1) <= GAP_DP_CELLS
                          or (a_uns and b_uns and a_sym and b_sym)):
            return self._gap_dp(a, b, i1, i2, j1, j2)

        def keys(mods, sym, show, side):
            # show: None = every frame, True = symbolized only, False = unsymbolized only;
            # hidden frames get unique negative keys (odd for a, even for b: never equal)
            return [m if show is None or s == show else -2 * k - side
                    for k, (m, s) in enumerate(zip(mods, sym))]

        encodings = [(None, None)] if whole else []   # whole: every frame keyed by its module
        if b_uns:                                   # any frame of a vs unsymbolized of b
            encodings.append((None, False))
        if a_uns:                                   # unsymbolized of a vs any frame of b
            encodings.append((False, None))
        if a_uns and b_sym:                         # unsymbolized a vs symbolized b only
            encodings.append((False, True))
        if a_sym and b_uns:                         # symbolized a vs unsymbolized b only
            encodings.append((True, False))
        wa, wb, asy, bsy, ai, bi = a.weights, b.weights, a.sym, b.sym, a.ids, b.ids
        unsym, upair = self.s.unsymbolized, self.s.unsymbolized_pair
        # a filter that keeps every frame of a side is the plain module list: de-duplicate
        norm = set()
        for show_a, show_b in encodings:
            if (show_a is True and not a_uns) or (show_a is False and not a_sym):
                show_a = None
            if (show_b is True and not b_uns) or (show_b is False and not b_sym):
                show_b = None
            norm.add((show_a, show_b))
        best = 0.0
        for show_a, show_b in norm:
            xs = am if show_a is None else keys(am, asym, show_a, 1)
            ys = bm if show_b is None else keys(bm, bsym, show_b, 2)
            for rev in (False, True):
                c = 0.0
                blocks = (self._opcodes(xs[::-1], ys[::-1]) if rev
                          else self._opcodes(xs, ys)).as_matching_blocks()
                for x0, y0, size in blocks:
                    for k in range(size):
                        if rev:
                            x, y = i2 - 1 - x0 - k, j2 - 1 - y0 - k
                        else:
                            x, y = i1 + x0 + k, j1 + y0 + k
                        if ai[x] == bi[y]:
                            c += wa[x] + wb[y]
                            continue
                        if asy[x] and bsy[y]:
                            continue
                        c += (unsym if (asy[x] or bsy[y]) else upair) * (wa[x] + wb[y])
                if c > best:
                    best = c
        return best

    def _gap_dp(self, a: StackInfo, b: StackInfo, i1: int, i2: int, j1: int, j2: int) -> float:
        """Exact best credit of one gap (credit-maximizing alignment, O(gap^2) in Python): for
        small gaps and gaps whose both sides mix symbolized and unsymbolized frames."""
        wa, wb, am, bm, asy, bsy = a.weights, b.weights, a.mods, b.mods, a.sym, b.sym
        unsym, upair = self.s.unsymbolized, self.s.unsymbolized_pair
        prev = [0.0] * (j2 - j1 + 1)
        for i in range(i1, i2):
            cur = [0.0] * (j2 - j1 + 1)
            xm, xs, wx = am[i], asy[i], wa[i]
            for j in range(j1, j2):
                k = j - j1
                best = prev[k + 1] if prev[k + 1] > cur[k] else cur[k]
                if xm == bm[j] and not (xs and bsy[j]):
                    c = prev[k] + (unsym if (xs or bsy[j]) else upair) * (wx + wb[j])
                    if c > best:
                        best = c
                cur[k + 1] = best
            prev = cur
        return prev[-1]

    def distance(self, a: StackInfo, b: StackInfo) -> float:
        if not self.compatible(a, b):
            return 1.0
        return self.distance_raw(a, b)


# ------------------------------------------------------------------------------------ batch

def _agglomerate(dist, n: int, settings: ClusterSettings) -> list[int]:
    if n == 1:
        return [0]
    import numpy as np
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(n_clusters=None, metric="precomputed",
                                    linkage=settings.linkage,
                                    distance_threshold=settings.threshold + 1e-9)
    return list(model.fit_predict(np.asarray(dist)))


def cluster_stacks(stacks: list[StackInfo], settings: ClusterSettings,
                   scorer: Scorer | None = None) -> list[int]:
    """Batch clustering: label per stack (labels are arbitrary ints, equal = same cluster)."""
    scorer = scorer or Scorer(settings)
    labels = [-1] * len(stacks)
    blocks: dict[tuple, list[int]] = defaultdict(list)
    for i, st in enumerate(stacks):
        blocks[st.block].append(i)
    next_label = 0
    for members in blocks.values():
        groups = [members]
        if len(members) > settings.block_limit:
            sub: dict[str, list[int]] = defaultdict(list)
            for i in members:
                sub[stacks[i].frames_sig].append(i)
            groups = list(sub.values())
        for group in groups:
            comps = _components(group, stacks, scorer, settings.threshold)
            for comp in comps:
                if len(comp) == 1:
                    labels[comp[0]] = next_label
                    next_label += 1
                    continue
                n = len(comp)
                dist = [[0.0] * n for _ in range(n)]
                for x in range(n):
                    for y in range(x + 1, n):
                        d = scorer.distance(stacks[comp[x]], stacks[comp[y]])
                        dist[x][y] = dist[y][x] = d
                if all(d <= settings.threshold for row in dist for d in row):
                    sub_labels = [0] * n        # every linkage merges a fully close group
                else:
                    sub_labels = _agglomerate(dist, n, settings)
                base = next_label
                for x, lab in enumerate(sub_labels):
                    labels[comp[x]] = base + int(lab)
                next_label = base + max(int(v) for v in sub_labels) + 1
    return labels


def _components(group: list[int], stacks: list[StackInfo], scorer: Scorer,
                threshold: float) -> list[list[int]]:
    """Connected components of the graph 'distance <= threshold' inside one block."""
    parent = {i: i for i in group}

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # sub-group by signature-frame identity class to skip hopeless pairs cheaply
    for x_pos, x in enumerate(group):
        sx = stacks[x]
        for y in group[x_pos + 1:]:
            if find(x) == find(y):
                continue
            if scorer.distance(sx, stacks[y]) <= threshold:
                parent[find(y)] = find(x)
    comps: dict[int, list[int]] = defaultdict(list)
    for i in group:
        comps[find(i)].append(i)
    return list(comps.values())


# ------------------------------------------------------------------------------------ ids

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_cluster_id(seed: str, taken) -> str:
    """``C-`` + 6 hex chars of a hash of ``seed`` (the cluster's first stack), collision-free."""
    for salt in range(10_000):
        h = hashlib.sha1(f"{seed}#{salt}".encode() if salt else seed.encode()).hexdigest()[:6]
        cid = f"C-{h}"
        if cid not in taken:
            return cid
    raise RuntimeError("cannot find a free cluster id")


def _taken_ids(conn) -> set[str]:
    ids = {r[0] for r in conn.execute("SELECT cluster_id FROM clusters")}
    ids |= {r[0] for r in conn.execute("SELECT new_id FROM cluster_overrides WHERE new_id IS NOT NULL")}
    return ids


# ------------------------------------------------------------------------------------ overrides

@dataclass
class Overrides:
    merged: dict[str, str] = field(default_factory=dict)           # id -> merged_into
    sig_splits: list[tuple[str, str, str]] = field(default_factory=list)   # (cluster, sig, new)
    inc_splits: list[tuple[str, list[str], str]] = field(default_factory=list)

    def resolve(self, cid: str | None) -> str | None:
        seen = set()
        while cid in self.merged and cid not in seen:
            seen.add(cid)
            cid = self.merged[cid]
        return cid

    def for_stack(self, cid: str | None, signature: str) -> str | None:
        c = self.resolve(cid)
        if c is None:
            return None
        frames_sig, _ = split_signature(signature)
        for src, sig, new in self.sig_splits:
            if self.resolve(src) == c and sig in (signature, frames_sig):
                c = self.resolve(new)
        return c


def load_overrides(conn) -> Overrides:
    from triage.store.db import jload

    ov = Overrides()
    for cid, into in conn.execute("SELECT cluster_id, merged_into FROM clusters "
                                  "WHERE merged_into IS NOT NULL"):
        if into and into != cid:
            ov.merged[cid] = into
    for action, cid, other, selector, new_id in conn.execute(
            "SELECT action, cluster_id, other_id, selector, new_id FROM cluster_overrides ORDER BY id"):
        if action != "split" or not new_id:
            continue
        sel = jload(selector) or {}
        if sel.get("signature"):
            ov.sig_splits.append((cid, sel["signature"], new_id))
        if sel.get("incidents"):
            ov.inc_splits.append((cid, list(sel["incidents"]), new_id))
    return ov


def _apply_incident_splits(conn, ov: Overrides, only: set[str] | None = None) -> None:
    for _src, incs, new in ov.inc_splits:
        target = ov.resolve(new)
        todo = [i for i in incs if only is None or i in only]
        for k in range(0, len(todo), 500):
            chunk = todo[k:k + 500]
            conn.execute(f"UPDATE incidents SET cluster_id=? WHERE incident_id IN "
                         f"({','.join('?' * len(chunk))})", [target, *chunk])


# ------------------------------------------------------------------------------------ store I/O

def upsert_stack(conn, result, count: int = 1) -> None:
    """Record one incident's stack (a SignatureResult) in ``stacks`` (helper for ingest)."""
    from triage.store.db import jdump

    conn.execute(
        "INSERT INTO stacks(stack_id, signature, proto_signature, frames, cluster_id, count) "
        "VALUES(?,?,?,?,NULL,?) ON CONFLICT(stack_id) DO UPDATE SET count=count+excluded.count",
        (result.stack_id, result.signature, result.proto_signature, jdump(result.stack), count))


def _load_stacks(conn, where: str, settings: ClusterSettings, interner: _Interner,
                 params=()) -> list[StackInfo]:
    from triage.store.db import jload

    out = []
    for sid, sig, frames, cid, count in conn.execute(
            f"SELECT stack_id, signature, frames, cluster_id, count FROM stacks {where} "
            "ORDER BY rowid", params):
        out.append(make_stack(sid, sig, jload(frames) or [], settings, interner, cid, count or 0))
    return out


def assign_new(store, settings=None) -> dict:
    """Give every ``stacks`` row without a cluster one (join the nearest existing cluster when
    close enough, else a new permanent id), then set ``incidents.cluster_id`` (overrides
    applied) for incidents that have none. One ``BEGIN IMMEDIATE`` transaction: two concurrent
    ingests serialize here."""
    s = _settings(settings)
    scorer = Scorer(s)
    summary = {"stacks": 0, "joined": 0, "new_clusters": 0, "incidents": 0}
    with store.transaction() as conn:
        interner = _Interner()
        # count > 0: a stack whose incidents were all re-signed (peer symbols, before this
        # runs) would become an empty phantom cluster; it is clustered if an incident returns
        new = _load_stacks(conn, "WHERE cluster_id IS NULL AND count > 0", s, interner)
        assigned: dict[str, str] = {}
        if new:
            summary["stacks"] = len(new)
            blocks = {st.block for st in new}
            existing_by_block: dict[tuple, list[StackInfo]] = defaultdict(list)
            for st in _load_stacks(conn, "WHERE cluster_id IS NOT NULL", s, interner):
                if st.block in blocks:
                    existing_by_block[st.block].append(st)
            leftovers = []
            for st in new:
                cid = _nearest_cluster(st, existing_by_block.get(st.block, ()), scorer, s)
                if cid is None:
                    leftovers.append(st)
                else:
                    assigned[st.stack_id] = cid
                    summary["joined"] += 1
            if leftovers:
                labels = cluster_stacks(leftovers, s, scorer)
                taken = _taken_ids(conn)
                by_label: dict[int, list[StackInfo]] = defaultdict(list)
                for st, lab in zip(leftovers, labels):
                    by_label[lab].append(st)
                now = _now()
                for members in by_label.values():
                    cid = new_cluster_id(members[0].stack_id, taken)
                    taken.add(cid)
                    sig = Counter(m.signature for m in members).most_common(1)[0][0]
                    conn.execute("INSERT INTO clusters(cluster_id, signature, created_at) "
                                 "VALUES(?,?,?)", (cid, sig, now))
                    for m in members:
                        assigned[m.stack_id] = cid
                    summary["new_clusters"] += 1
            conn.executemany("UPDATE stacks SET cluster_id=? WHERE stack_id=?",
                             [(c, sid) for sid, c in assigned.items()])
        # incidents without a cluster whose stack has one (set-wise; overrides applied)
        summary["incidents"] = _assign_incidents(conn, load_overrides(conn))
    return summary


BULK_MIN = 50_000   # unassigned incidents (and >= 1/4 of all) for the drop/re-create index path


def _assign_incidents(conn, ov: Overrides) -> int:
    """Set ``incidents.cluster_id`` of every incident without one whose stack has a cluster
    (the stack's natural cluster with merge/split overrides applied), then refresh
    ``stacks.count`` of the stacks concerned. Set-wise: a temp table of (stack_id, cluster id),
    one ``UPDATE ... FROM`` and one ``GROUP BY``.

    A bulk assignment (>= ``BULK_MIN`` unassigned incidents and >= 1/4 of all, e.g. the first
    clustering of a big store) spends most of its time maintaining the indexes on
    ``incidents.cluster_id`` entry by entry: those indexes are dropped and re-created from their
    own stored SQL (``sqlite_master``) inside the same transaction, several times faster."""
    import sqlite3

    pending = conn.execute("SELECT COUNT(*) FROM incidents WHERE cluster_id IS NULL").fetchone()[0]
    if not pending:
        return 0
    bulk = False
    if pending >= BULK_MIN:
        bulk = pending * 4 >= conn.execute("SELECT COUNT(*) FROM incidents").fetchone()[0]
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS cluster_assign("
                 "stack_id TEXT PRIMARY KEY, cluster_id TEXT) WITHOUT ROWID")
    conn.execute("DELETE FROM temp.cluster_assign")
    if bulk:        # every stack (cheaper than finding the distinct stacks of 1M incidents)
        conn.execute("INSERT INTO temp.cluster_assign(stack_id) SELECT stack_id FROM stacks")
    else:
        conn.execute("INSERT INTO temp.cluster_assign(stack_id) SELECT DISTINCT stack_id "
                     "FROM incidents WHERE cluster_id IS NULL AND stack_id IS NOT NULL")
    rows = conn.execute("SELECT s.stack_id, s.cluster_id, s.signature FROM stacks s "
                        "JOIN temp.cluster_assign a ON a.stack_id = s.stack_id "
                        "WHERE s.cluster_id IS NOT NULL").fetchall()
    if not rows:
        conn.execute("DELETE FROM temp.cluster_assign")
        return 0
    conn.executemany("UPDATE temp.cluster_assign SET cluster_id=? WHERE stack_id=?",
                     [(ov.for_stack(cid, sig), sid) for sid, cid, sig in rows])
    touched: set[str] = set()
    for _src, incs, _new in ov.inc_splits:      # split incidents about to get a cluster
        for k in range(0, len(incs), 500):
            chunk = incs[k:k + 500]
            touched.update(r[0] for r in conn.execute(
                f"SELECT incident_id FROM incidents WHERE cluster_id IS NULL AND incident_id IN "
                f"({','.join('?' * len(chunk))})", chunk))
    rebuild = []
    if bulk:
        rebuild = [(name, sql) for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='index' AND tbl_name='incidents' "
            "AND sql IS NOT NULL") if re.search(r"\bcluster_id\b", sql)]
    for name, _sql in rebuild:
        conn.execute(f'DROP INDEX "{name}"')
    n = conn.execute("UPDATE incidents SET cluster_id = (SELECT a.cluster_id FROM "
                     "temp.cluster_assign a WHERE a.stack_id = incidents.stack_id) "
                     "WHERE cluster_id IS NULL AND stack_id IN (SELECT stack_id FROM "
                     "temp.cluster_assign WHERE cluster_id IS NOT NULL)").rowcount
    for _name, sql in rebuild:
        conn.execute(sql)
    if touched:
        _apply_incident_splits(conn, ov, touched)
    # CROSS JOIN keeps the temp table outside: range counts on incidents_stack per stack
    if sqlite3.sqlite_version_info >= (3, 33, 0):
        conn.execute("UPDATE stacks SET count = c.n FROM (SELECT a.stack_id, COUNT(*) AS n "
                     "FROM temp.cluster_assign a CROSS JOIN incidents i "
                     "ON i.stack_id = a.stack_id GROUP BY a.stack_id) AS c "
                     "WHERE stacks.stack_id = c.stack_id")
    else:   # pragma: no cover - SQLite without UPDATE ... FROM
        conn.execute("UPDATE stacks SET count = (SELECT COUNT(*) FROM incidents i WHERE "
                     "i.stack_id = stacks.stack_id) WHERE stack_id IN "
                     "(SELECT stack_id FROM temp.cluster_assign)")
    conn.execute("DELETE FROM temp.cluster_assign")
    return n


def _nearest_cluster(st: StackInfo, candidates: Iterable[StackInfo], scorer: Scorer,
                     s: ClusterSettings, sample: int = 64) -> str | None:
    by_cluster: dict[str, list[StackInfo]] = defaultdict(list)
    for c in candidates:
        if c.cluster_id:
            by_cluster[c.cluster_id].append(c)
    best, best_d = None, None
    for cid, members in by_cluster.items():
        if len(members) > sample:
            members = sorted(members, key=lambda m: -m.count)[:sample]
        ds = [scorer.distance(st, m) for m in members]
        if s.linkage == "complete":
            d = max(ds)
        elif s.linkage == "single":
            d = min(ds)
        else:
            d = sum(ds) / len(ds)
        if d <= s.threshold and (best_d is None or d < best_d or (d == best_d and cid < best)):
            best, best_d = cid, d
    return best


# ------------------------------------------------------------------------------------ overrides API

def _require_cluster(conn, cid: str) -> None:
    if conn.execute("SELECT 1 FROM clusters WHERE cluster_id=?", (cid,)).fetchone() is None:
        raise UserError(f"{cid}: no such cluster (see `triage clusters`)")


def _refresh_incidents(conn, ov: Overrides) -> None:
    """Recompute incidents.cluster_id of every clustered incident from stacks + overrides."""
    rows = conn.execute("SELECT stack_id, cluster_id, signature FROM stacks "
                        "WHERE cluster_id IS NOT NULL").fetchall()
    # set-wise, and only the rows whose id changes are written (a merge on a 1M-report store
    # rewrites the merged cluster's rows, not every row)
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS cluster_assign("
                 "stack_id TEXT PRIMARY KEY, cluster_id TEXT) WITHOUT ROWID")
    conn.execute("DELETE FROM temp.cluster_assign")
    conn.executemany("INSERT INTO temp.cluster_assign(stack_id, cluster_id) VALUES(?,?)",
                     [(sid, ov.for_stack(cid, sig)) for sid, cid, sig in rows])
    conn.execute("UPDATE incidents SET cluster_id = (SELECT a.cluster_id FROM "
                 "temp.cluster_assign a WHERE a.stack_id = incidents.stack_id) "
                 "WHERE stack_id IN (SELECT stack_id FROM "
                 "temp.cluster_assign) AND cluster_id IS NOT (SELECT a.cluster_id FROM "
                 "temp.cluster_assign a WHERE a.stack_id = incidents.stack_id)")
    conn.execute("DELETE FROM temp.cluster_assign")
    _apply_incident_splits(conn, ov)


def merge(store, keep: str, other: str) -> dict:
    """``triage merge A B``: B (and everything merged into it) folds into A, persistently."""
    with store.transaction() as conn:
        _require_cluster(conn, keep)
        _require_cluster(conn, other)
        ov = load_overrides(conn)
        a, b = ov.resolve(keep), ov.resolve(other)
        if a == b:
            raise UserError(f"{other} is already part of {a}")
        conn.execute("INSERT INTO cluster_overrides(action, cluster_id, other_id, created_at) "
                     "VALUES('merge', ?, ?, ?)", (a, b, _now()))
        conn.execute("UPDATE clusters SET merged_into=?, note=? WHERE cluster_id=?",
                     (a, f"merged into {a} by user", b))
        ov = load_overrides(conn)
        _refresh_incidents(conn, ov)
        n = conn.execute("SELECT COUNT(*) FROM incidents WHERE cluster_id=?", (a,)).fetchone()[0]
    return {"id": a, "merged": b, "count": n}


def split(store, cluster_id: str, *, signature: str | None = None,
          incidents: list[str] | None = None) -> dict:
    """``triage split A --signature SIG`` / ``--incident ID...``: matching incidents move to a
    new permanent cluster id; persisted and replayed by ingest and recluster."""
    from triage.store.db import jdump

    if not signature and not incidents:
        raise UserError("split needs --signature SIG or --incident ID")
    with store.transaction() as conn:
        _require_cluster(conn, cluster_id)
        ov = load_overrides(conn)
        src = ov.resolve(cluster_id)
        rows = conn.execute("SELECT incident_id, signature FROM incidents WHERE cluster_id=?",
                            (src,)).fetchall()
        if signature:
            moving = [i for i, sig in rows if sig and signature in (sig, split_signature(sig)[0])]
            what = f"signature {signature!r}"
        else:
            have = {i for i, _ in rows}
            missing = [i for i in incidents if i not in have]
            if missing:
                raise UserError(f"{missing[0]}: not an incident of cluster {src}")
            moving = list(incidents)
            what = f"{len(moving)} incident(s)"
        if not moving:
            raise UserError(f"{src}: no incident matches {what}")
        if len(moving) == len(rows):
            raise UserError(f"{src}: every incident matches {what}; nothing would remain")
        selector = {"signature": signature} if signature else {"incidents": moving}
        taken = _taken_ids(conn)
        new_id = new_cluster_id(f"split:{src}:{jdump(selector)}", taken)
        sig_row = signature or Counter(
            sig for i, sig in rows if i in set(moving)).most_common(1)[0][0] or ""
        conn.execute("INSERT INTO clusters(cluster_id, signature, created_at, note) "
                     "VALUES(?,?,?,?)", (new_id, sig_row, _now(), f"split from {src} by user"))
        conn.execute("INSERT INTO cluster_overrides(action, cluster_id, selector, new_id, created_at)"
                     " VALUES('split', ?, ?, ?, ?)", (src, jdump(selector), new_id, _now()))
        ov = load_overrides(conn)
        _refresh_incidents(conn, ov)
    return {"id": src, "new_id": new_id, "moved": len(moving)}


# ------------------------------------------------------------------------------------ recluster

@dataclass
class ReclusterDiff:
    """What ``recluster`` changed (or would change, with ``dry_run``)."""

    dry_run: bool = False
    incidents: int = 0
    signatures_changed: int = 0
    stacks_before: int = 0
    stacks_after: int = 0
    clusters_before: int = 0
    clusters_after: int = 0
    kept: list[str] = field(default_factory=list)
    merged: list[dict] = field(default_factory=list)     # {"id": old, "into": new}
    split: list[dict] = field(default_factory=list)      # {"id": old, "into": [ids]}
    new: list[str] = field(default_factory=list)
    rules: str = ""

    def to_dict(self) -> dict:
        return {
            "dry_run": self.dry_run, "incidents": self.incidents,
            "signatures_changed": self.signatures_changed,
            "stacks_before": self.stacks_before, "stacks_after": self.stacks_after,
            "clusters_before": self.clusters_before, "clusters_after": self.clusters_after,
            "unchanged": len(self.kept), "merged": self.merged, "split": self.split,
            "new": self.new, "rules": self.rules,
        }


def report_from_row(row) -> "Report":
    """A Report good enough for normalize + signature, rebuilt from one incidents row
    (crashing thread from ``frames``, ``last_exception``, header scalars, ``extra`` from detail)."""
    import orjson

    from triage.frames.stored import frames_from_json
    from triage.records import Report, Thread
    from triage.store.db import decompress_blob, jload, load_frames

    frames = frames_from_json(load_frames(row["frames"]))
    leb = load_frames(row["last_exception"])
    extra = {}
    try:  # only ``extra`` is needed: no image records are built
        detail = orjson.loads(decompress_blob(row["detail"])) if row["detail"] is not None \
            else None
        if isinstance(detail, dict) and isinstance(detail.get("extra"), dict):
            extra = detail["extra"]
    except Exception:  # noqa: BLE001 - a damaged blob only loses the extras
        extra = {}
    return Report(
        incident_id=row["incident_id"], path=row["path"] or "", sha256=row["sha256"] or "",
        format=row["format"] or "", bug_type=row["bug_type"], kind=row["kind"],
        process=row["process"], exception_type=row["exception_type"], signal=row["signal"],
        exception_codes=row["exception_codes"], exception_subtype=row["exception_subtype"],
        exception_message=row["exception_message"],
        termination_indicator=row["termination_indicator"],
        asi=jload(row["asi"]), crashing_thread=0 if frames else None,
        threads=[Thread(index=0, triggered=True, frames=frames)] if frames else [],
        last_exception_backtrace=frames_from_json(leb) if leb else None, extra=extra,
    )


def _old_natural(stack_cluster: str | None, shown: str | None, override_ids: set) -> str | None:
    """The cluster an incident counted for before this recluster: its stack's cluster, unless
    the incident was re-signed since the last clustering (``triage symbolicate`` gives it a
    new stack: not clustered yet, or another bug's) while it still shows in its own cluster.
    Clusters touched by merge/split overrides keep the stack's (natural) cluster: the
    overrides are replayed afterwards."""
    if stack_cluster is None:
        return shown
    if shown and shown != stack_cluster and not ({shown, stack_cluster} & override_ids):
        return shown
    return stack_cluster


def recluster(store, settings=None, rule_files=(), *, dry_run: bool = False,
              full: bool = False, progress=None) -> ReclusterDiff:
    """Recompute normalization + signatures of every stored crash from its stored frames, then
    re-cluster all distinct stacks and map old cluster ids onto the new clusters (largest
    overlap keeps the id; ids that lose get ``merged_into``; extra pieces get new ids).
    User overrides are replayed. ``dry_run`` computes the diff without writing.

    By default stacks whose ``stack_id`` did not change keep their cluster and only changed
    stacks are re-assigned (as ingest would); ``full`` re-clusters every stack from scratch
    (e.g. after changing the ``[cluster]`` settings)."""
    import sqlite3

    from triage.signature import compute_signature, load_siglists
    from triage.store.db import dump_frames, jdump

    s = _settings(settings)
    siglists = load_siglists(list(rule_files))
    try:
        from triage.frames.normalize import load_rules, normalize_report
        rules = load_rules(list(rule_files))
    except ImportError:  # pragma: no cover - frames stage missing
        rules = normalize_report = None
    diff = ReclusterDiff(dry_run=dry_run, rules=siglists.version())
    conn = store.conn
    # ---- 1. recompute signatures (read-only)
    cur = conn.execute("SELECT i.*, s.cluster_id AS stack_cluster FROM incidents i "
                       "LEFT JOIN stacks s ON s.stack_id = i.stack_id "
                       "WHERE i.kind = 'crash' OR i.signature IS NOT NULL")
    cur.row_factory = sqlite3.Row
    ov0 = load_overrides(conn)
    override_ids = (set(ov0.merged) | set(ov0.merged.values())
                    | {x for t in ov0.sig_splits for x in (t[0], t[2])}
                    | {x for t in ov0.inc_splits for x in (t[0], t[2])})
    per_incident: dict[str, tuple] = {}        # iid -> (stack_id, signature, proto)
    new_frames: dict[str, str] = {}
    stacks_new: dict[str, tuple] = {}          # stack_id -> (signature, proto, tokens, count)
    old_nat: dict[str, str | None] = {}
    for n, row in enumerate(cur):
        rep = report_from_row(row)
        if normalize_report is not None:
            normalize_report(rep, rules)
        res = compute_signature(rep, siglists)
        iid = row["incident_id"]
        per_incident[iid] = (res.stack_id, res.signature, res.proto_signature)
        if res.signature != row["signature"]:
            diff.signatures_changed += 1
        if rep.threads:
            new_frames[iid] = dump_frames(rep.threads[0].frames)
        old_nat[iid] = _old_natural(row["stack_cluster"], row["cluster_id"], override_ids)
        st = stacks_new.get(res.stack_id)
        stacks_new[res.stack_id] = (res.signature, res.proto_signature, res.stack,
                                    (st[3] if st else 0) + 1)
        if progress and n % 1000 == 0:
            progress(n)
    diff.incidents = len(per_incident)
    diff.stacks_before = conn.execute("SELECT COUNT(*) FROM stacks").fetchone()[0]
    diff.stacks_after = len(stacks_new)
    # ---- 2. cluster the distinct stacks (deterministic order)
    interner = _Interner()
    order = sorted(stacks_new)
    infos = [make_stack(sid, stacks_new[sid][0], stacks_new[sid][2], s, interner,
                        count=stacks_new[sid][3]) for sid in order]
    scorer = Scorer(s)
    label_of_stack: dict[str, Any] = {}
    if full:
        for sid, lab in zip(order, cluster_stacks(infos, s, scorer)):
            label_of_stack[sid] = ("new", lab)
    else:
        # stacks that did not change keep their cluster; changed/new stacks are assigned as
        # ingest would (join the nearest cluster when close enough, else cluster among
        # themselves). With unchanged rules this changes nothing.
        old_stack = dict(conn.execute("SELECT stack_id, cluster_id FROM stacks "
                                      "WHERE cluster_id IS NOT NULL"))
        by_block: dict[tuple, list[StackInfo]] = defaultdict(list)
        rest = []
        for st in infos:
            if st.stack_id in old_stack:
                st.cluster_id = old_stack[st.stack_id]
                label_of_stack[st.stack_id] = ("old", st.cluster_id)
                by_block[st.block].append(st)
            else:
                rest.append(st)
        leftovers = []
        for st in rest:
            cid = _nearest_cluster(st, by_block.get(st.block, ()), scorer, s)
            if cid is None:
                leftovers.append(st)
            else:
                label_of_stack[st.stack_id] = ("old", cid)
        if leftovers:
            for st, lab in zip(leftovers, cluster_stacks(leftovers, s, scorer)):
                label_of_stack[st.stack_id] = ("new", lab)
    # ---- 3. map old natural ids -> new clusters by overlap
    overlap: Counter = Counter()
    members: dict[Any, list[str]] = defaultdict(list)
    for iid, (sid, _sig, _p) in per_incident.items():
        lab = label_of_stack[sid]
        members[lab].append(iid)
        if old_nat[iid]:
            overlap[(old_nat[iid], lab)] += 1
    old_ids = {c for c in old_nat.values() if c}
    diff.clusters_before = len(old_ids)
    name_of: dict[Any, str] = {}
    used_old: set[str] = set()
    for (old, lab), cnt in sorted(overlap.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1])):
        if lab in name_of or old in used_old:
            continue
        name_of[lab] = old
        used_old.add(old)
    taken = _taken_ids(conn)
    stacks_of_label: dict[Any, list[str]] = defaultdict(list)
    for sid in order:
        stacks_of_label[label_of_stack[sid]].append(sid)
    fresh: dict[str, str] = {}
    for lab in sorted(members, key=lambda L: stacks_of_label[L][0]):
        if lab not in name_of:
            cid = new_cluster_id(stacks_of_label[lab][0], taken)
            taken.add(cid)
            name_of[lab] = cid
            fresh[cid] = stacks_new[stacks_of_label[lab][0]][0]
            diff.new.append(cid)
    diff.clusters_after = len(members)
    targets: dict[str, Counter] = defaultdict(Counter)
    for (old, lab), cnt in overlap.items():
        targets[old][name_of[lab]] += cnt
    for old in sorted(old_ids):
        t = targets[old]
        if old in used_old:
            others = sorted(c for c in t if c != old)
            if others:
                diff.split.append({"id": old, "into": [old] + others})
            else:
                diff.kept.append(old)
        else:
            into = t.most_common(1)[0][0]
            diff.merged.append({"id": old, "into": into})
    if dry_run:
        return diff
    # ---- 4. write
    now = _now()
    with store.transaction() as wconn:
        wconn.execute("DELETE FROM stacks")
        wconn.executemany(
            "INSERT INTO stacks(stack_id, signature, proto_signature, frames, cluster_id, count) "
            "VALUES(?,?,?,?,?,?)",
            [(sid, v[0], v[1], jdump(v[2]), name_of[label_of_stack[sid]], v[3])
             for sid, v in stacks_new.items()])
        wconn.executemany(
            "UPDATE incidents SET stack_id=?, signature=?, proto_signature=? WHERE incident_id=?",
            [(v[0], v[1], v[2], iid) for iid, v in per_incident.items()])
        wconn.executemany("UPDATE incidents SET frames=? WHERE incident_id=?",
                          [(fr, iid) for iid, fr in new_frames.items()])
        for cid, sig in fresh.items():
            wconn.execute("INSERT INTO clusters(cluster_id, signature, created_at, note) "
                          "VALUES(?,?,?,?)", (cid, sig, now, "created by recluster"))
        for m in diff.merged:
            wconn.execute("UPDATE clusters SET merged_into=?, note=? WHERE cluster_id=? AND "
                          "merged_into IS NULL", (m["into"], f"merged into {m['into']} by "
                                                  f"recluster {now}", m["id"]))
        for sp in diff.split:
            wconn.execute("UPDATE clusters SET note=? WHERE cluster_id=?",
                          (f"split by recluster {now} into {', '.join(sp['into'])}", sp["id"]))
        # keep each surviving cluster's signature current
        for lab, cid in name_of.items():
            sig = Counter(per_incident[i][1] for i in members[lab]).most_common(1)[0][0]
            wconn.execute("UPDATE clusters SET signature=? WHERE cluster_id=?", (sig, cid))
        ov = load_overrides(wconn)
        wconn.execute("UPDATE incidents SET cluster_id=NULL WHERE stack_id IS NULL")
        _refresh_incidents(wconn, ov)
        store.set_meta("siglists_version", siglists.version())
        store.set_meta("reclustered_at", now)
    return diff

