"""The certified shift-invert solver: Cholesky as the certificate, the coarse-grid shift and its fallbacks, the
LOBPCG refinement, against references computed with the proven bound at machine precision."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla
from scipy.linalg import eigh, eigvalsh

from replab.spectral import SchrodingerPCA, eigensolve
from replab.spectral.eigensolve import (
    ShiftedCholesky,
    certify_lowest,
    count_below,
    lowest_eigenpairs,
    nested_dissection,
)
from replab.spectral.fields import disc_variance, paraboloid_variance
from replab.spectral.operators import grid_laplacian, hamiltonian, spectrum_lower_bound


def reference(scaled, shape, c, k):
    """eigsh at the proven bound with SciPy's own LU (the old solver), to machine precision. Single-vector
    Lanczos can miss a copy of a degenerate level at the top of what it returns (ARPACK's start is random unless
    given), so it is asked for a few more states from a seeded start and the lowest ``k`` are kept."""
    lap = grid_laplacian(shape)
    h = hamiltonian(scaled, lap, c)
    sigma = spectrum_lower_bound(scaled, lap, c) - 1e-3
    v0 = np.random.default_rng(1).standard_normal(h.shape[0])
    return np.sort(sla.eigsh(h.tocsc(), k=k + 4, sigma=sigma, which="LM", tol=0, v0=v0)[0])[:k]


@pytest.mark.parametrize("shape", [(300,), (37, 41), (9, 10, 11)])
def test_nested_dissection_is_a_permutation(shape):
    order = nested_dissection(shape)
    assert np.array_equal(np.sort(order), np.arange(np.prod(shape)))


@pytest.mark.parametrize("ordered", [True, False])
def test_the_factorisation_exists_exactly_when_no_eigenvalue_is_below_the_shift(ordered):
    shape = (24, 25)
    h = hamiltonian(disc_variance(shape).ravel(), grid_laplacian(shape), 20.0)
    values = eigvalsh(h.toarray())
    factors = ShiftedCholesky(h, nested_dissection(shape) if ordered else None)
    b = np.random.default_rng(0).standard_normal((h.shape[0], 3))
    for sigma in (values[0] - 0.1, values[0] - 1e-6):
        solve = factors.at(sigma)
        assert solve is not None
        for rhs in (b, b[:, 0]):  # blocks and vectors
            np.testing.assert_allclose(h @ solve(rhs) - sigma * solve(rhs), rhs, atol=1e-8)
    for sigma in (values[0] + 1e-6, (values[5] + values[6]) / 2, -0.5):
        assert factors.at(sigma) is None
    assert factors.factorisations == 5


def test_a_smooth_field_is_shifted_just_below_its_spectrum_and_certified():
    shape = (150, 150)
    variance = paraboloid_variance(shape, 0.45) + 0.05
    scaled = (variance / variance.max()).ravel()
    c = 4.0**2
    energies, vectors, shift = lowest_eigenpairs(
        scaled, grid_laplacian(shape), c, 8, grid_shape=shape, rng=np.random.default_rng(0)
    )
    expected = reference(scaled, shape, c, 8)
    np.testing.assert_allclose(energies, expected, rtol=1e-9)
    assert shift.certified_by == "cholesky" and shift.factorisations == 1
    assert shift.sigma < expected[0]
    assert expected[0] - shift.sigma < 0.5 * (expected[-1] - expected[0])  # close: the point of the coarse grid
    h = hamiltonian(scaled, grid_laplacian(shape), c)
    residuals = np.linalg.norm(h @ vectors - vectors * energies, axis=0)
    assert residuals.max() <= eigensolve.RESIDUAL_TOL * max(1.0, np.abs(energies).max())
    assert shift.residual == pytest.approx(residuals.max() / max(1.0, np.abs(energies).max()))
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(8), atol=1e-10)


def test_states_the_coarse_grid_misses_lower_the_shift_until_none_is_below():
    # A sharp edge pins states to the grid scale, far below anything a coarser grid carries.
    shape = (150, 150)
    scaled = disc_variance(shape).ravel()
    c = 7.5**2
    energies, vectors, shift = lowest_eigenpairs(
        scaled, grid_laplacian(shape), c, 6, grid_shape=shape, rng=np.random.default_rng(0)
    )
    expected = reference(scaled, shape, c, 6)
    np.testing.assert_allclose(energies, expected, rtol=1e-9)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(6), atol=1e-10)
    assert shift.factorisations > 2 and shift.certified_by == "cholesky"
    assert shift.sigma < expected[0]
    assert energies[0] < -1.0  # below min V: the naive shift (sigma = -1) would sit inside the spectrum


def test_a_tighter_tolerance_gives_smaller_residuals():
    shape = (150, 150)
    scaled = paraboloid_variance(shape, 0.45).ravel() * 0.95 + 0.05
    pairs = [
        lowest_eigenpairs(scaled, grid_laplacian(shape), 25.0, 5, grid_shape=shape, rng=np.random.default_rng(0), tol=t)
        for t in (1e-3, 1e-9)
    ]
    assert pairs[1][2].residual <= 1e-9 < pairs[0][2].residual <= 1e-3


def test_lobpcg_that_does_not_converge_falls_back_to_lanczos(monkeypatch):
    shape = (150, 150)
    scaled = paraboloid_variance(shape, 0.45).ravel() * 0.95 + 0.05
    real = eigensolve._lobpcg
    monkeypatch.setattr(eigensolve, "_lobpcg", lambda *a, **kw: real(*a, **{**kw, "maxiter": 0}))
    energies, _, shift = lowest_eigenpairs(
        scaled, grid_laplacian(shape), 25.0, 5, grid_shape=shape, rng=np.random.default_rng(0)
    )
    np.testing.assert_allclose(energies, reference(scaled, shape, 25.0, 5), rtol=1e-10)
    assert shift.residual < 1e-10


def test_the_estimator_returns_the_same_components_as_the_proven_shift():
    shape = (160, 140)
    variance = paraboloid_variance(shape, 0.4) + 0.05
    fast = SchrodingerPCA(6, correlation_length=3.0, solver="shift-invert").fit(variance)
    scaled = (variance / variance.max()).ravel()
    assert fast.shift_.certified_by == "cholesky"
    np.testing.assert_allclose(fast.energies_, reference(scaled, shape, 9.0, 6), rtol=1e-9)
    dense_states = SchrodingerPCA(6, correlation_length=3.0, solver="lanczos").fit(variance).components_
    # The same span (states of a near-degenerate pair may come rotated within it): all principal angles ~0.
    cosines = np.linalg.svd(fast.components_ @ dense_states.T, compute_uv=False)
    np.testing.assert_allclose(cosines, 1.0, atol=1e-8)


@pytest.mark.parametrize("ordered", [True, False])
def test_count_below_is_the_number_of_eigenvalues_below(ordered):
    shape = (30, 31)
    h = hamiltonian(disc_variance(shape).ravel(), grid_laplacian(shape), 20.0)
    values = eigvalsh(h.toarray())
    for tau in (values[0] - 1.0, (values[3] + values[4]) / 2, (values[20] + values[21]) / 2, 0.0):
        count = count_below(h, tau, nested_dissection(shape) if ordered else None)
        assert count.below == np.count_nonzero(values < tau) and count.backward_error < 1e-12


def test_certify_lowest_catches_a_missed_state():
    shape = (30, 31)
    h = hamiltonian(disc_variance(shape).ravel(), grid_laplacian(shape), 20.0)
    energies, vectors = eigh(h.toarray(), subset_by_index=[0, 5])
    assert certify_lowest(h, energies, vectors)["certified"]
    missing = certify_lowest(h, np.delete(energies, 2), np.delete(vectors, 2, axis=1))
    assert not missing["certified"] and missing["count"] == 6


def test_count_below_estimates_the_factorisations_error_and_certify_refuses_a_large_one(monkeypatch):
    shape = (30, 31)
    h = hamiltonian(disc_variance(shape).ravel(), grid_laplacian(shape), 20.0)
    count = count_below(h, 0.0)
    assert 0 < count.error_norm < 1e-10 and count.error_norm == pytest.approx(count.backward_error * sla.norm(h, 1))
    energies, vectors = eigh(h.toarray(), subset_by_index=[0, 5])
    # A count exact only for H + E with ||E|| beyond the margin proves nothing about H.
    inflated = lambda *args: eigensolve.Count(args[1], 6, 1.0, 1e3)  # noqa: E731
    monkeypatch.setattr(eigensolve, "count_below", inflated)
    refused = certify_lowest(h, energies, vectors)
    assert not refused["certified"] and "margin" in refused["how"]


def test_certify_lowest_separates_a_degenerate_top_level_from_a_skipped_state():
    # Eigenvalues 0..7, 9, 10 (three copies), 11, 12; the eigenvectors are the unit vectors.
    values = np.array([*range(8), 9, 10, 10, 10, 11, 12], dtype=float)
    h = sp.diags(values, format="csr")
    pick = lambda idx: (values[idx], np.eye(values.size)[:, idx])  # noqa: E731
    # Two of the three copies of the top level: the ten lowest, certified.
    assert certify_lowest(h, *pick(list(range(10))))["certified"]
    # 9 skipped, two copies of 10 returned instead: not the ten lowest.
    skipped = certify_lowest(h, *pick([*range(8), 9 + 1, 10 + 1]))
    assert not skipped["certified"] and skipped["count_below_group"] == 9


def test_a_failing_lobpcg_falls_back_and_certify_checks_the_fit(monkeypatch):
    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("the block lost rank")

    monkeypatch.setattr(eigensolve, "_lobpcg", broken)
    shape = (150, 150)
    variance = paraboloid_variance(shape, 0.45) * 0.95 + 0.05
    model = SchrodingerPCA(5, correlation_length=5.0, solver="shift-invert", certify=True).fit(variance)
    np.testing.assert_allclose(
        model.energies_, reference(variance.ravel() / variance.max(), shape, 25.0, 5), rtol=1e-10
    )
    assert model.certificate_["certified"] and model.certificate_["count"] == 5


@pytest.mark.parametrize(
    ("shape", "variance"),
    [
        ((30_000,), lambda s: paraboloid_variance(s, 0.4) + 0.05),  # 1-D through the coarse grid
        ((30, 30, 30), lambda s: paraboloid_variance(s, 0.4) + 0.05),  # cubic symmetry: degenerate levels
        ((30, 30, 30), lambda s: disc_variance(s)),  # and a sharp edge
        ((8, 2600), lambda s: paraboloid_variance(s, 0.4) + 0.05),  # a thin strip: no coarse grid
    ],
)
def test_the_lowest_states_are_certified_on_other_grids(shape, variance):
    scaled = variance(shape).ravel()
    scaled = scaled / scaled.max()
    lap = grid_laplacian(shape)
    c = 9.0 if min(shape) > 8 else 0.25  # the strip's levels crowd together at larger c: slow at the proven bound
    energies, vectors, shift = lowest_eigenpairs(scaled, lap, c, 8, grid_shape=shape, rng=np.random.default_rng(1))
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(8), atol=1e-10)
    assert shift.sigma < energies[0] and shift.residual <= eigensolve.RESIDUAL_TOL
    verdict = certify_lowest(hamiltonian(scaled, lap, c), energies, vectors)
    assert verdict["certified"], verdict
