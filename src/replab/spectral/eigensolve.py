"""The lowest eigenpairs of a Schrödinger PCA Hamiltonian, with a shift placed just below the spectrum and
certified there.

The guaranteed bound (:func:`~replab.spectral.operators.spectrum_lower_bound`) is loose when the kinetic
coefficient is large: a shift far below the wanted eigenvalues makes shift-invert iterations crawl. On a grid we
instead solve the same problem on a grid 2-4x coarser (recursively), prolong its states and take Rayleigh-Ritz
pairs on the fine grid (the values are upper bounds on the fine eigenvalues, usually right to a few digits) and
place the shift a fraction of their spread below the lowest. The shift is then *certified*: ``H - sigma I`` is
factorised by sparse Cholesky (CHOLMOD), which succeeds only if it is positive definite, i.e. if no eigenvalue
lies below ``sigma``. Where it fails (states the coarse grid cannot carry, such as those pinned to a sharp edge
of the variance) the shift is moved down, doubling its distance each time (a failing factorisation stops at its
first negative pivot, so these tries are cheap), with the proven bound as the last resort; more random vectors
then join the block, a few block shift-invert steps from the certified shift re-estimate the spectrum and a closer
shift is certified.

The eigenpairs themselves come from LOBPCG on ``H`` preconditioned by that factorisation (block inverse
iteration with Rayleigh-Ritz and momentum: every wanted state, degenerate ones included, converges together),
started from the Ritz block and a random vector (a generic start), to a residual relative to the spectrum's
scale; if it stalls or fails, shift-invert Lanczos (ARPACK) on the same factorisation takes over. Where no coarse
grid exists (small problems, graphs) the shift is the proven bound and the solver shift-invert Lanczos; Lanczos
is always asked for a few more states than wanted. What is certified in every fit is that no eigenvalue lies
below the shift; that no state above it was missed is what the iteration delivers from a generic start, and
:func:`certify_lowest` checks it by a count (one more factorisation: ``SchrodingerPCA(certify=True)``, the tests
and the benchmarks). The symbolic analysis is shared by every shift; grids are ordered by geometric nested
dissection (and iterated in that order, so solves need no permuted copies), other matrices by CHOLMOD's AMD.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
import scipy.sparse.linalg as sla
from scipy import ndimage

from .operators import grid_laplacian, hamiltonian, spectrum_lower_bound

log = logging.getLogger(__name__)

COARSE_MIN_POINTS = 20_000  # below this the proven bound is used directly: the solve is fast anyway
DENSE_MAX_POINTS = 1_500
COARSE_TOL = 1e-3  # the coarse states only start the fine iteration (at 1e-6 they cost more, saved no fine step)
RESIDUAL_TOL = 1e-6  # default: ||H v - theta v|| <= this x max(1, max |theta|) for unit v
SHIFT_GAP_FRACTION = 0.25  # sigma = theta_1 - this x (theta_k - theta_1)
MIN_TOL = 1e-12  # tol = 0 asks for this (and gets machine-precision Lanczos where LOBPCG cannot reach it)
RANDOM_COLUMNS = 1  # in every start block: a generic start, so no state is out of the iteration's reach
RANDOM_COLUMNS_AFTER_MISS = 2  # more, where the coarse estimate proved to miss states
COARSE_MIN_SIDE = 16  # every axis at least this long, so the coarser grid is a real reduction


@dataclass
class Shift:
    """Where the shift sat and why no eigenvalue is below it."""

    sigma: float
    certified_by: str  # "cholesky" (H - sigma I factorised), "bound" (the proven lower bound) or "dense" (no shift)
    factorisations: int  # numeric factorisations tried, failed ones included
    residual: float = 0.0  # the largest relative residual of the returned pairs
    iteration: str = "lanczos"  # what converged the pairs: "lobpcg", "lanczos" (also LOBPCG's fallback) or "dense"


class ShiftedCholesky:
    """Sparse Cholesky factorisations of ``H - sigma I`` for any ``sigma``, sharing one symbolic analysis.

    ``at(sigma)`` returns the solve ``(H - sigma I)^{-1}`` (vectors or blocks), or ``None`` where the matrix is
    not positive definite, i.e. where some eigenvalue of ``H`` lies below ``sigma``.
    """

    def __init__(self, h: sp.spmatrix, order: np.ndarray | None = None):
        from sksparse.cholmod import analyze

        self.order = order
        if order is not None:
            self.inverse = np.empty_like(order)
            self.inverse[order] = np.arange(order.size)
            h = sp.csr_matrix(h)[order][:, order]
        self.h = sp.csc_matrix(h)
        with warnings.catch_warnings():  # CHOLMOD's index-type notice
            warnings.simplefilter("ignore")
            # Supernodal: always L L^T, which fails on a non-positive pivot (CHOLMOD's simplicial mode, its choice
            # for small sparse factors, computes L D L^T and would go through an indefinite matrix).
            self.symbolic = analyze(self.h, mode="supernodal", ordering_method="amd" if order is None else "natural")
        self.factorisations = 0

    def at(self, sigma: float):
        factor = self.permuted_at(sigma)
        if factor is None or self.order is None:
            return factor
        return lambda b: factor(np.ascontiguousarray(b[self.order]))[self.inverse]

    def permuted_at(self, sigma: float):
        """As :meth:`at`, for vectors in the factorisation's order (``b[order]``): no permuted copies per solve."""
        from sksparse.cholmod import CholmodNotPositiveDefiniteError

        self.factorisations += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return self.symbolic.cholesky(self.h, beta=-sigma)
        except CholmodNotPositiveDefiniteError:
            return None


def nested_dissection(shape: tuple[int, ...], leaf: int = 64) -> np.ndarray:
    """A fill-reducing order of a regular grid's points (C order): split the box across its longest side,
    order each half recursively, the separating plane last. Written for grids because their geometry makes it
    exact and instant (graph partitioners take longer than the factorisation they save here)."""
    index = np.arange(int(np.prod(shape))).reshape(shape)
    out: list[np.ndarray] = []

    def visit(box: np.ndarray) -> None:
        if box.size <= leaf:
            out.append(box.ravel())
            return
        axis = int(np.argmax(box.shape))
        mid = box.shape[axis] // 2
        visit(np.take(box, np.arange(mid), axis=axis))
        visit(np.take(box, np.arange(mid + 1, box.shape[axis]), axis=axis))
        out.append(np.take(box, [mid], axis=axis).ravel())

    visit(index)
    return np.concatenate(out)


def lowest_eigenpairs(
    scaled: np.ndarray,
    lap: sp.spmatrix,
    c: float,
    k: int,
    *,
    grid_shape: tuple[int, ...] | None,
    rng: np.random.Generator,
    tol: float | None = None,
    spacing: tuple[float, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray, Shift]:
    """The ``k`` lowest eigenpairs of ``H = hamiltonian(scaled, lap, c)``, ascending.

    ``tol``: the relative residual ``||H v - E v|| / max(1, max |E|)`` of each pair (``None``: the default
    :data:`RESIDUAL_TOL`; 0: machine precision).
    """
    h = hamiltonian(scaled, lap, c)
    n = h.shape[0]
    if n <= DENSE_MAX_POINTS:
        energies, vectors = la.eigh(h.toarray(), subset_by_index=[0, k - 1])
        return energies, vectors, Shift(float(energies[0]), "dense", 0, iteration="dense")
    began = time.perf_counter()
    factors = ShiftedCholesky(h, nested_dissection(grid_shape) if grid_shape is not None else None)
    lower = spectrum_lower_bound(scaled, lap, c)
    floor = lower - 1e-3 * max(1.0, abs(lower))
    target = RESIDUAL_TOL if tol is None else max(float(tol), MIN_TOL)
    if not _coarse_grid_helps(grid_shape, n, k):
        # Small problems and graphs: the proven bound and shift-invert Lanczos, fast at these sizes. Single-vector
        # Lanczos can miss a copy of a degenerate level near the top of what it returns, so it is asked for a few
        # more states than wanted and the lowest are kept (the benchmark certifies them by a count).
        solve = factors.at(floor)
        if solve is None:  # cannot happen in exact arithmetic: the bound is proven
            raise np.linalg.LinAlgError(f"H - sigma I is not positive definite at the proven bound {floor:.6g}")
        op = sla.LinearOperator(h.shape, matvec=solve, dtype=float)
        wanted = min(n - 1, k + max(4, k // 2))
        v0 = rng.standard_normal(n)
        values, states = sla.eigsh(h, k=wanted, sigma=floor, which="LM", OPinv=op, tol=0.0, v0=v0)
        order = np.argsort(values, kind="stable")[:k]
        energies, vectors = values[order], states[:, order]
        residual = _relative_residual(h, energies, vectors)
        return energies, vectors, Shift(floor, "bound", factors.factorisations, residual)
    # From here on vectors are kept in the factorisation's order (``h[order][:, order]``, CSR as the transpose of
    # the symmetric CSC copy), so a solve needs no permuted copies of its block.
    h = factors.h.T
    theta, block = _coarse_ritz(scaled.reshape(grid_shape), c, k, h, spacing, factors.order, rng)
    # A random column: the coarse states alone are not a generic start (a state the coarse grid cannot carry
    # would have no component in them).
    block = np.hstack([block, rng.standard_normal((n, RANDOM_COLUMNS))])
    sigma, certified_by, solve = _first_certified_shift(factors, theta, k, floor)
    if factors.factorisations > 1:
        # The estimate missed states the coarse grid cannot carry (e.g. pinned to a sharp edge of the variance):
        # add more random columns, re-estimate from the certified factorisation and move the shift up to the
        # states found.
        block = np.hstack([block, rng.standard_normal((n, RANDOM_COLUMNS_AFTER_MISS))])
        theta, block = _inverse_iteration_ritz(h, solve, block, steps=2)
        spread = max(float(theta[k - 1] - theta[0]), 1e-6 * max(1.0, abs(theta[0])))
        closer = float(theta[0]) - SHIFT_GAP_FRACTION * spread
        if closer > sigma:
            refined = factors.permuted_at(closer)
            if refined is not None:
                sigma, certified_by, solve = closer, "cholesky", refined
    iteration = "lobpcg"
    try:
        energies, vectors = _lobpcg(h, solve, block, k, target)
        residual = _relative_residual(h, energies, vectors)
    except np.linalg.LinAlgError as error:  # a basis that lost definiteness or rank
        log.warning("LOBPCG failed (%s)", error)
        energies, residual = np.array([-np.inf]), np.inf
    if residual > target or energies[0] < sigma - 1e-9 * max(1.0, abs(sigma)):
        # LOBPCG did not get there: shift-invert Lanczos on the same certified factorisation, at machine precision,
        # asked for a few more states than wanted (single-vector Lanczos can miss a copy of a degenerate level
        # near the top of what it returns).
        log.warning("LOBPCG residual %.2g: falling back to shift-invert Lanczos at %.6g", residual, sigma)
        iteration = "lanczos"
        op = sla.LinearOperator(h.shape, matvec=solve, dtype=float)
        wanted = min(n - 1, k + max(4, k // 2))
        values, states = sla.eigsh(h, k=wanted, sigma=sigma, which="LM", OPinv=op, tol=0.0, v0=block.sum(axis=1))
        ascending = np.argsort(values, kind="stable")[:k]
        energies, vectors = values[ascending], states[:, ascending]
        residual = _relative_residual(h, energies, vectors)
    vectors = vectors[factors.inverse]
    log.debug(
        "n=%d: shift %.6g (%s, %d factorisations), %.1fs, residual %.2g",
        n,
        sigma,
        certified_by,
        factors.factorisations,
        time.perf_counter() - began,
        residual,
    )
    return energies, vectors, Shift(sigma, certified_by, factors.factorisations, residual, iteration)


def _coarse_grid_helps(grid_shape, n, k) -> bool:
    if grid_shape is None or n < COARSE_MIN_POINTS or min(grid_shape) < COARSE_MIN_SIDE:
        return False
    step = 4 if len(grid_shape) < 3 else 2
    coarse_points = int(np.prod([max(3, round(m / step)) for m in grid_shape]))
    return coarse_points >= 4 * (k + max(4, k // 2))


def _first_certified_shift(factors: ShiftedCholesky, theta: np.ndarray, k: int, floor: float):
    """Shifts ``theta_1 - g`` for ``g`` = a fraction of the Ritz values' spread, doubling, until ``H - sigma I``
    factorises; the proven bound where the next try would pass it."""
    top = float(theta[0])
    gap = SHIFT_GAP_FRACTION * max(float(theta[k - 1]) - top, 1e-6 * max(1.0, abs(top)))
    while top - gap > floor:
        solve = factors.permuted_at(top - gap)
        if solve is not None:
            return top - gap, "cholesky", solve
        log.debug("shift %.6g: eigenvalues below it", top - gap)
        gap *= 2
    solve = factors.permuted_at(floor)
    if solve is None:
        raise np.linalg.LinAlgError(f"H - sigma I is not positive definite at the proven bound {floor:.6g}")
    return floor, "bound", solve


def _inverse_iteration_ritz(h, solve, block, steps):
    """Rayleigh-Ritz pairs of ``H`` after ``steps`` block shift-invert steps from ``block``."""
    for _ in range(steps):
        block = _orthonormal(_block_solve(solve, block))
    return _rayleigh_ritz(h, block)


def _rayleigh_ritz(h, basis):
    """Ritz values and vectors of ``H`` in the span of ``basis`` (any full-rank block): the generalised problem
    ``(B^T H B) y = theta (B^T B) y``, which avoids orthonormalising a tall block."""
    gram = basis.T @ basis
    projected = basis.T @ (h @ basis)
    theta, coefficients = la.eigh((projected + projected.T) / 2, (gram + gram.T) / 2)
    return theta, basis @ coefficients


def _lobpcg(h, solve, block, k, tol, maxiter=40):
    """LOBPCG for the lowest eigenpairs of ``H``, preconditioned by ``solve`` = ``(H - sigma I)^{-1}``, stopping
    when the first ``k`` Ritz pairs' residuals are below ``tol x max(1, max |theta|)`` (the rest of the block only
    speeds them up). Written out rather than SciPy's because SciPy's waits for every column of the block and keeps
    about twice the tall blocks in memory. The iteration is Knyazev's (2001): Rayleigh-Ritz in the span of the
    Ritz vectors ``X``, the preconditioned residuals ``W`` and the previous directions ``P``; converged columns
    get no new direction (soft locking); ``W`` and ``P`` are orthonormalised, cleared of the blocks before them and
    orthonormalised again, so a nearly converged residual cannot inflate rounding (Hetmaniuk & Lehoucq 2006); the
    Rayleigh-Ritz step uses the basis' Gram matrix, and a last one makes the output orthonormal Ritz pairs (and
    is checked: where it lifts a residual over the limit, the iteration goes on).
    """
    theta, x = _rayleigh_ritz(h, _orthonormal(block))
    p = None
    for iteration in range(maxiter + 1):
        r = h @ x - x * theta
        norms = np.linalg.norm(r, axis=0)
        limit = tol * max(1.0, float(np.abs(theta[:k]).max()))
        if norms[:k].max() <= limit or iteration == maxiter:
            # The closing Rayleigh-Ritz mixes in the block's unconverged columns and can lift a residual just
            # over the limit: check it, and where it does, iterate on from the orthonormal Ritz block (a step
            # costs far less than the Lanczos fallback the caller would otherwise run).
            theta, x = _rayleigh_ritz(h, _orthonormal(x))
            r = h @ x[:, :k] - x[:, :k] * theta[:k]
            if np.linalg.norm(r, axis=0).max() <= limit or iteration == maxiter:
                break
            log.debug("LOBPCG: the closing Rayleigh-Ritz lifted a residual over %.2g: iterating on", limit)
            p = None
            continue
        active = norms > limit
        xhx = _symmetric(x.T @ r + (x.T @ x) * theta)  # x^T H x, from the residual (H x is not kept)
        w = _block_solve(solve, r[:, active])
        del r
        w = _clean(w, [x])
        if w is None:  # the residuals lie in span(x): nothing left to improve
            theta, x = _rayleigh_ritz(h, _orthonormal(x))
            break
        if p is not None:
            p = _clean(p[:, active], [x, w])
        rest = [w] if p is None else [w, p]
        h_rest = [h @ b for b in rest]
        blocks = [x, *rest]
        projected = np.block(
            [[xhx] + [x.T @ hb for hb in h_rest]]
            + [[(hb.T @ x)] + [a.T @ hb2 for hb2 in h_rest] for a, hb in zip(rest, h_rest)]
        )
        gram = np.block([[a.T @ b for b in blocks] for a in blocks])
        del h_rest
        values, vectors = la.eigh(_symmetric(projected), _symmetric(gram))
        width = x.shape[1]
        coeffs = np.split(vectors[:, :width], np.cumsum([b.shape[1] for b in blocks])[:-1])
        # The new directions: the part of the new iterate outside the old one.
        p = sum(b @ cf for b, cf in zip(rest, coeffs[1:]))
        del rest, blocks
        x = x @ coeffs[0] + p
        theta = values[:width]
    log.debug("LOBPCG: %d iterations, block of %d", iteration, x.shape[1])
    return theta[:k], x[:, :k]  # orthonormal Ritz pairs: every exit passes a closing Rayleigh-Ritz


def _clean(w, bases):
    """``w`` orthonormalised, cleared of the orthonormal ``bases`` and orthonormalised again; ``None`` if nothing
    independent is left. One Cholesky QR pass each time: the first only equalises the columns' scales before the
    (twice-repeated) projection, and the Rayleigh-Ritz step that follows uses the basis' Gram matrix, so it needs a
    well-conditioned basis rather than an exactly orthonormal one."""
    w = _orthonormal(w, allow_deficient=True, passes=1)
    if w is None:
        return None
    return _orthonormal(_project_out(w, bases), allow_deficient=True, passes=1)


def _block_solve(solve, b, chunk=16):
    """``solve`` column chunk by column chunk: a multi-column solve is faster per column, and chunks keep the
    solver's copies of the block small."""
    out = np.empty_like(b)
    for j in range(0, b.shape[1], chunk):
        out[:, j : j + chunk] = solve(b[:, j : j + chunk])
    return out


def _project_out(w, bases):
    """``w`` with its components along orthonormal ``bases`` removed (twice: classical Gram-Schmidt repeated is
    as accurate as modified)."""
    for _ in range(2):
        for q in bases:
            w -= q @ (q.T @ w)
    return w


def _orthonormal(w, allow_deficient=False, passes=2):
    """An orthonormal basis of ``w``'s span by Cholesky QR, ``passes`` times; directions with a relative norm
    below 1e-10 are dropped where ``allow_deficient`` (``None`` if nothing is left)."""
    for _ in range(passes):
        values, vectors = la.eigh(_symmetric(w.T @ w))
        keep = values > 1e-20 * values.max() if values.max() > 0 else np.zeros(values.size, bool)
        if not allow_deficient and not keep.all():
            raise np.linalg.LinAlgError("the block lost rank")
        if not keep.any():
            return None
        w = w @ (vectors[:, keep] / np.sqrt(values[keep]))
    return w


def _symmetric(a):
    return (a + a.T) / 2


def _relative_residual(h, energies, vectors) -> float:
    residuals = np.linalg.norm(h @ vectors - vectors * energies, axis=0) / np.linalg.norm(vectors, axis=0)
    return float(residuals.max() / max(1.0, float(np.abs(energies).max())))


def _coarse_ritz(variances, c, k, h, spacing, order, rng):
    """Rayleigh-Ritz values and vectors on the fine grid from the prolonged states of a coarser grid; ``h`` and
    the vectors are in the fine grid's ``order``."""
    shape = variances.shape
    spacing = spacing or (1.0,) * len(shape)
    step = 4 if len(shape) < 3 else 2
    coarse_shape = tuple(max(3, round(n / step)) for n in shape)
    # Dirichlet walls at fine index -1 and n; coarse points evenly between them.
    widths = [(n + 1) / (m + 1) for n, m in zip(shape, coarse_shape)]
    at = np.meshgrid(*[w * (np.arange(m) + 1) - 1 for w, m in zip(widths, coarse_shape)], indexing="ij")
    coarse = ndimage.map_coordinates(variances, at, order=1, mode="nearest")
    coarse_spacing = tuple(s * w for s, w in zip(spacing, widths))
    extra = max(4, k // 2)
    lap = grid_laplacian(coarse_shape, spacing=coarse_spacing)
    # An estimate only: its accuracy is checked (the certificate) and refined (the fine solve) downstream.
    _, states, _ = lowest_eigenpairs(
        coarse.ravel(), lap, c, k + extra, grid_shape=coarse_shape, tol=COARSE_TOL, rng=rng, spacing=coarse_spacing
    )
    fine_at = np.meshgrid(*[(np.arange(n) + 1) / w for n, w in zip(shape, widths)], indexing="ij")
    prolonged = np.empty((h.shape[0], states.shape[1]), order="F")
    for j, state in enumerate(states.T):
        padded = np.pad(state.reshape(coarse_shape), 1)  # the Dirichlet walls
        prolonged[:, j] = ndimage.map_coordinates(padded, fine_at, order=1, mode="constant").ravel()[order]
    return _rayleigh_ritz(h, prolonged)


@dataclass
class Count:
    """How many eigenvalues lie below ``tau`` and how far to trust it."""

    tau: float
    below: int
    backward_error: float  # ||L D L^T - (H - tau I)||_1 / ||H - tau I||_1, estimated (onenormest)
    error_norm: float  # ||L D L^T - (H - tau I)||_1, estimated: the count is exact for H + E, ||E||_2 <= this


def count_below(h: sp.spmatrix, tau: float, order: np.ndarray | None = None, seed: int = 0) -> Count:
    """The number of eigenvalues of the symmetric ``h`` below ``tau`` by Sylvester's law of inertia: the negative
    pivots of ``h - tau I = P^T L D L^T P`` (CHOLMOD's simplicial factorisation, which does not pivot for
    stability, so its backward error ``E`` is estimated and returned: the count is exact for ``H + E``, whose
    eigenvalues are within ``||E||_2 <= ||E||_1`` (E is symmetric) of ``H``'s). ``||E||_1`` comes from
    :func:`scipy.sparse.linalg.onenormest` (Higham-Tisseur block estimate: almost always exact, a lower bound in
    theory). Costs about one factorisation: ~20 s at 10^6 grid points on two cores, so it certifies results in
    benchmarks and tests rather than in every fit."""
    from sksparse.cholmod import analyze

    a = sp.csc_matrix(h - tau * sp.identity(h.shape[0], format="csr"))
    if order is not None:
        a = sp.csc_matrix(sp.csr_matrix(a)[order][:, order])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        factor = analyze(a, mode="simplicial", ordering_method="amd" if order is None else "natural").cholesky(a)
        combined, perm = factor.LD(), factor.P()  # L with its unit diagonal replaced by D
    pivots = combined.diagonal()
    lower = sp.tril(combined, -1, format="csc") + sp.identity(a.shape[0], format="csc")

    def residual(x):
        x = np.asarray(x, dtype=float)
        d = pivots if x.ndim == 1 else pivots[:, None]
        rebuilt = np.empty_like(x)
        rebuilt[perm] = lower @ (d * (lower.T @ x[perm]))
        return rebuilt - a @ x

    n = a.shape[0]
    error = sla.LinearOperator((n, n), matvec=residual, rmatvec=residual, matmat=residual, dtype=float)
    state = np.random.get_state()  # onenormest draws from numpy's global generator: seed it, then restore it
    np.random.seed(seed)
    try:
        norm = float(sla.onenormest(error, t=2))
    finally:
        np.random.set_state(state)
    return Count(float(tau), int(np.count_nonzero(pivots < 0)), norm / sla.norm(a, 1), norm)


def certify_lowest(h, energies, vectors, order=None) -> dict:
    """Whether ``energies`` (ascending, with ``vectors``) are the lowest eigenvalues of ``h``, to within the
    residual norm ``rho = ||H X - X diag(E)||_2`` of the normalised block ``X``.

    For an orthonormal ``X`` there are ``k`` eigenvalues, one for each returned energy, each within ``rho`` of it
    (Kahan's residual bound for clusters); all lie at or below ``top + rho``. The count at ``tau`` is exact for
    ``H + E`` (:func:`count_below`), so it bounds ``H``'s count at ``tau - ||E||`` from above. With
    ``tau = top + margin``, ``margin = 2 rho + ||E||`` allowance: if the count is ``k`` and ``||E|| < margin -
    rho``, exactly ``k`` eigenvalues of ``H`` lie below ``tau - ||E||``, and those are the ``k`` matched above:
    the returned energies are the ``k`` lowest. If more lie there, the top level is degenerate beyond the returned
    states (or a state was missed near it): the returned energies are split into the top group (within 2 margins
    of the top) and those below, which must end more than ``rho + ||E||`` below ``tau`` = the top group's lowest -
    margin, and exactly as many eigenvalues as returned below the group must lie below ``tau``. Then no eigenvalue
    was missed below ``tau - ||E||``: the states are the lowest up to the top group, i.e. a state of ``H`` not
    returned can only lie in ``[tau - ||E||, top + margin]``, the span of that group (the result says how wide).
    ``||E||`` is allowed for up front as ``1e3`` unit roundoffs of ``||H - tau I||_1`` and checked after the count
    against its estimate.
    """
    norms = np.linalg.norm(vectors, axis=0)
    x = vectors / norms
    residual_block = h @ x - x * energies
    rho = float(np.sqrt(max(0.0, la.eigvalsh(residual_block.T @ residual_block)[-1])))
    orthogonality = float(np.abs(x.T @ x - np.eye(x.shape[1])).max())
    scale = max(1.0, float(np.abs(energies).max()))
    allowance = float(1e3 * np.finfo(float).eps * (sla.norm(h, 1) + scale))  # for ||E||, checked after each count
    margin = 2 * rho + allowance + 1e-9 * scale
    k = len(energies)
    result = {"residual": rho, "orthogonality": orthogonality, "margin": margin}
    if orthogonality > 1e-8:
        return {**result, "certified": False, "how": f"vectors not orthonormal ({orthogonality:.1e})"}
    top = count_below(h, float(energies[-1]) + margin, order)
    result.update(count=top.below, backward_error=top.backward_error, error_norm=top.error_norm)
    if top.error_norm >= margin - rho:
        how = f"the factorisation's error {top.error_norm:.1e} is not below the margin's allowance"
        return {**result, "certified": False, "how": how}
    if top.below == k:
        return {**result, "certified": True, "lowest_k": True, "how": f"{k} eigenvalues below the top + margin"}
    if top.below < k:
        return {**result, "certified": False, "how": f"{top.below} eigenvalues below the top, {k} returned"}
    below_group = int(np.count_nonzero(energies < energies[-1] - 2 * margin))
    if below_group == 0:
        return {**result, "certified": False, "how": f"{top.below} eigenvalues near the top level, {k} returned"}
    tau = float(energies[below_group]) - margin
    if float(energies[below_group - 1]) + rho + allowance >= tau:
        return {**result, "certified": False, "how": "the top group is not separated from the states below it"}
    lower = count_below(h, tau, order)
    result.update(error_norm=max(top.error_norm, lower.error_norm))
    ok = bool(lower.below == below_group and lower.error_norm < allowance)
    span = float(energies[-1]) + margin - (tau - lower.error_norm)
    how = (
        f"{below_group} below the top group; the top level has more than {k - below_group} states "
        f"(lowest up to that group, which spans {span:.1e})"
        if ok
        else f"{lower.below} eigenvalues below the top group, {below_group} returned"
    )
    # Certified lowest up to the top group's span, not exactly the k lowest: callers that need the latter check
    # ``lowest_k``.
    return {**result, "certified": ok, "lowest_k": False, "how": how, "count_below_group": lower.below}
