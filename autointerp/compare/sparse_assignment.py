"""One-to-one assignment on the candidate graph (``compare.candidates``): the sparse counterpart of ``hungarian``.

``scipy.sparse.csgraph.min_weight_full_bipartite_matching`` (LAPJVsp) solves the assignment on a sparse graph in
memory linear in its edges, but only for a *full* matching (every row matched), which a candidate graph rarely
has: two A features may share their only partner. So every A feature also gets a private dummy column, "no
partner", and the costs are

    real edge (i, j): 2 - corr_ij      (in [1, 2): every candidate is positive)
    dummy edge (i, i'): 2              (a partner of correlation 0)

A full matching always exists (all rows to their dummies), all weights are non-zero (the solver's requirement),
and minimising the summed cost is maximising the summed correlation of the real pairs, each unmatched feature
counting 0. That is the dense Hungarian's objective (``matching.hungarian``) on the candidates, except that the
dense one must pair every feature of the smaller side, if need be at a negative correlation, where this one
leaves the feature unmatched (counted: ``LevelResult.summary``'s ``n_unmatched_a`` / ``_b``). A leftover dense pair
sits near or below 0, far below the null threshold, so the shared pairs are the same (tested against the dense
Hungarian in tests/compare/test_sparse_matching.py). With ``duals=True`` it also returns the LP duals that prove the
matching optimal, from which ``compare.sparse_matching`` checks the pairs the candidates left out.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from autointerp.compare.matching import Assignment

NO_PARTNER_COST = 2.0  # the cost of the dummy edge: what a partner of correlation 0 would cost


class Duals(NamedTuple):
    """Optimal LP duals of the matching: corr_ij <= u_i + v_j on every edge, with equality on matched pairs and
    sum(u) + sum(v) = the matched sum. ``compare.sparse_matching`` uses them to prove (or extend) the candidates."""

    rows: np.ndarray  # A feature ids (the graph's rows)
    u: np.ndarray
    cols: np.ndarray  # B feature ids (the graph's columns)
    v: np.ndarray  # >= 0


def sparse_assignment(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, duals: bool = False):
    """Maximum-weight one-to-one matching among the candidate pairs (rows[i], cols[i]) with corr values[i] > 0;
    features of either side may stay unmatched. Returns feature ids, as ``hungarian`` does (and, with ``duals``,
    the ``Duals`` that certify it: ``(Assignment, Duals)``)."""
    keep = values > 0
    rows, cols, values = rows[keep], cols[keep], values[keep].astype(np.float64)
    empty = np.zeros(0, np.int64)
    if not len(rows):
        none = Assignment(empty, empty, np.zeros(0))
        return (none, Duals(empty, np.zeros(0), empty, np.zeros(0))) if duals else none
    ur, ri = np.unique(rows, return_inverse=True)
    uc, ci = np.unique(cols, return_inverse=True)
    n_r, n_c = len(ur), len(uc)
    graph = sp.csr_matrix((np.concatenate([NO_PARTNER_COST - values, np.full(n_r, NO_PARTNER_COST)]),
                           (np.concatenate([ri, np.arange(n_r)]), np.concatenate([ci, n_c + np.arange(n_r)]))),
                          shape=(n_r, n_c + n_r))
    r, c = min_weight_full_bipartite_matching(graph)
    real = c < n_c
    edge = sp.csr_matrix((np.arange(1, len(values) + 1), (ri, ci)), shape=(n_r, n_c))  # which candidate each pair is
    picked = np.asarray(edge[r[real], c[real]]).ravel() - 1
    out = Assignment(ur[r[real]].astype(np.int64), uc[c[real]].astype(np.int64), values[picked])
    if not duals:
        return out
    u, v = _duals(graph, c[np.argsort(r)], n_c)
    return out, Duals(ur.astype(np.int64), u, uc.astype(np.int64), v)


def _duals(graph: sp.csr_matrix, match: np.ndarray, n_c: int, max_rounds: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Duals of the optimal assignment ``match`` (column per row) by shortest paths in its exchange graph.

    For the min-cost problem above the dual constraints are a_i - d_j <= cost_ij with d_j >= 0, equality on the
    matched edges and d = 0 on free columns. With a_i = cost(i, m_i) + d_{m_i}, that is d_{m_i} <= d_j + cost_ij -
    cost(i, m_i) for every other edge (i, j): d is the shortest-path distance from each column to a free one over
    arcs m_i -> j. Optimality means no negative cycle and d >= 0; Bellman-Ford rounds, vectorised over the arcs,
    run until nothing changes (as many rounds as the longest alternating path). In the max-weight form
    u_i = corr(i, m_i) - d_{m_i} (0 for a row left unmatched) and v_j = d_j."""
    n_r = graph.shape[0]
    rows = np.repeat(np.arange(n_r), np.diff(graph.indptr))
    matched_cost = np.asarray(graph[np.arange(n_r), match]).ravel()
    other = graph.indices != match[rows]
    src, dst = match[rows[other]], graph.indices[other]
    length = graph.data[other] - matched_cost[rows[other]]
    order = np.argsort(src, kind="stable")
    src, dst, length = src[order], dst[order], length[order]
    starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]]) if len(src) else np.zeros(0, np.int64)
    d = np.zeros(graph.shape[1])
    d[match] = np.inf  # matched columns: to be reached; free columns are the targets (0)
    for _ in range(max_rounds):
        if not len(src):
            break
        best = np.minimum.reduceat(length + d[dst], starts)
        heads = src[starts]
        better = best < d[heads] - 1e-12
        if not better.any():
            break
        d[heads[better]] = best[better]
    if not np.isfinite(d).all():
        raise RuntimeError("sparse assignment: a matched column reaches no free one (the dummy edges guarantee one)")
    # a row left to its dummy: -d there is <= 0, and 0 stays feasible (every neighbour j has d_j >= corr_ij + d_dummy)
    # and is complementary to being unmatched; so u >= 0 and sum(u) + sum(v) = the matched sum (strong duality)
    u = np.maximum((NO_PARTNER_COST - matched_cost) - d[match], np.where(match >= n_c, 0.0, -np.inf))
    return u, d[:n_c]
