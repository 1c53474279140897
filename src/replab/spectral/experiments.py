"""The paper's experiments as functions: the notebook calls these, the tests call them small."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA

from .fields import FilteredNoiseField, paraboloid_variance
from .graphs import degeneracy_groups, icosphere_laplacian
from .metrics import orthonormal_rows, overlap_curve, spectrum_error
from .schrodinger_pca import SchrodingerPCA
from .undersampling import anchor_axes, interpolate_to_grid, take_anchors, variances_from_anchors


@dataclass
class MethodResult:
    components: np.ndarray  # (k, n_points), orthonormal rows, best first
    spectrum: np.ndarray  # PCA eigenvalues, or -energies for Schrödinger PCA (only ratios are compared)
    overlap: list[float] = field(default_factory=list)  # degeneracy-aware, k = 1..n
    overlap_strict: list[float] = field(default_factory=list)
    spectrum_error: float = float("nan")
    seconds: float = float("nan")


@dataclass
class UndersamplingResult:
    truth_values: np.ndarray
    truth_components: np.ndarray
    methods: dict[str, MethodResult]
    anchor_variances: np.ndarray  # interpolated to the fine grid
    n_anchors: int


def undersampling_experiment(
    samples: np.ndarray,
    model: FilteredNoiseField,
    anchor_spacing: int,
    n_components: int = 10,
    interpolation: str = "cubic",
    degeneracy_tol: float = 0.02,
    methods: tuple[str, ...] = ("fine_pca", "coarse_pca", "spca_l2", "spca_s2"),
    seed: int = 0,
) -> UndersamplingResult:
    """Fine-grid PCA, coarse (anchor) PCA + interpolation, and Schrödinger PCA from the coarse sample
    variances with ``c = l^2`` and ``c = s^2``, all against the exact covariance eigendecomposition.

    Methods: ``fine_pca``, ``coarse_pca`` (modes interpolated with ``interpolation``),
    ``coarse_pca_linear``, ``spca_l2``, ``spca_s2``."""
    shape = model.shape
    n_samples = samples.shape[0]
    flat = samples.reshape(n_samples, -1).astype(np.float64)
    # Spare true components so a degenerate level at k = n_components can be completed.
    truth_values, truth = model.principal_components(min(2 * n_components + 5, flat.shape[1] - 1), seed=seed)
    axes = anchor_axes(shape, anchor_spacing)
    n_anchors = int(np.prod([len(a) for a in axes]))
    if n_anchors <= n_components and any(m.startswith("coarse_pca") for m in methods):
        raise ValueError(
            f"{n_anchors} anchors are too few for PCA with {n_components} components: use a smaller spacing"
        )
    anchors = take_anchors(samples, axes).astype(np.float64)
    variances = variances_from_anchors(anchors.var(axis=0), axes, shape, interpolation)

    out: dict[str, MethodResult] = {}
    for name in methods:
        start = time.perf_counter()
        if name == "fine_pca":
            pca = PCA(n_components, svd_solver="full").fit(flat)
            res = MethodResult(pca.components_, pca.explained_variance_)
        elif name in ("coarse_pca", "coarse_pca_linear"):
            pca = PCA(n_components, svd_solver="full").fit(anchors.reshape(n_samples, -1))
            modes = pca.components_.reshape(n_components, *anchors.shape[1:])
            how = "linear" if name == "coarse_pca_linear" else interpolation
            fine = interpolate_to_grid(modes, axes, shape, how).reshape(n_components, -1)
            res = MethodResult(orthonormal_rows(fine), pca.explained_variance_)
        elif name in ("spca_l2", "spca_s2"):
            length = model.correlation_length
            c = length**2 if name == "spca_l2" else model.filter_width**2
            spca = SchrodingerPCA(n_components, length, c=c, random_state=seed).fit(variances)
            res = MethodResult(spca.components_, -spca.energies_)
        else:
            raise ValueError(f"unknown method {name!r}")
        res.seconds = time.perf_counter() - start
        ks = range(1, n_components + 1)
        res.overlap = overlap_curve(res.components, truth, ks, truth_values, degeneracy_tol)
        res.overlap_strict = overlap_curve(res.components, truth, ks)
        res.spectrum_error = spectrum_error(res.spectrum, truth_values[:n_components])
        out[name] = res
    return UndersamplingResult(truth_values, truth, out, variances, n_anchors)


def spacing_sweep(
    grid: int,
    n_samples: int,
    spacings: list[int],
    filter_widths: list[float],
    n_components: int = 10,
    interpolation: str = "cubic",
    degeneracy_tol: float = 0.02,
    seed: int = 0,
    progress: bool = True,
) -> list[dict]:
    """Mean top-k overlap of coarse PCA and Schrödinger PCA over anchor spacing x correlation length."""
    from ..progress import tqdm

    rows = []
    rng = np.random.default_rng(seed)
    cells = [(w, s) for w in filter_widths for s in spacings]
    cache: dict[float, tuple] = {}
    for width, spacing in tqdm(cells, desc="spacing sweep", disable=not progress):
        if width not in cache:
            model = FilteredNoiseField(paraboloid_variance((grid, grid)), width)
            cache = {width: (model, model.sample(n_samples, rng))}
        model, samples = cache[width]
        anchors_per_axis = (grid - 1) // spacing + 1
        if anchors_per_axis < 2:
            continue
        # PCA on the anchors needs more anchor points than components.
        methods = ("coarse_pca", "spca_l2") if anchors_per_axis**2 > n_components else ("spca_l2",)
        res = undersampling_experiment(
            samples, model, spacing, n_components, interpolation, degeneracy_tol, methods, seed
        )
        for name, r in res.methods.items():
            rows.append(
                {
                    "filter_width": width,
                    "correlation_length": model.correlation_length,
                    "anchor_spacing": spacing,
                    "spacing_over_length": spacing / model.correlation_length,
                    "method": name,
                    "mean_overlap": float(np.mean(r.overlap)),
                    "min_overlap": float(np.min(r.overlap)),
                }
            )
    return rows


@dataclass
class OscillatorResult:
    grid: int
    radius: float
    c: float
    omega: float  # predicted level spacing sqrt(2c)/R
    energies: np.ndarray
    predicted: np.ndarray  # -1 + omega (n + 1) for each computed state, levels filled in order
    levels: list[int]  # observed degeneracies of the complete levels
    components: np.ndarray  # (k, grid, grid)
    hermite_overlap: list[float]  # |<mode, analytic Hermite product>|^2 for the non-degenerate and level means


def harmonic_oscillator_check(grid: int, c: float, radius_fraction: float, n_levels: int = 4) -> OscillatorResult:
    """``variance = 1 - r^2/R^2`` makes H a 2-D harmonic oscillator: energies ``-1 + omega (n + 1)`` with
    ``omega = sqrt(2 c) / R`` and degeneracies ``n + 1``; the modes are Hermite functions."""
    from numpy.polynomial.hermite import hermval

    radius = radius_fraction * grid
    axis = np.arange(grid) - (grid - 1) / 2
    r2 = axis[:, None] ** 2 + axis[None, :] ** 2
    variance = 1.0 - r2 / radius**2
    if variance.min() <= 0:
        raise ValueError("radius_fraction too small: the variance must stay positive on the grid")
    n_states = n_levels * (n_levels + 1) // 2
    k = n_states + n_levels + 1  # one more (partial) level so the last complete one is not cut
    spca = SchrodingerPCA(k, correlation_length=math.sqrt(c), c=c).fit(variance)
    omega = math.sqrt(2 * c) / radius
    quantum = np.concatenate([[n] * (n + 1) for n in range(n_levels + 1)])[:k]
    predicted = -1.0 + omega * (quantum + 1)
    levels = degeneracy_groups(spca.energies_, rel_tol=0.25 * omega / (spca.energies_[-1] - spca.energies_[0]))

    # Analytic modes: H = -(c/2) Lap + r^2/R^2 - 1 near the centre, mass 1/c, m*omega = sqrt(2/c)/R.
    alpha = math.sqrt(math.sqrt(2.0 / c) / radius)

    def hermite(n):  # noqa: E306
        return hermval(alpha * axis, [0] * n + [1]) * np.exp(-0.5 * (alpha * axis) ** 2)

    overlaps, start = [], 0
    comps = spca.components_
    for n in range(n_levels):
        analytic = np.stack([np.outer(hermite(i), hermite(n - i)).ravel() for i in range(n + 1)])
        analytic = orthonormal_rows(analytic)
        block = comps[start : start + n + 1]
        overlaps.append(float(np.sum((block @ analytic.T) ** 2) / (n + 1)))
        start += n + 1
    return OscillatorResult(
        grid, radius, c, omega, spca.energies_, predicted, levels[:n_levels], spca.components_grid_, overlaps
    )


@dataclass
class SphereResult:
    subdivisions: int
    kind: str
    n_vertices: int
    energies: np.ndarray
    levels: list[int]
    vertices: np.ndarray
    components: np.ndarray


def icosphere_check(
    subdivisions: int, kind: str = "cotangent", n_components: int = 20, correlation_length: float = 1.0
) -> SphereResult:
    """Constant variance on a sphere: the modes are spherical harmonics, multiplicities 1, 3, 5, 7, ...
    ``kind`` picks the Laplacian (:func:`~replab.spectral.graphs.icosphere_laplacian`);
    ``correlation_length`` is in mean edge lengths for both."""
    vertices, lap = icosphere_laplacian(subdivisions, kind)
    length = correlation_length
    if kind == "cotangent":  # the cotangent Laplacian works in the sphere's units (radius 1)
        coo = sp.coo_matrix(lap)
        length *= float(np.mean(np.linalg.norm(vertices[coo.row] - vertices[coo.col], axis=1)[coo.row != coo.col]))
    spca = SchrodingerPCA(n_components, correlation_length=length).fit(np.ones(len(vertices)), laplacian=lap)
    e = spca.energies_
    gap = e[1] - e[0]  # the l = 0 -> 1 gap, the smallest between true levels
    levels = degeneracy_groups(e, rel_tol=0.2 * gap / (e[-1] - e[0]))
    return SphereResult(subdivisions, kind, len(vertices), e, levels[:-1], vertices, spca.components_)


def line_gp(
    points: int,
    n_samples: int,
    filter_width: float,
    n_components: int = 10,
    anchor_spacing: int = 6,
    interpolation: str = "cubic",
    degeneracy_tol: float = 0.02,
    seed: int = 0,
) -> UndersamplingResult:
    """The same comparison for a 1-D Gaussian process with variance ``1 - x^2/R^2``."""
    model = FilteredNoiseField(paraboloid_variance((points,)), filter_width)
    samples = model.sample(n_samples, np.random.default_rng(seed))
    return undersampling_experiment(
        samples, model, anchor_spacing, n_components, interpolation, degeneracy_tol, seed=seed
    )
