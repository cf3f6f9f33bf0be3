"""Sufficient statistics of the torch DP mixture: data blocks, centring, initial
responsibilities, and (nk, xk, sk) accumulated block by block with large matrix products."""

from __future__ import annotations

import math

import numpy as np
import torch

ELKAN_MAX_BOUNDS = 1 << 26
"""The largest n_samples x n_components for which the K-means start uses Elkan's algorithm
(its lower bounds: 512 MB of float64); larger starts use Lloyd's."""


def kmeans_on_device(X, K, random_state, device, tol=1e-4, max_iter=300):
    """scikit-learn's ``KMeans(K, n_init=1, random_state=random_state, tol=tol,
    max_iter=max_iter)`` labels,
    (n,) int64 on ``device``: its k-means++ seeds (the same draws from ``random_state``, on
    the CPU), then Lloyd's iterations on ``device`` in float64 (:func:`lloyd`). X: (n, d)."""
    from sklearn.cluster import kmeans_plusplus

    Xd = torch.as_tensor(np.asarray(X), dtype=torch.float64, device=device)
    Xd = Xd - Xd.mean(0)  # KMeans centres X before seeding
    centres, _ = kmeans_plusplus(Xd.cpu().numpy(), K, random_state=random_state)
    return lloyd(Xd, torch.as_tensor(centres, device=Xd.device), max_iter=max_iter, tol=tol)


def lloyd(X, centres, max_iter=300, tol=1e-4):
    """Lloyd's K-means iterations as scikit-learn's ``KMeans(algorithm="lloyd")`` runs them
    from given centres, on ``X``'s device: X (n, d) and centres (K, d) float64 tensors ->
    labels (n,) int64. Stops when no label changes, or when the centres' total squared shift
    is at most ``tol`` times the mean variance of X's features (scikit-learn's rule), after
    ``max_iter`` iterations at most. One difference: a cluster left empty keeps its centre
    (scikit-learn moves it to the point farthest from its own centre)."""
    tol = tol * float(X.var(0, unbiased=False).mean())

    def assign(c):
        return ((c * c).sum(1)[None, :] - 2.0 * (X @ c.T)).argmin(1)

    labels = None
    for _ in range(max_iter):
        new = assign(centres)
        if labels is not None and torch.equal(new, labels):
            return new
        labels = new
        counts = torch.bincount(labels, minlength=len(centres)).to(X.dtype)[:, None]
        sums = torch.zeros_like(centres).index_add_(0, labels, X)
        moved = torch.where(counts > 0, sums / counts.clamp_min(1.0), centres)
        shift = float(((moved - centres) ** 2).sum())
        centres = moved
        if shift <= tol:
            break
    return assign(centres)


class _Statistics:
    """Mixin: the per-sample passes that produce scikit-learn-style statistics."""

    def _blocks(self, n, rows=None):
        if rows is None:
            rows = self._block_rows()
        for s in range(0, n, rows):
            yield s, min(s + rows, n)

    def _block_rows(self, width=None):
        """Rows per block: ``chunk_size``, and for "full" at most ``_block_elems`` elements
        of the (rows, width, D) temporaries (``_device_block_elems`` off the CPU; ``width``:
        the components a block's products cover, all ``_K`` unless given)."""
        rows = self.chunk_size
        if self.covariance_type == "full":
            # (rows, width, D) temporaries bounded by _block_elems, but rows >= 2 D so
            # that the O(K D^2) work per block stays small next to the products
            per_row = (width or self._K) * self.n_features_in_
            elems = self._block_elems if self._device.type == "cpu" else self._device_block_elems
            rows = min(rows, max(16, 2 * self.n_features_in_, elems // per_row))
        return max(1, rows)

    def _scratch(self, name, shape):
        """An uninitialised ``shape`` tensor of the compute dtype for a block's product,
        the same memory on every call of a fit.

        A fresh 10-20 MB output on every block costs the page faults of new memory (the
        allocator may hand such blocks back to the system on free): replaying one E-step pass
        of the speed benchmark's fit, its products took 23 ms into fresh memory and 10.5 ms
        into reused memory (the whole fit gained a few per cent). Outside a fit
        (``predict``) the tensor is freshly allocated.
        """
        n = math.prod(shape)
        bufs = self._scratch_bufs
        if bufs is None:
            return torch.empty(shape, dtype=self._dtype, device=self._device)
        buf = bufs.get(name)
        if buf is None or buf.numel() < n:
            buf = bufs[name] = torch.empty(n, dtype=self._dtype, device=self._device)
        return buf[:n].view(shape)

    def _n_aug_cols(self, d):
        """Columns the centred data carries after its D features: 1 for "full" (a column
        of ones: it folds ``- mu_k P_k`` into the Mahalanobis product), D for "diag" (the
        squares: ``[x, x^2]`` is the E-step's and the statistics' GEMM operand, made once
        per fit instead of once per block and iteration)."""
        return 1 if self.covariance_type == "full" else d

    def _augment(self, rows, d):
        """Fill the extra columns of ``rows`` (b, D + aug) from its first D (see
        :meth:`_n_aug_cols`)."""
        if self.covariance_type == "full":
            rows[:, d] = 1.0
        else:
            torch.mul(rows[:, :d], rows[:, :d], out=rows[:, d:])

    def _centre(self, X, device, dtype):
        """Centred copy of X in `dtype` on `device` plus float64 mean, Gram, max|x|.

        Returns
        -------
        Xc : tensor (N, D + aug) of `dtype`: the centred data, then the columns of
            :meth:`_n_aug_cols` (``[x, 1]`` for "full", ``[x, x^2]`` for "diag")
        shift : tensor (D,) float64, the column means of X
        gram : tensor float64, sum of centred outer products (D, D) for "full", only its
            diagonal (D,) for "diag" (the prior's covariance is diagonal there: the
            whole Gram matrix was 0.15 s of work at D 512)
        absmax : tensor (D,) float64, max |Xc| per feature
        """
        f64 = torch.float64
        n, d = X.shape
        rows = max(1, min(self.chunk_size, (1 << 22) // d))
        src = X if isinstance(X, torch.Tensor) else torch.from_numpy(X)
        total = torch.zeros(d, dtype=f64, device=device)
        for s in range(0, n, rows):
            total += src[s : s + rows].to(device=device, dtype=f64).sum(0)
        shift = total / n
        Xc = torch.empty((n, d + self._n_aug_cols(d)), dtype=dtype, device=device)
        full = self.covariance_type == "full"
        gram = torch.zeros((d, d) if full else d, dtype=f64, device=device)
        absmax = torch.zeros(d, dtype=f64, device=device)
        for s in range(0, n, rows):
            blk = src[s : s + rows].to(device=device, dtype=f64) - shift
            gram += blk.T @ blk if full else blk.square().sum(0)
            absmax = torch.maximum(absmax, blk.abs().amax(0))
            Xc[s : s + rows, :d] = blk
            self._augment(Xc[s : s + rows], d)
        return Xc, shift, gram, absmax

    def _transposed(self, Xc):
        """``Xc^T`` (D + aug, N), contiguous, for the "diag" statistics on a CPU (at most
        ``_transposed_elems`` elements), else None.

        The statistics ``R^T [x, x^2]`` (K', 2D) are a product with few rows; MKL ran it on
        one core, re-reading the block from memory (an AMD EPYC: 18-31 ms for 20,000 x 1,000
        with K' 5-11), and its transpose ``[x, x^2]^T R`` (2D, K') from the transposed data,
        with ``R`` stored (K', b), on both (9-20 ms; benchmarks/RESULTS.md)."""
        if self.covariance_type != "diag" or not Xc.is_cpu or Xc.numel() > self._transposed_elems:
            return None
        return Xc.T.contiguous()

    def _initial_resp(self, X, random_state, device, dtype):
        """Initial responsibilities exactly as scikit-learn's ``_initialize_parameters``, over
        the truncation's ``self._K`` components."""
        n, _ = X.shape
        K = self._K
        Xn = X.cpu().numpy() if isinstance(X, torch.Tensor) else X
        if self.init_params == "kmeans" and torch.device(device).type == "cuda":
            # on 16 CPU cores scikit-learn's K-means took most of a fit on the GPU
            return ("labels", kmeans_on_device(Xn, K, random_state, device,
                                               max_iter=self.kmeans_max_iter))
        if self.init_params == "kmeans":
            from sklearn.cluster import KMeans

            # Elkan's exact acceleration of Lloyd's iterations: the same labels as
            # scikit-learn's default (lloyd) on every data set compared, in half the time
            # on the paper's 512-dimensional setting (benchmarks/RESULTS.md; exact distance
            # ties, as on integer-grid data, may be broken otherwise); its bounds
            # hold n x K float64, so beyond ELKAN_MAX_BOUNDS elements it is Lloyd's.
            algorithm = "elkan" if n * K <= ELKAN_MAX_BOUNDS else "lloyd"
            labels = KMeans(n_clusters=K, n_init=1, random_state=random_state,
                            algorithm=algorithm, max_iter=self.kmeans_max_iter).fit(Xn).labels_
            return ("labels", torch.as_tensor(labels, device=device, dtype=torch.int64))
        if self.init_params == "k-means++":
            from sklearn.cluster import kmeans_plusplus

            _, idx = kmeans_plusplus(Xn, K, random_state=random_state)
            labels = np.full(n, -1, dtype=np.int64)
            labels[idx] = np.arange(K)
            return ("labels", torch.as_tensor(labels, device=device))
        if self.init_params == "random":
            resp = random_state.uniform(size=(n, K)).astype(Xn.dtype)
            resp /= resp.sum(axis=1)[:, np.newaxis]
            return ("dense", torch.as_tensor(resp, device=device, dtype=dtype))
        # random_from_data
        idx = random_state.choice(n, size=K, replace=False)
        labels = np.full(n, -1, dtype=np.int64)
        labels[idx] = np.arange(K)
        return ("labels", torch.as_tensor(labels, device=device))

    def _resp_block(self, resp_src, s, e):
        kind, data = resp_src
        if kind == "dense":
            return data[s:e]
        ar = torch.arange(self._K, device=data.device)
        return (data[s:e, None] == ar).to(self._dtype)

    # --- sufficient statistics ----------------------------------------------
    def _new_acc(self, centres, rows=None):
        """Zeroed statistics of ``rows`` components (default all ``_K``); ``centres``: the
        reference centres of "full" (unused for "diag")."""
        K, D = rows or self._K, self.n_features_in_
        z = dict(dtype=torch.float64, device=self._device)
        acc = {
            "nk": torch.zeros(K, **z),
            "sx": torch.zeros(K, D, **z),
            "nk_inc": torch.zeros(K, **z),
            "sx_inc": torch.zeros(K, D, **z),
            "ent": torch.zeros((), **z),
        }
        if self.covariance_type == "full":
            acc["S"] = torch.zeros(K, D, D, **z)
            acc["centres64"] = centres
            acc["shifts"] = []  # per block: (components or None for all, v, d); see _accumulate
        else:
            acc["sxx"] = torch.zeros(K, D, **z)
        return acc

    def _accumulate(self, acc, Xa, R, rows=None):
        """Add the statistics of one block.

        Xa : (b, D + aug) rows of the centred data (see :meth:`_centre`); R : (b, K)
        responsibilities; rows : ``(s, e)`` when ``Xa`` is the fit's data ``Xc[s:e]`` (its
        columns of the transposed copy, :meth:`_transposed`, then serve "diag").
        """
        f64 = torch.float64
        D = self.n_features_in_
        Xb = Xa[:, :D]
        b = Xb.shape[0]
        bnk = R.sum(0)
        acc["nk"] += bnk
        if self.covariance_type == "diag":
            # [sum r x, sum r x^2] (K', 2D), for the K' components with responsibility
            nz = torch.nonzero(bnk > 0).squeeze(1)
            every = nz.numel() == R.shape[1]
            Rn = R if every else R[:, nz]
            if rows is not None and self._Xt is not None:
                # (2D, b) @ (b, K'), the right operand stored (K', b)
                G = (self._Xt[:, rows[0] : rows[1]] @ Rn.T.contiguous().T).T
            else:
                G = Rn.T @ Xa
            if every:
                acc["sx"] += G[:, :D]
                acc["sxx"] += G[:, D:]
            else:
                acc["sx"][nz] += G[:, :D]
                acc["sxx"][nz] += G[:, D:]
            self._count_flops(2.0 * b * nz.numel() * Xa.shape[1], statistics=True)
            return
        bsx = R.T @ Xb
        acc["sx"] += bsx
        if self._skip_negligible:
            active = bnk.to(f64) * self._skip_ratio > self._skip_thr * b
            idx = torch.nonzero(active).squeeze(1)
            n_act = idx.numel()
        else:
            active = None
            n_act = self._K
        self.fit_stats_["scatter_skipped"] += self._K - n_act
        if n_act == 0:
            return
        full_set = active is None or n_act == self._K
        if full_set:
            Ra, c = R, acc["centres64"]
        else:
            Ra, c = R[:, idx], acc["centres64"][idx]
        self._count_flops(2.0 * b * D * self._K, statistics=True)  # R^T X
        # on a CPU, a block whose responsibilities are mostly exact zeros (samples sorted
        # by component, a flushed tail) is scattered per component over its own samples
        on_own_rows = Xa.is_cpu and self._own_rows_share > 0
        owned = torch.nonzero(Ra.T, as_tuple=True) if on_own_rows else None
        if owned is not None and owned[0].numel() <= self._own_rows_share * b * n_act:
            Sb = self._scatter_own_rows(Xb, Ra, c, *owned)
        else:
            Sb = self._scatter_block_centred(acc, Xb, Ra, c, None if full_set else idx)
        if full_set:
            acc["S"] += Sb
            acc["nk_inc"] += bnk
            acc["sx_inc"] += bsx
        else:
            acc["S"].index_add_(0, idx, Sb)
            acc["nk_inc"].index_add_(0, idx, bnk[idx].to(f64))
            acc["sx_inc"].index_add_(0, idx, bsx[idx].to(f64))

    def _scatter_own_rows(self, Xb, Ra, c, comp, rows):
        """``sum_n r_nk (x_n - c_k)(x_n - c_k)^T`` (n_act, D, D) float64 over only the rows
        where ``r_nk > 0`` (``comp``, ``rows``: the nonzeros of ``Ra.T``, grouped by
        component), each component's rows gathered and centred at its reference centre
        ``c_k`` directly. The rows left out add exact zeros to the dense product of
        :meth:`_scatter_block_centred`; once components separate, a sample has one or two
        nonzero responsibilities, so this does about 1 / n_act of that product's work
        (benchmarks/RESULTS.md)."""
        n_act, D = Ra.shape[1], Xb.shape[1]
        counts = torch.bincount(comp, minlength=n_act).tolist()
        Y = Xb.index_select(0, rows).sub_(c.to(Xb.dtype).index_select(0, comp))
        Yw = Y * Ra[rows, comp].unsqueeze(1)
        out = torch.zeros((n_act, D, D), dtype=Xb.dtype, device=Xb.device)
        s = 0
        for j, n in enumerate(counts):
            if n:
                torch.mm(Yw[s : s + n].T, Y[s : s + n], out=out[j])
            s += n
        self._count_flops(2.0 * rows.numel() * D * D, statistics=True)
        return out.to(torch.float64)

    def _scatter_block_centred(self, acc, Xb, Ra, c, idx):
        """``sum_n r_nk (x_n - c_k)(x_n - c_k)^T`` (n_act, D, D) float64 over every row of
        the block, as one GEMM for all components, less a correction kept in
        ``acc["shifts"]`` (``idx``: the components, None for all).

        With cb the block mean, the GEMM gives T_k = sum_n (x_n - cb) [r_nk (x_n - c_k)]^T;
        as x - c_k = (x - cb) + d_k with d_k = cb - c_k,
          sum r (x - c_k)(x - c_k)^T = T_k + d_k w_k^T,  w_k = sum r (x - c_k),
        whose symmetric part (all that _finish_stats keeps) is sym(T_k) + v d^T + d v^T with
        v = w / 2. The (v, d) of every block are kept and their outer products summed once
        per pass as one batched product (:meth:`_centre_shifts`), not as (n_act, D, D)
        float64 arrays per block. Each product's terms are a sample's distance to the block
        mean times its weighted distance to the component's own centre: the float32 error
        grows with a component's distance from the block in its widths, not with that
        distance squared (with both factors centred at cb, a unit-variance component 10^4
        from the block mean came out with a variance of 16, and a wrong bound)."""
        b, D = Xb.shape
        n_act = Ra.shape[1]
        cb = Xb.mean(0)
        Xcb = Xb - cb
        A = torch.sub(Xb.unsqueeze(1), c.to(Xb.dtype).unsqueeze(0),
                      out=self._scratch("A", (b, n_act, D)))
        A.mul_(Ra.unsqueeze(2))  # r_nk (x_n - c_k)
        # Xcb^T A = [T_1 | ... | T_n_act] (D, n_act D): the wide product runs at the
        # machine's GEMM rate, the tall A^T Xcb at ~2/3 of it (same terms, same sums)
        Sb = (Xcb.T @ A.view(b, n_act * D)).view(D, n_act, D).transpose(0, 1).to(torch.float64)
        w = A.sum(0).to(torch.float64)
        # the scatter: (b x n_act D) by D
        self._count_flops(2.0 * b * D * n_act * D, statistics=True)
        d = cb.to(torch.float64) - c
        acc["shifts"].append((idx, 0.5 * w, d))
        return Sb

    def _finish_stats(self, acc):
        """(nk, xk, sk) exactly as scikit-learn's ``_estimate_gaussian_parameters``; in a
        tempered fit the counts ``nk`` are weighted by ``_zeta`` (means and covariances are
        the samples' own)."""
        eps = torch.finfo(self._dtype).eps
        nk_raw = acc["nk"]
        nk = nk_raw + 10 * eps
        weighted = nk if self._zeta == 1.0 else self._zeta * nk_raw + 10 * eps
        xk = acc["sx"] / nk[:, None]
        D = xk.shape[1]
        if self.covariance_type == "diag":
            sk = acc["sxx"] / nk[:, None] - xk**2 + self.reg_covar
            return weighted, xk, sk
        c = acc["centres64"]
        # acc["S"] + sum over blocks (v d^T + d v^T) = sum_inc r (x - c)(x - c)^T over the
        # included blocks (see _accumulate)
        S = acc["S"] + self._centre_shifts(acc["shifts"], acc["S"].shape[0])
        u = acc["sx_inc"] - acc["nk_inc"][:, None] * c  # sum_inc r (x - c)
        S = 0.5 * (S + S.mT)
        # shift the centre from c to xk: sum r (x-xk)(x-xk)^T
        d = xk - c
        ud = u[:, :, None] * d[:, None, :]
        S = S - ud - ud.mT + acc["nk_inc"][:, None, None] * d[:, :, None] * d[:, None, :]
        sk = S / nk[:, None, None]
        sk = sk + self.reg_covar * torch.eye(D, dtype=sk.dtype, device=sk.device)
        return weighted, xk, sk

    @staticmethod
    def _centre_shifts(shifts, K):
        """``sum_b v_b d_b^T + d_b v_b^T`` per component (K, D, D) float64, from the
        ``(components, v (n, D), d (n, D))`` of every block (components None: all K), as
        one batched product over the blocks."""
        if not shifts:
            return 0.0
        D = shifts[0][1].shape[1]
        V = shifts[0][1].new_zeros(K, len(shifts), D)
        Dm = torch.zeros_like(V)
        for j, (idx, v, d) in enumerate(shifts):
            if idx is None:
                V[:, j], Dm[:, j] = v, d
            else:
                V[idx, j], Dm[idx, j] = v, d
        C = torch.bmm(V.mT, Dm)
        return C + C.mT

    def _stats_from_resp(self, Xc, resp_src):
        rows = self._block_rows()
        K, D = self._K, self.n_features_in_
        zeros = torch.zeros(K, D, dtype=torch.float64, device=self._device)
        acc = self._new_acc(zeros)
        if self.covariance_type == "full":
            # first pass: centres = xk (two-pass algorithm, as accurate as sklearn)
            nk = torch.zeros(K, dtype=torch.float64, device=self._device)
            sx = torch.zeros(K, D, dtype=torch.float64, device=self._device)
            for s, e in self._blocks(Xc.shape[0], rows):
                R = self._resp_block(resp_src, s, e)
                nk += R.sum(0)
                sx += R.T @ Xc[s:e, :D]
            acc = self._new_acc(sx / (nk + 10 * torch.finfo(self._dtype).eps)[:, None])
        labels = []
        for s, e in self._blocks(Xc.shape[0], rows):
            R = self._resp_block(resp_src, s, e)
            labels.append(R.argmax(1))
            self._accumulate(acc, Xc[s:e], R, (s, e))
        self._perm = None
        if self.covariance_type == "full" and self._sort_blocks:
            self._perm = torch.argsort(torch.cat(labels), stable=True)
        return self._finish_stats(acc)
