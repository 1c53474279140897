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
first negative pivot, so these tries are cheap), with the proven bound as the last resort; a few block
shift-invert steps from the certified shift then re-estimate the spectrum and a closer shift is certified.

The eigenpairs themselves come from LOBPCG on ``H`` preconditioned by that factorisation (block inverse
iteration with Rayleigh-Ritz and momentum: every wanted state, degenerate ones included, converges together),
started from the Ritz block, to a residual relative to the spectrum's scale. Where no coarse grid exists (small
problems, graphs) the shift is the proven bound and LOBPCG starts from a random block; if LOBPCG stalls,
shift-invert Lanczos (ARPACK) on the same factorisation takes over. The
symbolic analysis is shared by every shift; grids are ordered by geometric nested dissection, other matrices by
CHOLMOD's AMD.
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
COARSE_TOL = 1e-6
RESIDUAL_TOL = 1e-6  # default: ||H v - theta v|| <= this x max(1, max |theta|) for unit v
SHIFT_GAP_FRACTION = 0.25  # sigma = theta_1 - this x (theta_k - theta_1)
RANDOM_COLUMNS = 3  # added to the Ritz block where the coarse grid missed states


@dataclass
class Shift:
    """Where the shift sat and why no eigenvalue is below it."""

    sigma: float
    certified_by: str  # "cholesky" (H - sigma I factorised), "bound" (the proven lower bound) or "dense" (no shift)
    factorisations: int  # numeric factorisations tried, failed ones included
    residual: float = 0.0  # the largest relative residual of the returned pairs


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
        from sksparse.cholmod import CholmodNotPositiveDefiniteError

        self.factorisations += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                factor = self.symbolic.cholesky(self.h, beta=-sigma)
        except CholmodNotPositiveDefiniteError:
            return None
        if self.order is None:
            return factor
        return lambda b: factor(np.ascontiguousarray(b[self.order]))[self.inverse]


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

    ``tol``: the relative residual ``||H v - E v|| / max(1, max |E|)`` of each pair (``None`` or 0: the
    default :data:`RESIDUAL_TOL`).
    """
    h = hamiltonian(scaled, lap, c)
    n = h.shape[0]
    if n <= DENSE_MAX_POINTS:
        energies, vectors = la.eigh(h.toarray(), subset_by_index=[0, k - 1])
        return energies, vectors, Shift(float(energies[0]), "dense", 0)
    began = time.perf_counter()
    factors = ShiftedCholesky(h, nested_dissection(grid_shape) if grid_shape is not None else None)
    lower = spectrum_lower_bound(scaled, lap, c)
    floor = lower - 1e-3 * max(1.0, abs(lower))
    if grid_shape is not None and n >= COARSE_MIN_POINTS:
        theta, block = _coarse_ritz(scaled.reshape(grid_shape), c, k, h, spacing, rng)
        sigma, certified_by, solve = _first_certified_shift(factors, theta, k, floor)
        if factors.factorisations > 1:
            # The estimate missed states: re-estimate from the certified factorisation, from the Ritz block and a
            # few random vectors (a chance at every state), and move the shift up to the states found.
            width = block.shape[1]
            start = np.hstack([block, rng.standard_normal((n, RANDOM_COLUMNS))])
            theta, block = _inverse_iteration_ritz(h, solve, start, steps=2)
            theta, block = theta[:width], block[:, :width]
            spread = max(float(theta[k - 1] - theta[0]), 1e-6 * max(1.0, abs(theta[0])))
            closer = float(theta[0]) - SHIFT_GAP_FRACTION * spread
            if closer > sigma:
                refined = factors.at(closer)
                if refined is not None:
                    sigma, certified_by, solve = closer, "cholesky", refined
        maxiter = 40
    else:
        # Small problems and graphs: the proven bound, and a random block (a block method finds every copy of a
        # degenerate level; single-vector Lanczos can miss one).
        sigma, certified_by, solve = floor, "bound", factors.at(floor)
        if solve is None:  # cannot happen in exact arithmetic: the bound is proven
            raise np.linalg.LinAlgError(f"H - sigma I is not positive definite at the proven bound {floor:.6g}")
        block = rng.standard_normal((n, k + max(4, k // 2)))
        maxiter = 300  # the bound may sit far below the spectrum; iterations are cheap at these sizes
    energies, vectors = _lobpcg(h, solve, block, k, tol or RESIDUAL_TOL, maxiter=maxiter)
    residual = _relative_residual(h, energies, vectors)
    if residual > (tol or RESIDUAL_TOL) or energies[0] < sigma - 1e-9 * max(1.0, abs(sigma)):
        # LOBPCG did not converge: shift-invert Lanczos on the same certified factorisation, to machine precision.
        log.warning("LOBPCG residual %.2g: falling back to shift-invert Lanczos at %.6g", residual, sigma)
        op = sla.LinearOperator(h.shape, matvec=solve, dtype=float)
        energies, vectors = sla.eigsh(h, k=k, sigma=sigma, which="LM", OPinv=op, tol=0.0, v0=block[:, :k].sum(axis=1))
        order = np.argsort(energies, kind="stable")
        energies, vectors = energies[order], vectors[:, order]
        residual = _relative_residual(h, energies, vectors)
    log.debug(
        "n=%d: shift %.6g (%s, %d factorisations), %.1fs, residual %.2g",
        n,
        sigma,
        certified_by,
        factors.factorisations,
        time.perf_counter() - began,
        residual,
    )
    return energies, vectors, Shift(sigma, certified_by, factors.factorisations, residual)


def _first_certified_shift(factors: ShiftedCholesky, theta: np.ndarray, k: int, floor: float):
    """Shifts ``theta_1 - g`` for ``g`` = a fraction of the Ritz values' spread, doubling, until ``H - sigma I``
    factorises; the proven bound where the next try would pass it."""
    top = float(theta[0])
    gap = SHIFT_GAP_FRACTION * max(float(theta[k - 1]) - top, 1e-6 * max(1.0, abs(top)))
    while top - gap > floor:
        solve = factors.at(top - gap)
        if solve is not None:
            return top - gap, "cholesky", solve
        log.debug("shift %.6g: eigenvalues below it", top - gap)
        gap *= 2
    solve = factors.at(floor)
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
    when the first ``k`` columns' residuals are below ``tol x max(1, max |theta|)`` (the rest of the block only
    speeds them up). Written out rather than SciPy's because SciPy's waits for every column of the block and keeps
    about twice the tall blocks in memory; the iteration is the textbook one (Knyazev 2001): Rayleigh-Ritz in the
    span of the iterate ``X``, the preconditioned residuals ``W`` and the previous direction ``P``, each block
    orthonormalised against the ones before it.
    """
    x = _orthonormal(block)
    p = None
    for iteration in range(maxiter + 1):
        hx = h @ x
        xhx = _symmetric(x.T @ hx)
        theta = np.diag(xhx).copy()
        r = hx - x * theta
        del hx
        scale = max(1.0, float(np.abs(theta[:k]).max()))
        if np.linalg.norm(r[:, :k], axis=0).max() <= tol * scale or iteration == maxiter:
            break
        w = _block_solve(solve, r)
        del r
        w = _orthonormal(_project_out(w, [x]), allow_deficient=True)
        if w is None:  # the residuals lie in span(x): nothing left to improve
            break
        if p is not None:
            p = _orthonormal(_project_out(p, [x, w]), allow_deficient=True)
        rest = [w] if p is None else [w, p]
        h_rest = [h @ b for b in rest]
        top = [x.T @ hb for hb in h_rest]  # x^T H b for each new block b
        projected = np.block([[xhx] + top] + [[t.T] + [a.T @ hb for hb in h_rest] for t, a in zip(top, rest)])
        del h_rest
        values, vectors = la.eigh(_symmetric(projected))
        width = x.shape[1]
        coeffs = np.split(vectors[:, :width], np.cumsum([width] + [b.shape[1] for b in rest])[:-1])
        # The new direction: the part of the new iterate outside the old one.
        p = sum(b @ cf for b, cf in zip(rest, coeffs[1:]))
        del rest
        x = x @ coeffs[0] + p
    order = np.argsort(theta, kind="stable")[:k]
    return theta[order], x[:, order]


def _block_solve(solve, b, chunk=8):
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


def _orthonormal(w, allow_deficient=False):
    """An orthonormal basis of ``w``'s span by Cholesky QR, repeated; directions with a relative norm below 1e-10
    are dropped where ``allow_deficient`` (``None`` if nothing is left)."""
    for _ in range(2):
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


def _coarse_ritz(variances, c, k, h, spacing, rng):
    """Rayleigh-Ritz values and vectors on the fine grid from the prolonged states of a coarser grid."""
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
        prolonged[:, j] = ndimage.map_coordinates(padded, fine_at, order=1, mode="constant").ravel()
    return _rayleigh_ritz(h, prolonged)
