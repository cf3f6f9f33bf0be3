"""Moves of the torch DPGMM between variational optima: merge, delete, reorder.

Variational EM started from K-means with K = truncation rarely empties a component: the
optimum it reaches keeps about as many clusters as it was given. These moves jump to a
better optimum of the *same* objective (scikit-learn's lower bound), in the manner of
memoized variational inference (Hughes & Sudderth, 2013): a move is proposed on the
sufficient statistics, scored by the lower bound it gives, and kept only if that rises.

The lower bound after an M-step is a function of the responsibilities R alone:
``L(R) = H(R) + sum_k [log Z_post(stats_k(R))] + stick terms``. Merging components j and
k replaces their columns of R by their sum, so the merged statistics are the sums of the
two (no pass over the data), and only the entropy needs the data: ``sum_n (r_j + r_k)
log(r_j + r_k)`` for each candidate pair, from one pass. A merged state is scored exactly,
then EM runs on from it (every EM step can only raise the bound).

Every function takes the estimator ``est`` (its priors, E-step and M-step) and a state;
shapes: ``N`` samples, ``D`` features, ``K`` = the fit's truncation ``est._K``.
"""

from __future__ import annotations

import numpy as np
import torch

from convdp.dpgmm.state import component_terms, lower_bound, stick_terms, stick_terms_rows

#: Merge rounds after convergence at most (each: two passes over the data, then EM).
MAX_MERGE_ROUNDS = 25
#: Candidate pairs scored per round at most: every pair of occupied components up to this
#: many, else those sharing responsibility first, then each component's nearest neighbour.
MAX_PAIRS = 1500
#: Merges tried with EM refinement per round when none raises the bound as it stands, and
#: the EM iterations each gets.
REFINE = 4
REFINE_ITER = 15
#: EM iterations after an early move (see :func:`early_moves`) before it is judged.
EARLY_EM = 5


def new_move_stats(stats):
    """Zero the moves' counters of ``fit_stats_``."""
    stats.update(merges=0, merge_rounds=0, reordered=0, deleted=0, delete_moves=0,
                 delete_moves_kept=0, early_moves_kept=0)


def early_moves(est, Xc, state, lower_bounds, spent):
    """The moves tried before EM has converged (after ``est.early_moves`` iterations), so
    that the many iterations in which the Dirichlet process slowly drains the pieces of a
    K-means start, with every component in every E-step, are not spent: one merge round
    (no refinement) and one delete move, each judged after :data:`EARLY_EM` iterations of
    EM against the bound it started from, as memoized VI judges its moves every lap
    (Hughes & Sudderth, 2013). EM then runs to convergence and :func:`run_moves` tries the
    moves again there, so the kept optimum is still a converged one, whose bound the
    moves at convergence can only raise.

    Returns (state, lower bounds of the kept path, iterations spent).
    """
    kept = 0
    if est.merge:
        state, lower_bounds, spent, _, kept = merge_round(
            est, Xc, state, lower_bounds, spent, em_iter=EARLY_EM, refine=False)
    if est.delete_below > 0:
        state, lower_bounds, spent, _, deleted = delete_moves(
            est, Xc, state, lower_bounds, spent, em_iter=EARLY_EM)
        kept += deleted
    est.fit_stats_["early_moves_kept"] += int(kept > 0)
    return state, lower_bounds, spent


def run_moves(est, Xc, state, lower_bounds, converged, spent=None):
    """Merge and delete moves until neither raises the bound (or the iterations run out).
    ``spent``: the iterations run so far (those of rejected moves too), by default
    ``len(lower_bounds)``.

    Returns (state, lower bounds of the kept path, iterations run, converged).
    """
    spent = len(lower_bounds) if spent is None else spent
    if not converged:
        return state, lower_bounds, spent, converged
    for _ in range(MAX_MERGE_ROUNDS):
        kept = 0
        if est.merge:
            state, lower_bounds, spent, converged, kept = merge_round(
                est, Xc, state, lower_bounds, spent
            )

        if est.delete_below > 0 and converged:
            state, lower_bounds, spent, converged, deleted = delete_moves(
                est, Xc, state, lower_bounds, spent
            )
            kept += deleted
        if not kept or not converged or not est.merge:
            break
    if est.merge and converged:
        state, lower_bounds, spent, converged = sort_round(est, Xc, state, lower_bounds, spent)
    return state, lower_bounds, spent, converged


def sort_round(est, Xc, state, lower_bounds, spent):
    """Reorder the components largest first if that raises the bound (stick-breaking puts
    more prior mass on the first sticks), then run EM on. Returns as :func:`run_moves`."""
    stats, ent, _ = stats_and_overlap(est, Xc, state)
    bound, _ = _score(est, stats, ent)
    stats, new, reordered = sort_by_size(est, stats, ent, bound)
    if not reordered:
        return state, lower_bounds, spent, True
    new_state, new_bounds, new_spent, converged = _continue(est, Xc, state, lower_bounds, spent,
                                                            stats, new)
    est.fit_stats_["reordered"] = int(new_state is not state)
    return new_state, new_bounds, new_spent, converged


def _budget(est, spent, em_iter):
    """EM iterations a move may run: what ``max_iter`` leaves, at most ``em_iter``."""
    left = est.max_iter - spent
    return left if em_iter is None else min(left, em_iter)


def _continue(est, Xc, state, lower_bounds, spent, stats, bound, em_iter=None):
    """EM from the state the moved ``stats`` give (whose bound is ``bound``), to
    convergence (or ``em_iter`` iterations); kept only if it ends above ``lower_bounds[-1]``.

    Returns (state, lower bounds, iterations spent, converged)."""
    moved = est._m_step(*stats)
    new_state, new_bounds, converged = est._iterate(Xc, moved, [bound],
                                                    _budget(est, spent, em_iter))
    new_bounds = new_bounds[1:]
    spent += len(new_bounds)
    if not new_bounds or new_bounds[-1] <= lower_bounds[-1]:
        return state, lower_bounds, spent, True
    return new_state, lower_bounds + new_bounds, spent, converged


# --------------------------------------------------------------------------------------
# passes over the data


def _responsibilities(est, Xc, state):
    """Yield ``(s, e, R, ent)`` per block ``Xc[s:e]`` under ``state`` (plain E-step, in
    data order): its responsibilities and entropy term (see ``_normalise``)."""
    est._deleted = None
    est._prepare_estep(state)
    for s, e in est._blocks(Xc.shape[0]):
        R, ent, _ = est._normalise(est._weighted_log_prob(Xc[s:e]))
        yield s, e, R, ent


def stats_and_overlap(est, Xc, state):
    """One pass: the statistics (nk, xk, sk) and entropy term of an E-step under ``state``,
    and the responsibility overlap ``R^T R`` (K, K), float64."""
    acc = est._new_acc(state.means)
    K = est._K
    overlap = torch.zeros(K, K, dtype=torch.float64, device=Xc.device)
    for s, e, R, ent in _responsibilities(est, Xc, state):
        acc["ent"] += ent
        est._accumulate(acc, Xc[s:e], R, (s, e))
        overlap += (R.T @ R).to(torch.float64)
    nk, xk, sk = est._finish_stats(acc)
    return (nk, xk, sk), est._zeta * float(acc["ent"]), overlap


def pair_entropy_change(est, Xc, state, pairs, overlap=None):
    """For each pair (j, k) of ``pairs`` (P, 2): the change of ``sum R log R`` when the two
    columns are summed, ``sum_n m log m - r_j log r_j - r_k log r_k`` (m = r_j + r_k), (P,).

    A sample where either responsibility is 0 adds exactly 0 (m is then the other one), so
    pairs whose responsibility overlap ``overlap`` (K, K) (``R^T R`` of the same E-step,
    :func:`stats_and_overlap`) is 0 change nothing and are not computed — about half of a
    round's candidates, which are mostly near neighbours that share no sample. This is
    exact while any two kept responsibilities' product is a normal float (``flush^2 >=
    tiny``: up to ~130,000 samples in float32); beyond, every pair is computed."""
    out = torch.zeros(len(pairs), dtype=torch.float64, device=Xc.device)
    if overlap is not None and est._flush**2 >= torch.finfo(est._dtype).tiny:
        todo = torch.nonzero(overlap[pairs[:, 0], pairs[:, 1]] > 0).squeeze(1)
    else:
        todo = torch.arange(len(pairs), device=Xc.device)
    if not todo.numel():
        return out
    j, k = pairs[todo, 0], pairs[todo, 1]
    xlogx = torch.special.xlogy
    for _, _, R, _ in _responsibilities(est, Xc, state):
        Rj, Rk = R[:, j], R[:, k]
        m = Rj + Rk
        out[todo] += (xlogx(m, m) - xlogx(Rj, Rj) - xlogx(Rk, Rk)).sum(0, dtype=torch.float64)
    return est._zeta * out


# --------------------------------------------------------------------------------------
# proposals on the statistics


def merge_candidates(stats, overlap, state, max_pairs):
    """Pairs (P, 2) of occupied components worth trying, most promising first: those that
    share responsibility (overlap normalised by the components' own), then the others by
    the distance of the means relative to their spreads (all of them when there are at most
    ``max_pairs`` pairs, else each component's nearest neighbour only)."""
    nk = stats[0]
    occupied = torch.nonzero(nk >= 1.0).squeeze(1)
    a = occupied.numel()
    if a < 2:
        return torch.empty(0, 2, dtype=torch.int64, device=nk.device)
    shared_resp = overlap[occupied][:, occupied]
    d = torch.sqrt(torch.diagonal(shared_resp).clamp_min(1e-300))
    score = shared_resp / (d[:, None] * d[None, :])
    m = state.means[occupied]
    spread = (torch.diagonal(state.cov, dim1=1, dim2=2) if state.cov.dim() == 3 else state.cov)
    spread = spread.sum(1)[occupied]
    dist = torch.cdist(m, m).square() / (spread[:, None] + spread[None, :])
    dist.fill_diagonal_(float("inf"))
    near = torch.zeros_like(score, dtype=torch.bool)
    near[torch.arange(a, device=nk.device), dist.argmin(1)] = True
    near |= near.T.clone()
    iu = torch.triu_indices(a, a, 1, device=nk.device)
    s, dd, nn = score[iu[0], iu[1]], dist[iu[0], iu[1]], near[iu[0], iu[1]]
    shared = torch.nonzero(s > 1e-6).squeeze(1)
    shared = shared[torch.argsort(s[shared], descending=True)]
    close = torch.nonzero((s <= 1e-6) & (nn | (len(s) <= max_pairs))).squeeze(1)
    close = close[torch.argsort(dd[close])]
    order = torch.cat([shared, close])[:max_pairs]
    return occupied[iu[:, order].T]


def _empty_count(est, nk):
    """The count a merged-away component keeps, ``_finish_stats``' ``10 eps`` of the compute
    dtype (not 0: it keeps every M-step well defined), a 0-dim tensor like ``nk``."""
    return nk.new_tensor(10 * torch.finfo(est._dtype).eps)


def merged_stats(est, stats, j, k):
    """The statistics of components ``j`` after merging components ``k`` into them (index
    tensors (P,)), as ``_finish_stats`` would give them for the summed responsibilities:
    (nk (P,), xk (P, D), sk (P, D, D) or (P, D)). A merged-away component is left with
    :func:`empty_stats`."""
    nk, xk, sk = stats
    e = _empty_count(est, nk)
    nj, nk_ = nk[j], nk[k]
    n = nj + nk_ - e
    x = (nj[:, None] * xk[j] + nk_[:, None] * xk[k]) / n[:, None]
    dj, dk = xk[j] - x, xk[k] - x
    reg = est.reg_covar
    if est.covariance_type == "full":
        eye = torch.eye(xk.shape[1], dtype=sk.dtype, device=sk.device)
        w_j, w_k = nj[:, None, None], nk_[:, None, None]
        scatter = ((sk[j] - reg * eye) * w_j + (sk[k] - reg * eye) * w_k
                   + w_j * (dj[:, :, None] * dj[:, None, :]) + w_k * (dk[:, :, None] * dk[:, None, :]))
        return n, x, scatter / n[:, None, None] + reg * eye
    scatter = (sk[j] - reg) * nj[:, None] + (sk[k] - reg) * nk_[:, None] + nj[:, None] * dj**2 + nk_[:, None] * dk**2
    return n, x, scatter / n[:, None] + reg


def empty_stats(est, stats):
    """The statistics a merge leaves its merged-away component: (nk (1,), xk (1, D), sk (1, D,
    D) or (1, D)): the count :func:`_empty_count`, the centre 0, the covariance ``reg_covar``."""
    nk, xk, sk = stats
    e = _empty_count(est, nk)[None]
    x = xk.new_zeros(1, xk.shape[1])
    return e, x, torch.full_like(x, est.reg_covar) if sk.dim() == 2 else (
        est.reg_covar * torch.eye(xk.shape[1], dtype=sk.dtype, device=sk.device))[None]


def pair_stats(est, stats, j, k):
    """The statistics of components j and k after merging k into j (k left empty): (nk
    (2,), xk (2, D), sk (2, D, D) or (2, D)), row 0 for j (:func:`merged_stats`), row 1 for
    k (:func:`empty_stats`)."""
    dev = stats[0].device
    merged = merged_stats(est, stats, torch.tensor([j], device=dev), torch.tensor([k], device=dev))
    empty = empty_stats(est, stats)
    return tuple(torch.cat(pair) for pair in zip(merged, empty, strict=True))


def merge_stats(est, stats, j, k):
    """The statistics with component k merged into j (k left empty) (see :func:`pair_stats`)."""
    nk, xk, sk = (t.clone() for t in stats)
    idx = [j, k]
    nk[idx], xk[idx], sk[idx] = pair_stats(est, stats, j, k)
    return nk, xk, sk


class _MergeScorer:
    """The bound after merging a pair, from the two components it changes: the other
    components' terms of the bound are those of the current statistics (see
    :func:`convdp.dpgmm.state.component_terms`), the sticks' are recomputed from the counts
    (O(K)). Equal to ``_score`` of the merged statistics up to summation order.

    ``bound`` is the current statistics' own (``_score``'s); when their M-step fails it is
    -inf and every pair is scored by a full M-step, as ``_score`` does."""

    #: Pairs whose merged statistics go through one M-step together, at most this many
    #: (D, D) matrices' elements (32 MB of float64).
    batch_elems = 1 << 22

    def __init__(self, est, stats, ent):
        self.est = est
        self.stats, self.ent = stats, ent
        try:
            st = est._m_step(*stats)
        except ValueError:
            self.terms, self.bound = None, float("-inf")
        else:
            self.terms, self.bound = component_terms(st), lower_bound(st, ent)

    def _terms(self, stats):
        """``component_terms`` of the M-step on ``stats``, or None where it fails."""
        try:
            return component_terms(self.est._m_step(*stats))
        except ValueError:
            return None

    def _bound(self, own, nk, j, k, dh):
        """The bound after the merges ``(j, k)`` (index tensors (P,)) whose two components'
        terms sum to ``own`` (P,), with the merged counts ``nk`` (P,) and entropy changes
        ``dh`` (P,) float64 NumPy; float64 NumPy (P,), summed as :meth:`score` sums."""
        counts = self.stats[0].expand(len(j), -1).clone()
        rows = torch.arange(len(j), device=counts.device)
        counts[rows, j] = nk
        counts[rows, k] = _empty_count(self.est, nk)
        rest = self.terms.sum() - self.terms[j] - self.terms[k]
        sticks = stick_terms_rows(counts, self.est._priors.concentration)
        return -(self.ent + dh) + (rest + own).cpu().numpy() + sticks.cpu().numpy()

    def score(self, j, k, dh):
        """(bound after merging k into j, the trial to :meth:`keep`); the bound is -inf when
        a merged covariance is not positive definite."""
        pair = pair_stats(self.est, self.stats, j, k)
        if self.terms is None:
            return _score(self.est, merge_stats(self.est, self.stats, j, k), self.ent + dh)[0], (pair, None)
        t = self._terms(pair)
        if t is None:
            return float("-inf"), (pair, None)
        nk = self.stats[0].clone()
        nk[[j, k]] = pair[0]
        rest = self.terms.sum() - self.terms[j] - self.terms[k]
        bound = -(self.ent + dh) + float(rest + t.sum()) + stick_terms(nk, self.est._priors.concentration)
        return bound, (pair, t)

    def keep(self, j, k, dh, bound, trial):
        """Make the merge of k into j (``trial`` from :meth:`score`, scored ``bound``) the
        current statistics."""
        pair, t = trial
        nk, xk, sk = (v.clone() for v in self.stats)
        nk[[j, k]], xk[[j, k]], sk[[j, k]] = pair
        self.stats, self.ent, self.bound = (nk, xk, sk), self.ent + dh, bound
        if self.terms is not None:  # (None: every pair is scored by a full M-step)
            self.terms = self.terms.clone()
            self.terms[[j, k]] = t

    def greedy(self, pairs, delta):
        """Keep, in the order of ``pairs`` (P, 2), every merge (k into j) that raises the
        bound, each component in one kept merge at most: :meth:`score` and :meth:`keep` for
        each pair in turn — unless the current statistics' M-step failed (every pair then
        takes a full M-step), with the merged components' terms of all pairs from batched
        M-steps (a pair's own statistics do not change while neither of its components is
        merged) and the bounds of the pairs still open recomputed after each kept merge.
        ``delta`` (P,): each merge's entropy change. Returns (merges kept, ``[(bound, (j,
        k))]`` of the pairs scored and not kept)."""
        pl, dh = pairs.tolist(), delta.double().cpu().numpy()
        batched = self.terms is not None
        if batched:
            J, Kk = pairs[:, 0], pairs[:, 1]
            n, merged, empty = self._pair_terms(J, Kk)
            ok = torch.isfinite(merged)
            own = torch.where(ok, merged + empty, 0.0)

            def bounds_of(q):  # the bounds of pairs q (list) against the current statistics
                qt = torch.tensor(q, device=pairs.device)
                b = self._bound(own[qt], n[qt], J[qt], Kk[qt], dh[q])
                return np.where(ok[qt].cpu().numpy(), b, -np.inf)

            bounds = bounds_of(list(range(len(pl))))
        used, kept, missed = set(), 0, []
        for p, (j, k) in enumerate(pl):
            if j in used or k in used:
                continue
            if batched:
                new = float(bounds[p])
            else:
                new, trial = self.score(j, k, float(dh[p]))
            if not new > self.bound:
                missed.append((new, (j, k)))
                continue
            if batched:
                trial = (pair_stats(self.est, self.stats, j, k), torch.stack([merged[p], empty]))
            self.keep(j, k, float(dh[p]), new, trial)
            used |= {j, k}
            kept += 1
            if batched and (rest := [q for q in range(p + 1, len(pl)) if not used & set(pl[q])]):
                bounds[rest] = bounds_of(rest)
        return kept, missed

    def _pair_terms(self, j, k):
        """For each merge of ``(j, k)`` (index tensors (P,)): the merged count (P,) and the
        merged component's term (P,), in batches through one M-step (pair by pair where a
        batch's M-step fails; NaN where the merged covariance is not positive definite); and
        the emptied component's term (a 0-dim tensor, the same for every pair)."""
        est, D = self.est, self.stats[1].shape[1]
        empty = self._terms(empty_stats(est, self.stats))[0]
        step = max(1, self.batch_elems // (D * D))
        n, terms = [], []
        for s in range(0, len(j), step):
            merged = merged_stats(est, self.stats, j[s:s + step], k[s:s + step])
            t = self._terms(merged)
            if t is None:  # some pair's merged covariance fails: find which, pair by pair
                t = torch.stack([
                    tp[0] if (tp := self._terms(tuple(m[i:i + 1] for m in merged))) is not None
                    else merged[0].new_tensor(float("nan")) for i in range(len(merged[0]))])
            n.append(merged[0])
            terms.append(t)
        return torch.cat(n), torch.cat(terms), empty


def _score(est, stats, ent):
    """Lower bound of the M-step on ``stats`` (with entropy term ``ent``), and the state;
    ``(-inf, None)`` when a component's covariance is not positive definite."""
    try:
        state = est._m_step(*stats)
    except ValueError:
        return float("-inf"), None
    return est._lower_bound(state, ent), state


def sort_by_size(est, stats, ent, bound):
    """Components reordered largest first (the stick-breaking prior favours it), if that
    raises the bound. Returns (stats, bound, reordered)."""
    order = torch.argsort(stats[0], descending=True, stable=True)
    if torch.equal(order, torch.arange(len(order), device=order.device)):
        return stats, bound, False
    permuted = tuple(t[order] for t in stats)
    new, _ = _score(est, permuted, ent)
    return (permuted, new, True) if new > bound else (stats, bound, False)


# --------------------------------------------------------------------------------------
# moves


def merge_round(est, Xc, state, lower_bounds, spent, em_iter=None, refine=True):
    """One round of merges: score candidate pairs on the statistics of one E-step, keep
    (greedily, each component in one pair at most) every merge that raises the bound,
    reorder by size, then run EM to convergence (or ``em_iter`` iterations) from the merged
    state. The round is kept only if its final bound beats the one it started from. When
    no merge raises the bound as it stands, :func:`refined_merge` (if ``refine``).

    Returns (state, lower bounds, iterations spent, converged, merges kept).
    """
    stats, ent, overlap = stats_and_overlap(est, Xc, state)
    pairs = merge_candidates(stats, overlap, state, max_pairs=MAX_PAIRS)
    est.fit_stats_["merge_rounds"] += 1
    if not len(pairs):
        return state, lower_bounds, spent, True, 0
    delta = pair_entropy_change(est, Xc, state, pairs, overlap)
    scorer = _MergeScorer(est, stats, ent)
    kept, missed = scorer.greedy(pairs, delta)  # missed: scored while nothing was kept, if none is
    stats, ent, bound = scorer.stats, scorer.ent, scorer.bound
    if not kept:
        if not refine:
            return state, lower_bounds, spent, False, 0
        return refined_merge(est, Xc, state, lower_bounds, spent, missed, stats)
    stats, bound, _ = sort_by_size(est, stats, ent, bound)
    new_state, new_bounds, new_spent, converged = _continue(est, Xc, state, lower_bounds, spent,
                                                            stats, bound, em_iter)
    if new_state is state:
        return state, lower_bounds, new_spent, True, 0
    est.fit_stats_["merges"] += kept
    return new_state, new_bounds, new_spent, converged, kept


def _trial(est, Xc, state, bound, target, budget):
    """EM from ``state`` (whose bound is ``bound``) for at most ``budget`` iterations,
    stopped once it ends above ``target``, converges, or cannot reach ``target`` even if
    every iteration left gained as much as the last one (EM's gains shrink as it converges,
    so that is an overestimate of where it ends). Returns (state, bounds: ``bound`` and
    those of the iterations run).

    A merge of two well-separated clusters starts 5-50 nats per sample below and regains a
    fraction of it; run to its budget it cost 15 E-steps a trial (the paper setting's fits,
    benchmarks/RESULTS.md). A trial that stalls and then climbs would be cut short: none did
    in the 21 fits compared there (the same bounds with and without the stop). Delete moves
    do (the emptied components come back after an iteration or two, and the bound jumps),
    so they are judged on their full budget."""
    bounds = [bound]
    for t in range(budget):
        state, bounds, converged = est._iterate(Xc, state, bounds, 1)
        gain = bounds[-1] - bounds[-2]
        if converged or bounds[-1] > target or bounds[-1] + gain * (budget - t - 1) <= target:
            break
    return state, bounds


def refined_merge(est, Xc, state, lower_bounds, spent, missed, stats):
    """When no merge raises the bound with the responsibilities held fixed, the
    :data:`REFINE` closest misses (``(bound, (j, k))`` of merges of ``stats``) are each given
    a few EM iterations (the samples re-assign around the merged component; see
    :func:`_trial`); the first that ends above the current bound is kept and EM runs on to
    convergence. Iterations of rejected trials do not count towards ``max_iter``. Returns
    as :func:`merge_round`."""
    for bound, (j, k) in sorted(missed, key=lambda m: -m[0])[:REFINE]:
        left = est.max_iter - spent
        if bound == float("-inf") or left < 2:
            break
        moved = est._m_step(*merge_stats(est, stats, j, k))
        trial, bounds = _trial(est, Xc, moved, bound, lower_bounds[-1], min(REFINE_ITER, left - 1))
        if bounds[-1] > lower_bounds[-1]:
            new_state, new_bounds, converged = est._iterate(
                Xc, trial, [bounds[-1]], left - (len(bounds) - 1))
            est.fit_stats_["merges"] += 1
            est.fit_stats_["refined_merges"] = est.fit_stats_.get("refined_merges", 0) + 1
            kept_bounds = bounds[1:] + new_bounds[1:]
            return (new_state, lower_bounds + kept_bounds, spent + len(kept_bounds), converged, 1)
    return state, lower_bounds, spent, True, 0


def delete_moves(est, Xc, state, lower_bounds, spent, em_iter=None):
    """Empty small components while that raises the lower bound (a better optimum).

    The components with ``0.5 < N_k < delete_below * n_samples`` (typically the small
    pieces a K-means start leaves, which the DP empties only very slowly, if ever) are
    given no samples for one E-step; EM then runs to convergence (or ``em_iter``
    iterations) again. The result is kept
    only if its lower bound is higher than before. A rejected set is halved (the smaller
    half is tried); an accepted move is followed by another on the new fit. Every
    iteration counts towards ``max_iter``, those of rejected moves too.

    Returns (state, lower bounds of the kept path, iterations spent, converged, components
    emptied).
    """
    n = est._effective_samples(Xc.shape[0])  # what the counts nk sum to
    stats = est.fit_stats_
    emptied = 0

    def candidates(state):  # smallest first; never the largest component
        nk = state.wc_a - 1.0
        order = torch.argsort(nk)[:-1]
        return order[((nk > 0.5) & (nk < est.delete_below * n))[order]]

    cand = candidates(state)
    converged = True
    while cand.numel() and est.max_iter - spent >= 2:
        est._deleted = torch.zeros(est._K, dtype=torch.bool, device=est._device)
        est._deleted[cand] = True
        new_state, new_bounds, converged = est._iterate(Xc, state, [],
                                                        _budget(est, spent, em_iter))
        spent += len(new_bounds)
        stats["delete_moves"] += 1
        if new_bounds[-1] > lower_bounds[-1]:
            stats["delete_moves_kept"] += 1
            stats["deleted"] += int(cand.numel())
            emptied += int(cand.numel())
            state, lower_bounds = new_state, lower_bounds + new_bounds
            if not converged:
                break
            cand = candidates(state)
        else:
            converged = True  # the kept fit had converged
            cand = cand[: cand.numel() // 2]
    est._deleted = None
    return state, lower_bounds, spent, converged, emptied
