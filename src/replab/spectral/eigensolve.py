"""The lowest eigenpairs of a Schrödinger PCA Hamiltonian by shift-invert Lanczos, with the shift placed just
below the spectrum and certified there.

The guaranteed bound (:func:`~replab.spectral.operators.spectrum_lower_bound`) is loose when the kinetic
coefficient is large: a shift far below the wanted eigenvalues makes shift-invert Lanczos crawl. On a grid we
instead solve the same problem on a grid 2-4x coarser (recursively), prolong its states and take Rayleigh-Ritz
values on the fine grid — upper bounds on the fine eigenvalues (Courant-Fischer) that are usually accurate to a
few digits — and place the shift a fraction of their spread below the lowest. The shift is then *certified*: the
factorisation of ``H - sigma I`` has symmetric pivoting, so by Sylvester's law of inertia its count of negative
pivots is the number of eigenvalues below ``sigma``. Zero means ``H - sigma I`` is positive definite and the
eigenvalues nearest ``sigma`` are the lowest; otherwise the shift is lowered, and after a few tries the proven
bound is used. The factorisation orders a grid by geometric nested dissection (fill O(n log n) in 2-D) and any
other matrix by SuperLU's minimum degree on A + A^T.
"""

from __future__ import annotations

import logging
import time
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
SHIFT_GAP_FRACTION = 0.25  # sigma = theta_1 - this x (theta_k - theta_1)


@dataclass
class Shift:
    """Where the shift-invert solve was centred and why it is below the spectrum."""

    sigma: float
    certified_by: str  # "inertia" (no negative pivot), "bound" (the proven lower bound) or "dense" (no shift)
    factorisations: int


class SymmetricFactor:
    """``A = P^T L D L^T P`` by SuperLU with diagonal pivots only (so ``perm_r == perm_c``); ``solve`` applies
    ``A^{-1}`` and ``negative_pivots`` is the number of negative eigenvalues of ``A`` (Sylvester's law of
    inertia), or ``None`` when SuperLU did not keep the pivoting symmetric."""

    def __init__(self, a: sp.spmatrix, order: np.ndarray | None):
        a = sp.csc_matrix(a)
        if order is None:
            self.order = None
            self.lu = sla.splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        else:
            self.order = order
            self.inverse = np.empty_like(order)
            self.inverse[order] = np.arange(order.size)
            self.lu = sla.splu(
                sp.csc_matrix(a[order][:, order]),
                permc_spec="NATURAL",
                diag_pivot_thresh=0.0,
                options={"SymmetricMode": True},
            )

    @property
    def negative_pivots(self) -> int | None:
        if not np.array_equal(self.lu.perm_r, self.lu.perm_c):
            return None
        # U = D L^T: its diagonal holds the pivots. (scipy builds U as a copy; it is freed at once.)
        return int(np.count_nonzero(self.lu.U.diagonal() <= 0))

    def solve(self, b: np.ndarray) -> np.ndarray:
        if self.order is None:
            return self.lu.solve(b)
        return self.lu.solve(np.ascontiguousarray(b[self.order]))[self.inverse]


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
    tol: float,
    rng: np.random.Generator,
    spacing: tuple[float, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray, Shift]:
    """The ``k`` lowest eigenpairs of ``H = hamiltonian(scaled, lap, c)``, ascending."""
    h = hamiltonian(scaled, lap, c)
    n = h.shape[0]
    if n <= DENSE_MAX_POINTS:
        energies, vectors = la.eigh(h.toarray(), subset_by_index=[0, k - 1])
        return energies, vectors, Shift(float(energies[0]), "dense", 0)
    order = nested_dissection(grid_shape) if grid_shape is not None else None
    theta, v0 = None, rng.standard_normal(n)
    if grid_shape is not None and n >= COARSE_MIN_POINTS:
        theta, ritz = _coarse_ritz(scaled.reshape(grid_shape), c, k, h, spacing, rng)
        v0 = ritz[:, :k].sum(axis=1)  # rich in every wanted state; the block is freed before the factorisation
        del ritz
    shift, factor = _certified_shift(h, k, theta, order, lambda: spectrum_lower_bound(scaled, lap, c))
    op = sla.LinearOperator(h.shape, matvec=factor.solve, dtype=float)
    began = time.perf_counter()
    energies, vectors = sla.eigsh(h, k=k, sigma=shift.sigma, which="LM", OPinv=op, tol=tol, v0=v0)
    order_e = np.argsort(energies, kind="stable")
    log.debug(
        "n=%d: shift %.6g (%s, %d factorisations), Lanczos %.1fs",
        n,
        shift.sigma,
        shift.certified_by,
        shift.factorisations,
        time.perf_counter() - began,
    )
    return energies[order_e], vectors[:, order_e], shift


def _certified_shift(h, k, theta, order, bound) -> tuple[Shift, SymmetricFactor]:
    """Shifts tried in turn: a fraction of the Ritz values' spread below the lowest, then 1/16 and 1/4 of the
    way down to the proven bound (states the coarse grid cannot carry, such as those pinned to a sharp edge of
    the variance, lie below the first); the first with no negative pivot is used, else the bound itself."""
    eye = sp.identity(h.shape[0], format="csr")
    lower = bound()
    floor = lower - 1e-3 * max(1.0, abs(lower))
    tries = 0
    if theta is not None:
        top = float(theta[0])
        spread = max(float(theta[k - 1]) - top, 1e-6 * max(1.0, abs(top)))
        for sigma in (top - SHIFT_GAP_FRACTION * spread, top - (top - floor) / 16, top - (top - floor) / 4):
            if sigma <= floor:
                break
            factor = SymmetricFactor(h - sigma * eye, order)
            tries += 1
            negative = factor.negative_pivots
            if negative == 0:
                return Shift(sigma, "inertia", tries), factor
            log.debug("shift %.6g: %s eigenvalues below it", sigma, negative)
            if negative is None:  # SuperLU left the diagonal: no inertia to read
                break
    # The proven bound: H - sigma I is positive definite by construction.
    return Shift(floor, "bound", tries + 1), SymmetricFactor(h - floor * eye, order)


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
    # An estimate only: its accuracy is checked (inertia) and refined (the fine solve) downstream.
    _, states, _ = lowest_eigenpairs(
        coarse.ravel(), lap, c, k + extra, grid_shape=coarse_shape, tol=COARSE_TOL, rng=rng, spacing=coarse_spacing
    )
    fine_at = np.meshgrid(*[(np.arange(n) + 1) / w for n, w in zip(shape, widths)], indexing="ij")
    prolonged = np.empty((h.shape[0], states.shape[1]), order="F")
    for j, state in enumerate(states.T):
        padded = np.pad(state.reshape(coarse_shape), 1)  # the Dirichlet walls
        prolonged[:, j] = ndimage.map_coordinates(padded, fine_at, order=1, mode="constant").ravel()
    # Rayleigh-Ritz in the prolonged span: the generalised problem (P^T H P) y = theta (P^T P) y, which avoids
    # orthonormalising a tall block.
    gram = prolonged.T @ prolonged
    projected = prolonged.T @ (h @ prolonged)
    theta, coefficients = la.eigh((projected + projected.T) / 2, (gram + gram.T) / 2)
    return theta, prolonged @ coefficients
