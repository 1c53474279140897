"""Schrödinger PCA's claims: what the notebook's results mean, judged against targets fixed here.

The paper reports its results as figures, with no number to quote for the overlaps; its published statements are
the analytic ones (oscillator degeneracies, spherical-harmonic multiplicities), which the paper column holds.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..claims import PaperResults, PaperValue, Target, claim
from .experiments import OscillatorResult, SphereResult, UndersamplingResult
from .solver_benchmark import SolverBenchmark
from .solver_benchmark import claims as solver_claims

# Fixed before the runs they judge (issue history: set with the notebook, never moved after a result).
TARGETS = {
    "spca_min_overlap": Target(op=">=", level=0.95),
    "coarse_pca_max_overlap": Target(op="<=", level=0.85),
    "oscillator_degeneracies": Target(op="==", level=[1, 2, 3, 4]),
    "icosphere_multiplicities": Target(op="==", level=[1, 3, 5, 7]),
}
NO_NUMBER = "the paper shows this as a figure, with no number to quote"


def headline(
    main: UndersamplingResult,
    oscillator: OscillatorResult,
    spheres: Mapping[str, SphereResult],
    *,
    profile: str,
    scale: Mapping[str, object],
    interpolation: str,
    timings: Mapping[str, float] | None = None,
    solver: SolverBenchmark | None = None,
) -> PaperResults:
    """The headline claims of one run of the notebook, and the eigensolver's at 10^6 points from its committed
    benchmark run (``solver``), judged against that benchmark's own targets."""
    k = len(main.methods["spca_l2"].overlap)
    grid = (
        f"{scale.get('grid')} grid, {scale.get('n_samples')} fields, anchors every {scale.get('anchor_spacing_px')} px"
    )
    spca, coarse, fine = main.methods["spca_l2"], main.methods["coarse_pca"], main.methods["fine_pca"]
    claims = [
        claim(
            "spca_min_overlap",
            f"Schrödinger PCA from coarse variances (c = l²): min overlap, k = 1..{k}",
            min(spca.overlap),
            scale=grid,
            method="paper",
            target=TARGETS["spca_min_overlap"],
            note=NO_NUMBER,
        ),
        claim(
            "coarse_pca_max_overlap",
            f"PCA on the anchors + {interpolation} interpolation: max overlap, k = 1..{k}",
            max(coarse.overlap),
            scale=grid,
            method="baseline",
            target=TARGETS["coarse_pca_max_overlap"],
            note="the paper's point: PCA on the anchors cannot recover the fine modes",
        ),
        claim(
            "fine_pca_min_overlap",
            f"PCA on the fine grid (all samples): min overlap, k = 1..{k}",
            min(fine.overlap),
            scale=grid,
            method="baseline",
            reason="a reference arm: no target",
        ),
        claim(
            "spectrum_error_l2",
            "relative-spectrum error, c = l²",
            spca.spectrum_error,
            scale=grid,
            method="paper",
            reason="no target: compared with c = s² beside it",
        ),
        claim(
            "spectrum_error_s2",
            "relative-spectrum error, c = s² (the public notebooks' choice)",
            main.methods["spca_s2"].spectrum_error,
            scale=grid,
            method="paper",
            reason="no target: compared with c = l² beside it",
        ),
        claim(
            "oscillator_degeneracies",
            "harmonic-oscillator degeneracies of the first four levels",
            list(oscillator.levels),
            scale=f"{oscillator.grid}² grid, c = {oscillator.c:g}",
            method="paper",
            target=TARGETS["oscillator_degeneracies"],
            paper=PaperValue(value=[1, 2, 3, 4], source="analytic result stated in the paper (2-D oscillator)"),
        ),
        claim(
            "icosphere_multiplicities",
            "icosphere multiplicities, cotangent Laplacian",
            list(spheres["cotangent"].levels[:4]),
            scale=f"{spheres['cotangent'].n_vertices} vertices",
            method="paper",
            target=TARGETS["icosphere_multiplicities"],
            paper=PaperValue(value=[1, 3, 5, 7], source="analytic result stated in the paper (spherical harmonics)"),
        ),
        claim(
            "icosphere_multiplicities_graph",
            "icosphere multiplicities, graph Laplacian D − A",
            list(spheres["graph"].levels[:5]),
            scale=f"{spheres['graph'].n_vertices} vertices",
            method="paper",
            reason="shown for contrast: D − A is not a consistent Laplace–Beltrami discretisation",
        ),
        *(solver_claims(solver) if solver is not None else []),
    ]
    return PaperResults(
        paper="schrodinger_pca",
        profile=profile,
        scale=dict(scale),
        claims=claims,
        timings=dict(timings or {}),
    )
