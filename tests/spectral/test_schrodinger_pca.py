import math

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.linalg import eigh
from sklearn.base import clone

from replab.spectral import SchrodingerPCA
from replab.spectral.fields import paraboloid_variance
from replab.spectral.graphs import degeneracy_groups, icosphere_laplacian
from replab.spectral.operators import grid_laplacian, hamiltonian, spectrum_lower_bound


def dense_lowest(variances, c, k, lap=None):
    s = variances.ravel() / variances.max()
    lap = grid_laplacian(variances.shape) if lap is None else lap
    values, vectors = eigh(hamiltonian(s, lap, c).toarray())
    return values[:k], vectors[:, :k].T


@pytest.mark.parametrize("shape", [(40,), (15, 17), (6, 7, 8)])
def test_matches_dense_eigendecomposition_on_1d_2d_3d_grids(shape):
    variances = paraboloid_variance(shape, 0.45) + 0.05
    model = SchrodingerPCA(n_components=5, correlation_length=1.5).fit(variances)
    values, vectors = dense_lowest(variances, 1.5**2, 5)
    np.testing.assert_allclose(model.energies_, values, atol=1e-8)
    # Compare subspaces, not vectors: some levels are degenerate.
    overlap = np.sum((model.components_ @ vectors.T) ** 2) / 5
    assert overlap == pytest.approx(1.0, abs=1e-6)
    assert model.components_grid_.shape == (5, *shape)


def test_shapes_normalisation_and_order():
    variances = paraboloid_variance((30, 30), 0.4)
    model = SchrodingerPCA(n_components=7, correlation_length=2.0).fit(variances)
    assert model.components_.shape == (7, 900)
    np.testing.assert_allclose(model.components_ @ model.components_.T, np.eye(7), atol=1e-8)
    assert np.all(np.diff(model.energies_) >= -1e-12)
    assert model.c_ == pytest.approx(4.0)
    ratio = model.explained_variance_ratio_
    assert np.all(ratio >= 0) and ratio.sum() <= 1.0 + 1e-9 and np.all(np.diff(ratio) <= 1e-12)
    # Deterministic signs: largest-magnitude entry positive.
    assert np.all(model.components_[np.arange(7), np.abs(model.components_).argmax(axis=1)] > 0)
    assert model.transform(np.ones((3, 30, 30))).shape == (3, 7)


def test_explained_variance_follows_the_scale_of_the_variances():
    variances = paraboloid_variance((25, 25), 0.4)
    a = SchrodingerPCA(4, 2.0).fit(variances)
    b = SchrodingerPCA(4, 2.0).fit(3.0 * variances)
    np.testing.assert_allclose(b.explained_variance_, 3.0 * a.explained_variance_)
    np.testing.assert_allclose(b.explained_variance_ratio_, a.explained_variance_ratio_)
    np.testing.assert_allclose(b.energies_, a.energies_)


def test_c_default_is_l_squared_and_explicit_c_is_used():
    variances = paraboloid_variance((20, 20), 0.4)
    default = SchrodingerPCA(3, correlation_length=3.0).fit(variances)
    explicit = SchrodingerPCA(3, correlation_length=3.0, c=9.0).fit(variances)
    other = SchrodingerPCA(3, correlation_length=3.0, c=4.5).fit(variances)
    np.testing.assert_allclose(default.energies_, explicit.energies_)
    assert not np.allclose(default.energies_, other.energies_)


@pytest.mark.parametrize("solver", ["shift-invert", "lanczos", "lobpcg"])
def test_solvers_agree(solver):
    variances = paraboloid_variance((24, 26), 0.4)
    reference = SchrodingerPCA(6, 2.0, solver="shift-invert").fit(variances)
    model = SchrodingerPCA(6, 2.0, solver=solver).fit(variances)
    np.testing.assert_allclose(model.energies_, reference.energies_, atol=1e-6)


def test_harmonic_oscillator_energies_and_degeneracies():
    # variance 1 - r^2/R^2 with R >> grid: H ~ -(c/2) Lap + r^2/R^2 - 1, omega = sqrt(2c)/R.
    n, radius, c = 121, 240.0, 4.0
    axis = np.arange(n) - (n - 1) / 2
    variances = 1 - (axis[:, None] ** 2 + axis[None, :] ** 2) / radius**2
    model = SchrodingerPCA(10, correlation_length=2.0, c=c).fit(variances)
    omega = math.sqrt(2 * c) / radius
    predicted = -1 + omega * np.array([1, 2, 2, 3, 3, 3, 4, 4, 4, 4])
    np.testing.assert_allclose(model.energies_, predicted, atol=0.1 * omega)
    assert degeneracy_groups(model.energies_, rel_tol=0.25 * omega / np.ptp(model.energies_)) == [1, 2, 3, 4]
    # Ground state: a Gaussian exp(-alpha^2 r^2 / 2), alpha^2 = sqrt(2/c)/R.
    alpha2 = math.sqrt(2 / c) / radius
    gauss = np.exp(-alpha2 * (axis[:, None] ** 2 + axis[None, :] ** 2) / 2).ravel()
    gauss /= np.linalg.norm(gauss)
    assert abs(model.components_[0] @ gauss) > 0.999


def test_graph_laplacian_on_the_sphere_gives_spherical_harmonic_multiplicities():
    vertices, lap = icosphere_laplacian(3, "cotangent")
    model = SchrodingerPCA(20, correlation_length=0.1).fit(np.ones(len(vertices)), laplacian=lap)
    e = model.energies_
    levels = degeneracy_groups(e, rel_tol=0.2 * (e[1] - e[0]) / np.ptp(e))
    assert levels[:4] == [1, 3, 5, 7]
    with pytest.raises(ValueError, match="dim"):
        _ = model.explained_variance_
    with_dim = SchrodingerPCA(4, correlation_length=0.1).fit(np.ones(len(vertices)), laplacian=lap, dim=2)
    assert with_dim.explained_variance_.shape == (4,)


def test_graph_fit_matches_grid_fit_for_a_path_graph():
    n = 50
    variances = paraboloid_variance((n,), 0.45) + 0.01
    adjacency = sp.diags([np.ones(n - 1), np.ones(n - 1)], [-1, 1])
    # D - A of a path lacks the Dirichlet boundary's extra 1 at both ends.
    lap = sp.csr_matrix(sp.diags(np.asarray(adjacency.sum(axis=1)).ravel()) - adjacency)
    lap = lap + sp.diags(np.r_[1.0, np.zeros(n - 2), 1.0])
    on_graph = SchrodingerPCA(4, 2.0).fit(variances, laplacian=lap)
    on_grid = SchrodingerPCA(4, 2.0).fit(variances)
    np.testing.assert_allclose(on_graph.energies_, on_grid.energies_, atol=1e-9)


@pytest.mark.parametrize("seed", range(20))
def test_spectrum_lower_bound_holds_for_rough_variances_and_signed_weights(seed):
    rng = np.random.default_rng(seed)
    n = 30
    s = rng.uniform(0, 1, n)
    w = sp.random(n, n, density=0.2, random_state=seed, data_rvs=lambda k: rng.uniform(-0.3, 1.0, k))
    w = sp.triu(w, 1)
    w = w + w.T
    lap = sp.diags(np.asarray(w.sum(axis=1)).ravel() + rng.uniform(-0.5, 0.5, n)) - w
    c = rng.uniform(0.5, 10)
    lowest = eigh(hamiltonian(s, lap, c).toarray(), eigvals_only=True)[0]
    assert lowest >= spectrum_lower_bound(s, lap, c) - 1e-10


def test_sklearn_conventions():
    model = SchrodingerPCA(3, 2.0, solver="lanczos")
    assert clone(model).get_params() == model.get_params()
    assert model.set_params(n_components=4).n_components == 4
    with pytest.raises(Exception, match="not fitted"):
        model.transform(np.ones((1, 4)))


@pytest.mark.parametrize(
    ("kwargs", "variances", "message"),
    [
        ({}, np.array([[1.0, -0.5], [1.0, 1.0]] * 3), "negative"),
        ({}, np.array([1.0, np.nan, 1.0, 1.0, 1.0]), "NaN"),
        ({}, np.array([1.0, np.inf, 1.0, 1.0, 1.0]), "NaN or infinite"),
        ({}, np.ones((2, 2, 2, 2)), "1-, 2- or 3-D"),
        ({}, np.zeros((5, 5)), "all zero"),
        ({}, np.array([]), "empty"),
        ({"n_components": 25}, np.ones((5, 5)), "n_components=25 must be smaller"),
        ({"n_components": 0}, np.ones((5, 5)), "n_components must be a positive integer"),
        ({"correlation_length": -1.0}, np.ones((5, 5)), "correlation_length"),
        ({"correlation_length": float("nan")}, np.ones((5, 5)), "correlation_length"),
        ({"c": 0.0}, np.ones((5, 5)), "c must be"),
        ({"solver": "magic"}, np.ones((5, 5)), "solver must be one of"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(kwargs, variances, message):
    params = {"n_components": 2, "correlation_length": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        SchrodingerPCA(**params).fit(variances)


def test_bad_laplacian_raises():
    v = np.ones(10)
    with pytest.raises(ValueError, match="shape"):
        SchrodingerPCA(2).fit(v, laplacian=sp.identity(9, format="csr"))
    with pytest.raises(ValueError, match="symmetric"):
        SchrodingerPCA(2).fit(v, laplacian=sp.csr_matrix(np.triu(np.ones((10, 10)))))
    with pytest.raises(ValueError, match="scipy.sparse"):
        SchrodingerPCA(2).fit(v, laplacian=np.eye(10))
    with pytest.raises(ValueError, match="dim=3 does not match"):
        SchrodingerPCA(2).fit(np.ones((5, 5)), dim=3)
