"""The paper's claims at a size that runs in seconds."""

import numpy as np

from replab.spectral import experiments as ex
from replab.spectral.fields import FilteredNoiseField, paraboloid_variance


def test_schrodinger_pca_from_coarse_variances_beats_coarse_pca():
    model = FilteredNoiseField(paraboloid_variance((41, 41)), filter_width=1.5)
    samples = model.sample(800, 3)
    result = ex.undersampling_experiment(samples, model, anchor_spacing=5, n_components=6)
    spca, coarse = result.methods["spca_l2"], result.methods["coarse_pca"]
    assert min(spca.overlap) > 0.9
    assert np.mean(spca.overlap) > np.mean(coarse.overlap) + 0.05
    assert len(spca.overlap) == len(spca.overlap_strict) == 6
    assert spca.spectrum_error < 0.15


def test_oscillator_check_finds_levels_and_hermite_modes():
    result = ex.harmonic_oscillator_check(81, c=4.0, radius_fraction=2.0, n_levels=3)
    assert result.levels == [1, 2, 3]
    assert min(result.hermite_overlap) > 0.98


def test_sphere_multiplicities_graph_and_cotangent():
    assert ex.icosphere_check(2, "cotangent").levels == [1, 3, 5, 7]
    assert ex.icosphere_check(2, "graph").levels[:3] == [1, 3, 5]


def test_sweep_rows_cover_every_cell():
    rows = ex.spacing_sweep(21, 100, [3, 5], [1.0], n_components=3, progress=False)
    assert {(r["anchor_spacing"], r["method"]) for r in rows} == {
        (3, "coarse_pca"),
        (3, "spca_l2"),
        (5, "coarse_pca"),
        (5, "spca_l2"),
    }
