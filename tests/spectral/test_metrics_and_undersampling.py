import numpy as np
import pytest

from replab.spectral.metrics import orthonormal_rows, overlap_curve, spectrum_error, subspace_overlap
from replab.spectral.undersampling import anchor_axes, interpolate_to_grid, take_anchors, variances_from_anchors


def test_overlap_is_one_for_the_same_subspace_and_zero_for_orthogonal_ones():
    basis = np.eye(6)
    rotated = orthonormal_rows(np.array([[1, 1, 0, 0, 0, 0], [1, -1, 0, 0, 0, 0.0]]))
    assert subspace_overlap(rotated, basis, 2) == pytest.approx(1.0)
    assert subspace_overlap(basis[[2, 3]], basis, 2) == pytest.approx(0.0)
    assert subspace_overlap(rotated, basis, 1) == pytest.approx(0.5)


def test_degeneracy_aware_overlap_widens_the_true_subspace_over_a_level():
    truth = np.eye(5)
    values = np.array([3.0, 2.0, 2.0, 1.0, 0.5])
    estimate = truth[[0, 2, 1]]  # picks the other vector of the degenerate pair first
    assert subspace_overlap(estimate, truth, 2) == pytest.approx(0.5)
    assert subspace_overlap(estimate, truth, 2, values, degeneracy_tol=0.01) == pytest.approx(1.0)
    # A wrong vector outside the level is still penalised.
    wrong = truth[[0, 3]]
    assert subspace_overlap(wrong, truth, 2, values, degeneracy_tol=0.01) == pytest.approx(0.5)
    assert overlap_curve(estimate, truth, [1, 2, 3]) == pytest.approx([1.0, 0.5, 1.0])


def test_overlap_input_checks():
    with pytest.raises(ValueError, match="k=3"):
        subspace_overlap(np.eye(4)[:2], np.eye(4), 3)
    with pytest.raises(ValueError, match="truth_eigenvalues"):
        subspace_overlap(np.eye(4)[:2], np.eye(4), 1, degeneracy_tol=0.1)


def test_spectrum_error_compares_ratios():
    assert spectrum_error(np.array([2.0, 1.0]), np.array([4.0, 2.0])) == 0.0
    assert spectrum_error(np.array([1.0, 0.5]), np.array([1.0, 0.6])) == pytest.approx(0.1)


def test_anchors_and_interpolation_reproduce_linear_functions():
    shape = (25, 19)
    axes = anchor_axes(shape, 6)
    assert [a.tolist() for a in axes] == [[0, 6, 12, 18, 24], [0, 6, 12, 18]]
    yy, xx = np.meshgrid(np.arange(25), np.arange(19), indexing="ij")
    plane = 2.0 + 0.3 * yy - 0.1 * xx
    anchors = take_anchors(plane, axes)
    assert anchors.shape == (5, 4)
    for method in ("linear", "cubic"):
        np.testing.assert_allclose(interpolate_to_grid(anchors, axes, shape, method), plane, atol=1e-9)
    batch = take_anchors(np.stack([plane, 2 * plane]), axes)
    np.testing.assert_allclose(interpolate_to_grid(batch, axes, shape)[1], 2 * plane, atol=1e-9)


def test_variances_from_anchors_are_non_negative_and_checked():
    axes = anchor_axes((20,), 5)
    bumpy = np.array([0.0, 1.0, 0.0, 0.0])
    assert variances_from_anchors(bumpy, axes, (20,)).min() >= 0
    with pytest.raises(ValueError, match="non-negative"):
        variances_from_anchors(-bumpy, axes, (20,))
    with pytest.raises(ValueError, match="fewer than 2 anchors"):
        anchor_axes((5, 5), 6)
