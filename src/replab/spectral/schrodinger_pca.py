"""Schrödinger PCA (Liu et al., Phys. Rev. E 104, 025307, 2021): principal components of a spatial
field from its per-point variances and correlation length alone, as low-energy eigenstates of a
Schrödinger operator."""

from __future__ import annotations

import logging
import math
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .eigensolve import certify_lowest, lowest_eigenpairs, nested_dissection
from .operators import grid_laplacian, hamiltonian, spectrum_lower_bound

log = logging.getLogger(__name__)

SOLVERS = ("auto", "shift-invert", "lanczos", "lobpcg")


class SchrodingerPCA(TransformerMixin, BaseEstimator):
    """Leading principal components of a field with covariance ``s(x) s(y) exp(-|x-y|^2 / 2 l^2)``.

    Solves for the ``n_components`` lowest eigenstates of

        H = -(c/2) * 1/2 (S Lap + Lap S) - S,   S = diag(variances / max(variances)),

    on a regular grid (unit spacing, Dirichlet boundary) or on a graph (``Lap`` replaced by minus
    the graph Laplacian). The lowest energy is the top principal component.

    Parameters
    ----------
    n_components : int
        Number of components (lowest eigenstates) to compute.
    correlation_length : float
        ``l`` in grid units (or edge lengths on a graph).
    c : float or None
        Kinetic coefficient. ``None`` uses ``l**2``, the value consistent with the Taylor expansion of
        the covariance (the paper's public notebooks use ``s**2`` for a Gaussian filter of width ``s``).
    solver : {"auto", "shift-invert", "lanczos", "lobpcg"}
        ``shift-invert``: sparse Cholesky (CHOLMOD) of ``H - sigma I``, whose success certifies that no
        eigenvalue lies below ``sigma``, as the preconditioner of LOBPCG (:mod:`replab.spectral.eigensolve`). On
        grids ``sigma`` sits just below Rayleigh-Ritz values from a coarser grid's solution, whose states (with a
        random vector) start LOBPCG; elsewhere ``sigma`` is a proven lower bound of the spectrum and the
        solver shift-invert Lanczos. Fastest for 1-D/2-D grids and surface graphs. Grids of at most 1,500
        points are solved densely. ``lobpcg``: algebraic-multigrid preconditioned LOBPCG (pyamg), for 3-D
        grids where fill-in grows too fast. ``lanczos``: plain ``eigsh(which="SA")``, no factorisation, slow on
        large grids. ``auto`` picks LOBPCG for 3-D grids
        above 3 x 10^4 points (where it overtakes the factorisation) and shift-invert otherwise.
    tol : float or None
        Eigensolver tolerance. ``shift-invert`` on grids of 20,000 points or more: the residual ``||H v - E v||``
        allowed per state, relative to max(1, max |E|) (smaller problems are solved to machine precision);
        ``None`` means 1e-6 (energies then agree with a machine-precision solve to ~1e-10; a
        component's error is about the residual over its energy gap, so near-degenerate states mix), 0 machine
        precision. ``lanczos``: ARPACK's relative tolerance (``None``: 0, machine precision). ``lobpcg``:
        SciPy's absolute residual (``None``: SciPy's default).
    random_state : int, Generator or None
        Seeds the solver's starting vector(s), so results are reproducible.
    certify : bool
        After the solve, count the eigenvalues below the top energy (Sylvester's law of inertia, one more sparse
        factorisation: about the cost of the solve) and raise if the returned states are not the lowest
        (:func:`~replab.spectral.eigensolve.certify_lowest`); the result is in ``certificate_``. Without it, what
        is certified is that no eigenvalue lies below the solver's shift; that none above it was missed is what
        the iteration delivers from a generic start.
    """

    def __init__(
        self,
        n_components: int = 10,
        correlation_length: float = 1.0,
        c: float | None = None,
        solver: str = "auto",
        tol: float | None = None,
        random_state: int | np.random.Generator | None = 0,
        certify: bool = False,
    ):
        self.n_components = n_components
        self.correlation_length = correlation_length
        self.c = c
        self.solver = solver
        self.tol = tol
        self.random_state = random_state
        self.certify = certify

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, variances, y=None, *, laplacian: sp.spmatrix | None = None, dim: int | None = None):
        """Compute the components from per-point ``variances``.

        ``variances``: an array on a regular 1-, 2- or 3-D grid, or, with ``laplacian``, any array of
        ``n`` values in node order. ``laplacian``: an ``n x n`` symmetric sparse discretisation of ``-Lap``,
        such as a graph Laplacian ``D - A`` or a mass-normalised cotangent Laplacian of a mesh.
        ``dim``: intrinsic dimension of the graph's manifold, needed only to express energies as
        explained variance (on a grid it is the grid's dimension).
        """
        self._validate_params()
        variances = _check_variances(variances, graph=laplacian is not None)
        n_points = variances.size
        if laplacian is None:
            self.grid_shape_ = variances.shape
            lap = grid_laplacian(variances.shape)
            self.dim_ = variances.ndim
            if dim is not None and dim != variances.ndim:
                raise ValueError(f"dim={dim} does not match the {variances.ndim}-D grid of variances")
        else:
            lap = _check_laplacian(laplacian, n_points)
            self.grid_shape_ = None
            self.dim_ = dim
            if dim is not None and (not isinstance(dim, Integral) or dim < 1):
                raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if self.n_components >= n_points:
            raise ValueError(f"n_components={self.n_components} must be smaller than the number of points ({n_points})")

        self.variance_scale_ = float(variances.max())
        scaled = variances.ravel() / self.variance_scale_
        length = float(self.correlation_length)
        self.c_ = length**2 if self.c is None else float(self.c)
        solver = self._pick_solver(n_points)
        self.shift_ = None
        if solver == "shift-invert":
            energies, vectors, self.shift_ = lowest_eigenpairs(
                scaled,
                lap,
                self.c_,
                self.n_components,
                grid_shape=self.grid_shape_,
                tol=self.tol,
                rng=np.random.default_rng(self.random_state),
            )
        else:
            h = hamiltonian(scaled, lap, self.c_)
            energies, vectors = _lowest_eigenpairs(
                h, self.n_components, solver, spectrum_lower_bound(scaled, lap, self.c_), self.tol, self.random_state
            )
        order = np.argsort(energies, kind="stable")
        energies, vectors = energies[order], vectors[:, order]
        self.certificate_ = None
        if self.certify:
            points = nested_dissection(self.grid_shape_) if self.grid_shape_ is not None else None
            self.certificate_ = certify_lowest(hamiltonian(scaled, lap, self.c_), energies, vectors, points)
            if not self.certificate_["certified"]:
                raise RuntimeError(f"the returned states are not certified lowest: {self.certificate_['how']}")
        # Deterministic signs: the largest-magnitude entry of each component is positive.
        signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(vectors.shape[1])])
        signs[signs == 0] = 1.0
        self.components_ = (vectors * signs).T.copy()
        self.energies_ = energies
        self.solver_ = solver
        self.n_points_ = n_points
        self._total_variance = float(variances.sum())
        return self

    def _pick_solver(self, n_points: int) -> str:
        if self.solver != "auto":
            return self.solver
        if self.grid_shape_ is not None and len(self.grid_shape_) == 3 and n_points > 30_000:
            return "lobpcg"
        return "shift-invert"

    def _validate_params(self) -> None:
        k, length = self.n_components, self.correlation_length
        if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"n_components must be a positive integer, got {k!r}")
        if not isinstance(length, Real) or not math.isfinite(length) or length <= 0:
            raise ValueError(f"correlation_length must be a positive finite number, got {length!r}")
        if self.c is not None and (not isinstance(self.c, Real) or not math.isfinite(self.c) or self.c <= 0):
            raise ValueError(f"c must be None or a positive finite number, got {self.c!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.tol is not None and (not isinstance(self.tol, Real) or not self.tol >= 0):
            raise ValueError(f"tol must be None or a non-negative number, got {self.tol!r}")
        if not isinstance(self.certify, bool):
            raise ValueError(f"certify must be True or False, got {self.certify!r}")

    # -- fitted quantities ---------------------------------------------------------------------
    @property
    def explained_variance_(self) -> np.ndarray:
        """PCA eigenvalues implied by the energies: ``(2 pi l^2)^(d/2) max(variances) max(-E, 0)``."""
        check_is_fitted(self, "energies_")
        if self.dim_ is None:
            raise ValueError(
                "explained variance needs the manifold's dimension: pass dim=... to fit() with a graph Laplacian"
            )
        prefactor = (2 * math.pi * float(self.correlation_length) ** 2) ** (self.dim_ / 2)
        return prefactor * self.variance_scale_ * np.clip(-self.energies_, 0.0, None)

    @property
    def explained_variance_ratio_(self) -> np.ndarray:
        """:attr:`explained_variance_` over the total variance ``sum(variances)``."""
        return self.explained_variance_ / self._total_variance

    @property
    def components_grid_(self) -> np.ndarray:
        """Components reshaped to ``(n_components, *grid_shape)`` (grids only)."""
        check_is_fitted(self, "components_")
        if self.grid_shape_ is None:
            raise ValueError("components_grid_ exists only for variances given on a grid")
        return self.components_.reshape(-1, *self.grid_shape_)

    def transform(self, fields) -> np.ndarray:
        """Project fields ``(n_samples, *grid_shape)`` or ``(n_samples, n_points)`` on the components.

        Fields are not centred: the model describes zero-mean fluctuations.
        """
        check_is_fitted(self, "components_")
        fields = np.asarray(fields, dtype=float)
        flat = fields.reshape(fields.shape[0], -1) if fields.ndim > 1 else fields[None, :]
        if flat.shape[1] != self.n_points_:
            raise ValueError(f"fields have {flat.shape[1]} points per sample, the model has {self.n_points_}")
        return flat @ self.components_.T

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        return tags


def _check_variances(variances, *, graph: bool) -> np.ndarray:
    arr = np.asarray(variances, dtype=float)
    if arr.size == 0:
        raise ValueError("variances is empty")
    if not graph and not 1 <= arr.ndim <= 3:
        raise ValueError(
            f"variances must be a 1-, 2- or 3-D grid (got {arr.ndim} dimensions); "
            "for graphs and manifolds pass laplacian=..."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"variances contain {int((~np.isfinite(arr)).sum())} NaN or infinite values")
    if np.any(arr < 0):
        raise ValueError(f"variances must be non-negative; {int((arr < 0).sum())} are negative (min {arr.min():.3g})")
    if arr.max() == 0:
        raise ValueError("variances are all zero")
    return arr


def _check_laplacian(laplacian, n_points: int) -> sp.csr_matrix:
    if not sp.issparse(laplacian):
        raise ValueError("laplacian must be a scipy.sparse matrix (e.g. the graph Laplacian D - A)")
    lap = sp.csr_matrix(laplacian, dtype=float)
    if lap.shape != (n_points, n_points):
        raise ValueError(f"laplacian has shape {lap.shape}, expected ({n_points}, {n_points}) for {n_points} variances")
    if not np.all(np.isfinite(lap.data)):
        raise ValueError("laplacian contains NaN or infinite entries")
    if abs(lap - lap.T).max() > 1e-10 * max(1.0, abs(lap).max()):
        raise ValueError("laplacian must be symmetric")
    return lap


def _lowest_eigenpairs(h, k, solver, lower_bound, tol, random_state):
    n = h.shape[0]
    rng = np.random.default_rng(random_state)
    v0 = rng.standard_normal(n)
    if solver == "lanczos":
        energies, vectors = sla.eigsh(h, k=k, which="SA", tol=tol or 0.0, v0=v0)
    else:
        energies, vectors = _lobpcg(h, k, lower_bound, tol, rng)
    log.debug("solver %s: energies %s", solver, energies)
    return energies, vectors


def _lobpcg(h, k, lower_bound, tol, rng):
    import pyamg

    shift = -lower_bound + 1e-3 * max(1.0, abs(lower_bound))
    shifted = sp.csr_matrix(h + shift * sp.identity(h.shape[0], format="csr"))
    preconditioner = pyamg.smoothed_aggregation_solver(shifted).aspreconditioner()
    block = k + max(4, k // 2)  # a few extra vectors speed up convergence of the last wanted ones
    x0 = rng.standard_normal((h.shape[0], block))
    energies, vectors = sla.lobpcg(
        h, x0, M=preconditioner, largest=False, tol=tol or None, maxiter=500, verbosityLevel=0
    )
    return energies[:k], vectors[:, :k]
