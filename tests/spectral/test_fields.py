import numpy as np
import pytest

from replab.spectral.fields import FilteredNoiseField, paraboloid_variance


def test_paraboloid_variance_is_one_at_the_centre_and_zero_outside_the_radius():
    v = paraboloid_variance((21, 21), 0.4)
    assert v[10, 10] == 1.0
    assert v[0, 0] == 0.0 and v.min() >= 0


def test_samples_are_the_filter_matrix_applied_to_padded_noise():
    model = FilteredNoiseField(paraboloid_variance((9, 11), 0.5), filter_width=1.3)
    r = model.radius
    noise = np.random.default_rng(5).standard_normal((1, 9 + 2 * r, 11 + 2 * r))
    expected = np.sqrt(model.variance) * (model.filter_matrix(9) @ noise[0] @ model.filter_matrix(11).T)
    got = model.sample(1, np.random.default_rng(5), dtype=np.float64)[0]
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_exact_covariance_operator_matches_dense_and_empirical():
    model = FilteredNoiseField(paraboloid_variance((8, 9), 0.6) + 0.1, filter_width=1.0)
    dense = model.covariance_matrix()
    op = model.covariance_operator()
    x = np.random.default_rng(0).standard_normal(72)
    np.testing.assert_allclose(op @ x, dense @ x, atol=1e-12)
    np.testing.assert_allclose(np.diag(dense), model.variance.ravel(), rtol=0.02)  # unit-variance filter
    samples = model.sample(20000, 1, dtype=np.float64).reshape(20000, -1)
    assert np.abs(np.cov(samples.T) - dense).max() < 0.05


def test_principal_components_are_the_dense_eigenvectors():
    model = FilteredNoiseField(paraboloid_variance((10, 10), 0.45), filter_width=1.5)
    values, comps = model.principal_components(4)
    dense_values = np.linalg.eigvalsh(model.covariance_matrix())[::-1][:4]
    np.testing.assert_allclose(values, dense_values, rtol=1e-8)
    np.testing.assert_allclose(comps @ comps.T, np.eye(4), atol=1e-8)


def test_sampling_is_deterministic_per_seed():
    model = FilteredNoiseField(paraboloid_variance((12, 12)), 2.0)
    np.testing.assert_array_equal(model.sample(3, 7), model.sample(3, 7))


def test_invalid_field_parameters():
    with pytest.raises(ValueError, match="filter_width"):
        FilteredNoiseField(np.ones((3, 3)), 0.0)
    with pytest.raises(ValueError, match="non-negative"):
        FilteredNoiseField(-np.ones((3, 3)), 1.0)
