"""E-step of the torch DP mixture: the weighted log probabilities of every sample under
every component (one GEMM), with an exact shortcut (identical components share their terms;
for "diag" they are also normalised as one column, :meth:`_EStep._e_step_stats_grouped`),
the responsibilities and the entropy term.

(Until 2026-12 the "full" E-step also skipped the Mahalanobis terms of components provably
negligible for a block, from a bound on each one's smallest precision eigenvalue. Its
bookkeeping cost as much as the products it saved: on the speed benchmark, and at D 128 /
K 100 and D 32 / K 200, the E-step was 6-18 % faster without it; benchmarks/RESULTS.md.)"""

from __future__ import annotations

import math

import torch


def _dedupe_components(st, P, muP):
    """Group components with bitwise-identical (dof, beta, P_k, mu_k P_k) (``-0.0`` and
    ``0.0`` count as equal, as in ``torch.equal``).

    Returns ``uniq`` (list of representative indices: each group's first) and ``inverse``
    (list of length K: position in ``uniq`` of each component's representative).

    The components' bytes are the keys of one dict (O(K)); comparing each component with
    the earlier ones of its (dof, beta) took O(K^2) ``torch.equal`` calls where many
    components share those two but not their precisions (2.2 million calls, a third of a
    default-run fit at truncation 320).
    """
    K = P.shape[0]
    # + 0.0 turns -0.0 into 0.0, so that the bytes compare as the values do
    rows = torch.cat([P.reshape(K, -1), muP.reshape(K, -1)], 1).add(0.0).cpu().numpy()
    keys = zip(st.dof.tolist(), st.mean_precision.tolist(), (r.tobytes() for r in rows),
               strict=True)
    first: dict = {}
    uniq: list = []
    inverse: list = []
    for k, key in enumerate(keys):
        j = first.setdefault(key, len(uniq))
        if j == len(uniq):
            uniq.append(k)
        inverse.append(j)
    return uniq, inverse


def _group_weights(const, inverse, U):
    """Components that share their Mahalanobis terms (``inverse`` (K,): each one's group of
    ``U``) differ only in their constants ``const`` (K,) float64 (the expected log weights;
    -inf for a deleted component). Returns, float64: each group's ``log sum exp(const)``
    (U,), each component's share of its group ``exp(const - that)`` (K,), and each group's
    ``sum share log share`` (U,)."""
    f64 = torch.float64
    top = torch.full((U,), -math.inf, dtype=f64, device=const.device)
    top = top.scatter_reduce(0, inverse, const, "amax")
    top = torch.where(torch.isfinite(top), top, 0.0)
    w = torch.exp(const - top[inverse])
    total = torch.zeros(U, dtype=f64, device=const.device).index_add_(0, inverse, w)
    share = torch.where(total[inverse] > 0, w / total[inverse], 0.0)
    plogp = torch.where(share > 0, share * torch.log(share), 0.0)
    return (top + torch.log(total), share,
            torch.zeros(U, dtype=f64, device=const.device).index_add_(0, inverse, plogp))


def expected_log_weights(st):
    """E[log pi_k] (K,) under the stick-breaking posterior Beta(wc_a, wc_b) of state ``st``."""
    digamma = torch.special.digamma
    dsum = digamma(st.wc_a + st.wc_b)
    cum = torch.cumsum(digamma(st.wc_b) - dsum, 0)
    return digamma(st.wc_a) - dsum + torch.cat([cum.new_zeros(1), cum[:-1]])


class _EStep:
    """Mixin: E-step quantities cached per state, weighted log probabilities, one E-step pass."""

    # --- E-step --------------------------------------------------------------
    def _prepare_estep(self, st):
        """Cache the compute-dtype quantities of the E-step for state `st`."""
        D = self.n_features_in_
        dt = self._dtype
        self._groups = None
        digamma = torch.special.digamma
        i = torch.arange(D, dtype=torch.float64, device=self._device)
        log_lambda = D * math.log(2.0) + digamma(0.5 * (st.dof[:, None] - i)).sum(1)
        log_weights = expected_log_weights(st)
        const = (
            -0.5 * D * math.log(2 * math.pi)
            + st.log_det_prec_chol
            - 0.5 * D * torch.log(st.dof)
            + 0.5 * (log_lambda - D / st.mean_precision)
            + log_weights
        )
        if self.estep_reg_covar:  # reg_covar's expected cost, as the M-step counts it
            const = const - 0.5 * self.reg_covar * (st.prec_chol**2).flatten(1).sum(1)
        if getattr(self, "_deleted", None) is not None:  # a deletion move: these components take no samples
            const = const.masked_fill(self._deleted, -math.inf)
        if self.covariance_type == "full":
            P = st.prec_chol.to(dt)  # (K, D, D)
            muP = torch.einsum("kd,kde->ke", st.means, st.prec_chol).to(dt)
            P, muP, uniq = self._unique_components(st, P, muP)
            U = len(uniq)
            # [x, 1] @ [[P_1 ... P_U], [-mu_1 P_1 ... -mu_U P_U]] = [(x - mu_k) P_k]_k
            self._Pcat = torch.cat(
                [P.permute(1, 0, 2).reshape(D, U * D), -muP.reshape(1, U * D)], 0
            ).contiguous()
            self._n_unique = U
            self._const = const.to(dt)
        else:
            prec = st.prec_chol**2  # (K, D)
            c2 = (st.means**2 * prec).sum(1)
            # wlp = [x, x^2] @ Wt^T + const', one row of Wt per unique component (as for
            # "full"). Wt is kept (U, 2D), its transpose the product's operand: a skinny
            # (b, 2D) @ (2D, U) with U of 5-50 ran 2-3x slower from a row-major (2D, U) on
            # an AMD EPYC's MKL (25.8 against 9.3 ms at U 5; benchmarks/RESULTS.md)
            prec, muP, _ = self._unique_components(st, prec.to(dt), (st.means * prec).to(dt))
            self._Wt = torch.cat([muP, -0.5 * prec], 1).contiguous()  # (U, 2D)
            self._const = (const - 0.5 * c2).to(dt)
            if self._inverse is not None and self._group_shared:
                self._groups = _group_weights(const - 0.5 * c2, self._inverse, self._Wt.shape[0])

    def _unique_components(self, st, P, muP):
        """``(P, muP, uniq)`` for the unique components only, and ``self._inverse`` (K,)
        mapping every component to its representative (None when all are unique).

        Components whose (P_k, mu_k P_k) are bitwise identical in the compute dtype have
        identical Mahalanobis distances: compute them once. This is exact; it happens for
        "dead" components whose responsibilities underflow to 0 (their parameters all equal
        the prior's), which is most of them once the DP has pruned.
        """
        K = P.shape[0]
        if self._share_identical:
            uniq, inverse = _dedupe_components(st, P, muP)
        else:
            uniq = list(range(K))
        self._inverse = None
        if len(uniq) < K:
            self.fit_stats_["mahalanobis_shared"] += K - len(uniq)
            idx = torch.as_tensor(uniq, device=P.device)
            P, muP = P[idx], muP[idx]
            self._inverse = torch.as_tensor(inverse, device=P.device)
        return P, muP, uniq

    def _weighted_log_prob(self, Xa):
        """``_estimate_log_prob + _estimate_log_weights`` of a centred block, (b, K).

        Xa : (b, D + aug) rows of the centred data (see ``_centre``): ``[x, 1]`` for
        "full", ``[x, x^2]`` for "diag".
        """
        if self.covariance_type == "full":
            b, U, cols = Xa.shape[0], self._n_unique, self._Pcat.shape[1]
            self._count_flops(2.0 * Xa.numel() * cols)
            # on a CPU, row slices whose product stays in cache until its norms have read it
            rows = max(16, self._slice_elems // cols) if Xa.is_cpu else b
            Y = self._scratch("Y", (min(rows, b), cols))
            maha = torch.empty((b, U), dtype=Xa.dtype, device=Xa.device)
            for s in range(0, b, rows):
                e = min(s + rows, b)
                torch.mm(Xa[s:e], self._Pcat, out=Y[: e - s])
                torch.linalg.vector_norm(Y[: e - s].view(e - s, U, -1), dim=2, out=maha[s:e])
            maha.square_()
            if self._inverse is not None:
                maha = maha.index_select(1, self._inverse)
            return torch.add(self._const, maha, alpha=-0.5)
        self._count_flops(2.0 * Xa.numel() * self._Wt.shape[0])
        wlp = torch.mm(Xa, self._Wt.T)
        if self._inverse is not None:
            wlp = wlp.index_select(1, self._inverse)
        return wlp.add_(self._const)

    def _normalise(self, wlp):
        """Responsibilities R (b, K), the block's entropy term ``sum R log R`` (a float64
        scalar tensor) and each row's most probable component (b,) from a block's weighted
        log probabilities (b, K), which it overwrites.

        Responsibilities up to ``self._flush`` are set to 0 (see ``_fit``).  ``exp`` runs
        5-30x slower on arguments far below its range (-1000: 5 ms for 20,000 x 50 against
        0.2 ms), which most entries are once components separate; entries under
        ``log(flush) - 1`` relative to their row's maximum are flushed whatever their value,
        so they are clamped there first (their share of the row's sum, < K flush / e, is
        below rounding: the row's sum is >= 1).

        The entropy term is scikit-learn's ``sum exp(log_resp) log_resp`` over the kept
        entries, computed without forming ``log_resp``: with ``z = wlp - max`` (clamped; a
        kept entry has ``z >= log(flush)``, above the clamp) and ``s`` the row's sum of
        ``exp(z)``, ``sum_k R log R = sum_k R z - log(s) sum_k R`` per row; the row sums are
        float32, their sum float64.
        """
        mx, lab = wlp.max(1, keepdim=True)
        z = wlp.sub_(mx).clamp_min_(self._log_flush - 1.0)  # wlp is the caller's temporary
        R = torch.exp(z)
        ssum = R.sum(1, keepdim=True)
        R /= ssum
        torch.nn.functional.threshold_(R, self._flush, 0.0)  # R <= flush -> 0, one pass
        rows = z.mul_(R).sum(1) - torch.log(ssum).squeeze(1) * R.sum(1)
        return R, rows.sum(dtype=torch.float64), lab.squeeze(1)

    def _e_step_stats(self, Xc, st):
        """One pass over the data: E-step + sufficient statistics + entropy. The E-step's
        parts (its cached quantities, each block's log-probabilities and responsibilities)
        are marked in ``self._estep_marks`` (see ``_iterate``'s profile); the rest of the
        pass is the statistics.

        For "full", samples are visited in the order ``self._perm`` (sorted by
        their most probable component at the previous iteration), so that a
        block mostly holds samples of a few components and the scatter matrices
        of the others can be skipped (their responsibilities are exactly 0 or
        provably negligible there).  The order changes only the summation order.
        """
        start = self._mark()
        self._prepare_estep(st)
        self._estep_marks = marks = [(start, self._mark())]
        if self._groups is not None:
            return self._e_step_stats_grouped(Xc)
        acc = self._new_acc(st.means)
        perm = self._perm
        labels = []
        # identical components share their product columns: size the blocks by the rest
        width = self._n_unique if self.covariance_type == "full" else None
        for s, e in self._blocks(Xc.shape[0], self._block_rows(width)):
            start = self._mark()
            Xa = Xc[s:e] if perm is None else Xc.index_select(0, perm[s:e])
            R, ent, lab = self._normalise(self._weighted_log_prob(Xa))
            marks.append((start, self._mark()))
            if perm is not None:
                labels.append(lab)
            acc["ent"] += ent
            self._accumulate(acc, Xa, R, None if perm is not None else (s, e))
        if perm is not None:
            self._perm = perm[torch.argsort(torch.cat(labels), stable=True)]
        nk, xk, sk = self._finish_stats(acc)
        return nk, xk, sk, self._zeta * float(acc["ent"])

    def _e_step_stats_grouped(self, Xc):
        """One "diag" pass when components share their Mahalanobis terms (the prior's
        copies once the DP has left them empty: 45 of 50 in the paper setting's later
        iterations): each group of identical components is one column of the
        normalisation, its members' weights summed (``_group_weights``), and its statistics
        are shared out among the members by their weights afterwards. The same sums as
        normalising every component, over U columns instead of K; the flush applies to a
        group's responsibility (each member's is smaller)."""
        log_mass, share, plogp = self._groups
        inverse = self._inverse
        U = log_mass.numel()
        acc = self._new_acc(None, rows=U)
        log_mass_dt = log_mass.to(self._dtype)
        for s, e in self._blocks(Xc.shape[0]):
            start = self._mark()
            Xa = Xc[s:e]
            self._count_flops(2.0 * Xa.numel() * U)
            R, block_ent, _ = self._normalise(torch.mm(Xa, self._Wt.T).add_(log_mass_dt))
            self._estep_marks.append((start, self._mark()))
            acc["ent"] += block_ent
            self._accumulate(acc, Xa, R, (s, e))
        # sum_k R_k log R_k over a group's members, R_k = R_group share_k
        acc["ent"] += (acc["nk"] * plogp).sum()
        members = {"nk": share * acc["nk"][inverse],
                   "sx": share[:, None] * acc["sx"][inverse],
                   "sxx": share[:, None] * acc["sxx"][inverse]}
        nk, xk, sk = self._finish_stats(members)
        return nk, xk, sk, self._zeta * float(acc["ent"])

