"""Probability Aggregation Clustering (PAC; Yan, Lu, Yan, ECCV 2024, arXiv 2407.05246), offline.

Centre-less fuzzy clustering: soft assignments ``P`` (rows on the simplex) minimise

    J(P) = sum_k sum_i sum_{j != i} p_ik^m p_jk^m d_ij,

and each row has a closed-form minimiser given the others,
``p_ik ∝ s_ik^(-1/(m-1))`` with ``s_ik = sum_{j != i} d_ij p_jk^m``. Rows are updated in place, one after
the other (Gauss-Seidel), so J never increases.

Two exact algorithms give each row its ``s_i`` for the current state (see ``algorithm``): a factored one
that never forms distances (both metrics are low-rank in the features), and a blocked one that streams the
distance matrix in row blocks, never holding more than ``memory_budget_mb``. Each sweep also yields J of the
state it started from, so the objective history costs no extra pass.
"""

from __future__ import annotations

import logging
from numbers import Integral, Real

import numpy as np
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

log = logging.getLogger(__name__)

METRICS = ("cosine", "sqeuclidean")
ALGORITHMS = ("auto", "factored", "blocked")
_TINY = np.finfo(np.float64).tiny


class PAC(ClusterMixin, BaseEstimator):
    """Probability Aggregation Clustering.

    Parameters
    ----------
    n_clusters : int
        Number of clusters K (2 <= K <= n_samples).
    m : float
        Fuzzifier, slightly above 1 (paper: 1.03). The update raises to ``-1/(m-1)`` (33 at 1.03), so it is
        computed in log space.
    metric : {"cosine", "sqeuclidean"}
        ``d_ij = 1 - cos(x_i, x_j)`` or ``|x_i - x_j|^2``.
    max_iter : int
        Most sweeps over all rows.
    tol : float
        Stop when the mean L1 change of the rows in a sweep falls below ``tol`` (after ``min_iter`` sweeps),
        unless the rows are still near uniform (mean largest membership below 2/K): the start is a saddle
        that small changes alone do not show the run has left.
    min_iter : int
        Fewest sweeps before the tolerance is checked (the paper uses 10).
    random_state : int, RandomState or None
        Seeds the near-uniform initialisation ``p_i = softmax(eps_i / 1000)``.
    batch_size : int
        Rows per distance block; lowered automatically to fit ``memory_budget_mb``.
    memory_budget_mb : float
        Memory for distance blocks. When the full N x N matrix fits, it is computed once and reused.
    dtype : {"float32", "float64"}
        Precision of the blocked algorithm's distances and aggregations (row updates are always float64).
    algorithm : {"auto", "factored", "blocked"}
        ``factored`` (``auto``): both metrics factor through the features, so each row's aggregation comes
        from running K-wide sums in O(d K), with no distance matrix: a sweep is O(N d K). ``blocked``: the
        distance matrix streamed in row blocks, O(N^2 (d + K)) a sweep; the reference, and the path for
        distances that do not factor. Both do the same in-place row updates.
    """

    def __init__(
        self,
        n_clusters: int = 8,
        m: float = 1.03,
        metric: str = "cosine",
        max_iter: int = 100,
        tol: float = 1e-3,
        min_iter: int = 10,
        random_state=None,
        batch_size: int = 1024,
        memory_budget_mb: float = 1024.0,
        dtype: str = "float64",
        algorithm: str = "auto",
    ):
        self.n_clusters = n_clusters
        self.m = m
        self.metric = metric
        self.max_iter = max_iter
        self.tol = tol
        self.min_iter = min_iter
        self.random_state = random_state
        self.batch_size = batch_size
        self.memory_budget_mb = memory_budget_mb
        self.dtype = dtype
        self.algorithm = algorithm

    # -- validation ----------------------------------------------------------------------------
    def _check_params(self, n_samples: int) -> None:
        k = self.n_clusters
        if not isinstance(k, Integral) or isinstance(k, bool) or k < 2:
            raise ValueError(f"n_clusters must be an integer >= 2, got {k!r}")
        if k > n_samples:
            raise ValueError(f"n_clusters={k} is larger than the number of samples ({n_samples})")
        if not isinstance(self.m, Real) or not self.m > 1 or not np.isfinite(self.m):
            raise ValueError(f"m must be a finite number > 1 (the paper uses 1.03), got {self.m!r}")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        for name in ("max_iter", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.min_iter, Integral) or self.min_iter < 0:
            raise ValueError(f"min_iter must be a non-negative integer, got {self.min_iter!r}")
        if not isinstance(self.tol, Real) or self.tol < 0:
            raise ValueError(f"tol must be a non-negative number, got {self.tol!r}")
        if not isinstance(self.memory_budget_mb, Real) or self.memory_budget_mb <= 0:
            raise ValueError(f"memory_budget_mb must be positive, got {self.memory_budget_mb!r}")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=self.dtype)
        if self.metric == "cosine":
            norms = np.linalg.norm(X, axis=1)
            zero = np.flatnonzero(norms == 0)
            if zero.size:
                raise ValueError(
                    f"{zero.size} rows have zero norm (first: row {zero[0]}); cosine distance is undefined for "
                    "them: drop them or use metric='sqeuclidean'"
                )
            X = X / norms[:, None]
        return X

    # -- distances ------------------------------------------------------------------------------
    def _distances(self, A: np.ndarray, B: np.ndarray, sq_b: np.ndarray | None) -> np.ndarray:
        gram = A @ B.T
        if self.metric == "cosine":
            return np.subtract(1.0, gram, out=gram)
        sq_a = np.einsum("ij,ij->i", A, A)
        gram *= -2.0
        gram += sq_a[:, None]
        gram += sq_b[None, :]
        return np.maximum(gram, 0.0, out=gram)

    def _block_rows(self, n: int) -> int:
        itemsize = np.dtype(self.dtype).itemsize
        fit = int(self.memory_budget_mb * 2**20 // (itemsize * n))
        return max(1, min(self.batch_size, n, fit))

    # -- fitting --------------------------------------------------------------------------------
    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        n = X.shape[0]
        self._check_params(n)
        Xn = self._prepare(X)
        sq = np.einsum("ij,ij->i", Xn, Xn) if self.metric == "sqeuclidean" else None
        k, inv = self.n_clusters, 1.0 / (self.m - 1.0)

        rng = check_random_state(self.random_state)
        log_p = rng.standard_normal((n, k)) / 1000.0
        log_p -= logsumexp(log_p, axis=1, keepdims=True)
        pm = np.exp(self.m * log_p)

        if self._algorithm() == "factored":
            sweep, final = self._factored(Xn, sq, log_p, pm, inv)
        else:
            sweep, final = self._blocked(Xn, sq, log_p, pm, inv)

        history: list[float] = []
        n_iter = 0
        for it in range(1, self.max_iter + 1):
            objective, change = sweep()
            history.append(objective)
            n_iter = it
            log.debug("sweep %d: J(before)=%.6g, mean row change %.3g", it, objective, change)
            # The paper stops on a small change alone. From its near-uniform start that can fire before the
            # symmetric state is left (seen on MiniLM text embeddings, whose pairwise distances are nearly
            # equal): a state whose rows are still within 2x of uniform on average is not taken as converged.
            undecided = float(np.exp(log_p.max(axis=1)).mean()) < 2.0 / k
            if it >= self.min_iter and change < self.tol and not undecided:
                break
        history.append(final())

        self.objective_history_ = np.asarray(history)
        self.n_iter_ = n_iter
        self.probabilities_ = np.exp(log_p)
        self.labels_ = self.probabilities_.argmax(axis=1)
        self._train_X, self._train_sq, self._train_pm = Xn, sq, pm
        return self

    def _algorithm(self) -> str:
        return "factored" if self.algorithm == "auto" else self.algorithm

    # Both algorithms update the rows one at a time in index order (Gauss-Seidel) and give the same result up
    # to rounding; they differ in how they get s_i = sum_{j != i} d_ij p_j^m for the current state.

    def _factored(self, Xn, sq, log_p, pm, inv):
        """Both metrics are low-rank in the features: for unit rows, ``s_i = c - M' x_i`` with ``c = sum_j
        p_j^m`` and ``M = sum_j x_j p_j^m'`` (for squared Euclidean, ``s_i = |x_i|^2 c + e - 2 M' x_i`` with
        ``e = sum_j |x_j|^2 p_j^m``). The self term is zero in both. Keeping ``c``, ``M`` (and ``e``) current
        with a rank-1 update after each row makes a sweep O(N d K) with no distance matrix at all."""
        m, n = self.m, Xn.shape[0]
        X = Xn.astype(np.float64)
        cosine = self.metric == "cosine"
        self_sim = np.einsum("ij,ij->i", X, X)

        def all_rows(pm_now):
            c, M = pm_now.sum(axis=0), X.T @ pm_now
            if cosine:
                return c[None, :] - X @ M + (self_sim - 1.0)[:, None] * pm_now, c, M, None
            e = sq @ pm_now
            return sq[:, None] * c[None, :] + e[None, :] - 2.0 * (X @ M), c, M, e

        def sweep():
            s_all, c, M, e = all_rows(pm)  # fresh sums each sweep: no drift from the rank-1 updates
            objective = float(np.sum(pm * s_all))
            change = 0.0
            p_old = np.exp(log_p)
            for i in range(n):
                x = X[i]
                proj = x @ M
                if cosine:  # minus the self term (1 - x.x) p_i^m, zero up to rounding
                    s = c - proj - (1.0 - self_sim[i]) * pm[i]
                else:
                    s = sq[i] * c + e - 2.0 * proj
                new = _log_memberships_row(s, inv)
                new_pm = np.exp(m * new)
                delta = new_pm - pm[i]
                c += delta
                M += np.outer(x, delta)
                if not cosine:
                    e += sq[i] * delta
                pm[i] = new_pm
                log_p[i] = new
            change = float(np.abs(np.exp(log_p) - p_old).sum())
            return objective, change / n

        def final():
            return float(np.sum(pm * all_rows(pm)[0]))

        return sweep, final

    def _blocked(self, Xn, sq, log_p, pm, inv):
        """Distances streamed in row blocks (cached whole when N x N fits ``memory_budget_mb``). Within a block
        the rows are updated one at a time against exact contributions of the current state."""
        n, m = Xn.shape[0], self.m
        itemsize = np.dtype(self.dtype).itemsize
        full = None
        if n * n * itemsize <= self.memory_budget_mb * 2**20:
            full = self._distances(Xn, Xn, sq)
            np.fill_diagonal(full, 0.0)
        block = n if full is not None else self._block_rows(n)
        pm_work = pm.astype(self.dtype)

        def sweep():
            snapshot = pm_work.copy()
            objective, change = 0.0, 0.0
            for start in range(0, n, block):
                stop = min(n, start + block)
                d = self._distance_block(Xn, sq, full, start, stop)
                agg = d @ snapshot  # aggregation with every row as the sweep found it
                objective += float(np.sum(snapshot[start:stop] * agg, dtype=np.float64))
                if start:
                    agg += d[:, :start] @ (pm_work[:start] - snapshot[:start])  # earlier blocks are updated
                d_in = d[:, start:stop]
                agg -= d_in @ snapshot[start:stop]  # in-block terms are added row by row below
                agg = agg.astype(np.float64)
                pm_in = pm_work[start:stop]
                for r in range(stop - start):
                    new = _log_memberships_row(agg[r] + d_in[r] @ pm_in, inv)  # d_in[r, r] = 0
                    i = start + r
                    change += np.abs(np.exp(new) - np.exp(log_p[i])).sum()
                    log_p[i] = new
                    pm_in[r] = np.exp(m * new)
            pm[:] = pm_work
            return objective, change / n

        def final():
            total = 0.0
            for start in range(0, n, block):
                stop = min(n, start + block)
                d = self._distance_block(Xn, sq, full, start, stop)
                total += float(np.sum(pm_work[start:stop] * (d @ pm_work), dtype=np.float64))
            return total

        return sweep, final

    def _distance_block(self, Xn, sq, full, start, stop):
        if full is not None:
            return full[start:stop]
        d = self._distances(Xn[start:stop], Xn, sq)
        idx = np.arange(stop - start)
        d[idx, start + idx] = 0.0  # j != i
        return d

    def block_pass(self, Xn, sq, block, pm) -> float:
        """One pass of distance blocks and aggregations ``sum_i p_i^m . (D p^m)_i`` (the blocked algorithm's
        dense work, exposed for benchmarks)."""
        total = 0.0
        for start in range(0, Xn.shape[0], block):
            stop = min(Xn.shape[0], start + block)
            d = self._distance_block(Xn, sq, None, start, stop)
            total += float(np.sum(pm[start:stop] * (d @ pm), dtype=np.float64))
        return total

    # -- prediction -----------------------------------------------------------------------------
    def predict_proba(self, X) -> np.ndarray:
        """Membership of each row of ``X``: one PAC row update against the fitted training data,
        ``p_k ∝ (sum_j d(x, x_j) p_jk^m)^(-1/(m-1))``. For a training point at convergence this is its
        fitted row of ``probabilities_``."""
        check_is_fitted(self, "probabilities_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        Xn = self._prepare(X)
        block = self._block_rows(self._train_X.shape[0])
        out = np.empty((Xn.shape[0], self.n_clusters))
        inv = 1.0 / (self.m - 1.0)
        for start in range(0, Xn.shape[0], block):
            d = self._distances(Xn[start : start + block], self._train_X, self._train_sq)
            out[start : start + block] = np.exp(_log_memberships((d @ self._train_pm).astype(np.float64), inv))
        return out

    def predict(self, X) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)


def direct_row_update(s: np.ndarray, m: float) -> np.ndarray:
    """The update as written, ``s^(-1/(m-1)) / sum s^(-1/(m-1))``: for tests where it is finite."""
    w = s ** (-1.0 / (m - 1.0))
    return w / w.sum(axis=-1, keepdims=True)


def _log_memberships_row(s: np.ndarray, inv: float) -> np.ndarray:
    """:func:`_log_memberships` for one row, without scipy's overhead (it runs N times a sweep)."""
    logits = -inv * np.log(np.maximum(s, _TINY))
    top = logits.max()
    return logits - (top + np.log(np.exp(logits - top).sum()))


def _log_memberships(s: np.ndarray, inv: float) -> np.ndarray:
    """``log(s^-inv / sum_k s^-inv)`` along the last axis, in log space: no overflow, no 0/0."""
    logits = -inv * np.log(np.maximum(s, np.finfo(np.float64).tiny))
    return logits - logsumexp(logits, axis=-1, keepdims=True)


def log_row_update(s: np.ndarray, m: float) -> np.ndarray:
    """The row update computed in log space."""
    return np.exp(_log_memberships(np.asarray(s, dtype=np.float64), 1.0 / (m - 1.0)))
