"""The certified shift-invert solver: nested dissection, inertia from the factorisation, the coarse-grid shift
and its fallbacks, against references computed with the proven bound."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla
from scipy.linalg import eigvalsh

from replab.spectral.eigensolve import SymmetricFactor, lowest_eigenpairs, nested_dissection
from replab.spectral.fields import disc_variance, paraboloid_variance
from replab.spectral.operators import grid_laplacian, hamiltonian, spectrum_lower_bound


def reference(scaled, shape, c, k):
    """eigsh at the proven bound (the old solver), to machine precision."""
    lap = grid_laplacian(shape)
    h = hamiltonian(scaled, lap, c)
    sigma = spectrum_lower_bound(scaled, lap, c) - 1e-3
    return np.sort(sla.eigsh(h.tocsc(), k=k, sigma=sigma, which="LM", tol=0)[0])


@pytest.mark.parametrize("shape", [(300,), (37, 41), (9, 10, 11)])
def test_nested_dissection_is_a_permutation(shape):
    order = nested_dissection(shape)
    assert np.array_equal(np.sort(order), np.arange(np.prod(shape)))


def test_negative_pivots_count_the_eigenvalues_below_the_shift():
    shape = (24, 25)
    scaled = disc_variance(shape).ravel()
    h = hamiltonian(scaled, grid_laplacian(shape), 20.0)
    values = eigvalsh(h.toarray())
    eye = sp.identity(h.shape[0])
    for sigma in (values[0] - 0.1, (values[0] + values[1]) / 2, (values[6] + values[7]) / 2, -0.5):
        for order in (nested_dissection(shape), None):
            factor = SymmetricFactor(h - sigma * eye, order)
            assert factor.negative_pivots == np.count_nonzero(values < sigma)
            b = np.random.default_rng(0).standard_normal(h.shape[0])
            np.testing.assert_allclose((h - sigma * eye) @ factor.solve(b), b, atol=1e-8)


def test_a_smooth_field_is_shifted_just_below_its_spectrum_and_certified():
    shape = (150, 150)
    variance = paraboloid_variance(shape, 0.45) + 0.05
    scaled = (variance / variance.max()).ravel()
    c = 4.0**2
    energies, vectors, shift = lowest_eigenpairs(
        scaled, grid_laplacian(shape), c, 8, grid_shape=shape, tol=0.0, rng=np.random.default_rng(0)
    )
    expected = reference(scaled, shape, c, 8)
    np.testing.assert_allclose(energies, expected, rtol=1e-10)
    assert shift.certified_by == "inertia" and shift.factorisations == 1
    assert expected[0] - shift.sigma < 0.5 * (expected[-1] - expected[0])  # close: the point of the coarse grid
    h = hamiltonian(scaled, grid_laplacian(shape), c)
    assert np.linalg.norm(h @ vectors - vectors * energies, axis=0).max() < 1e-8


def test_states_the_coarse_grid_misses_lower_the_shift_until_none_is_below():
    # A sharp edge pins states to the grid scale, far below anything a coarser grid carries.
    shape = (150, 150)
    scaled = disc_variance(shape).ravel()
    c = 7.5**2
    energies, _, shift = lowest_eigenpairs(
        scaled, grid_laplacian(shape), c, 6, grid_shape=shape, tol=0.0, rng=np.random.default_rng(0)
    )
    np.testing.assert_allclose(energies, reference(scaled, shape, c, 6), rtol=1e-10)
    assert shift.factorisations > 1 and shift.certified_by in ("inertia", "bound")
    assert energies[0] < -1.0  # below min V: the naive shift (sigma = -1) would sit inside the spectrum
