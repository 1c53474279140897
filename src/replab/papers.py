"""The paper registry: each paper is declared once, here.

An entry names the paper's params model (in its own package), the data sets and library code its stage reads,
whether it writes checkpoints, and the curves it plots. ``dvc.yaml`` is generated from this list
(``replab pipeline generate``), ``config.Params`` combines the params models, and the reports take titles,
citations and key figures from it. Adding a paper: see "Adding a paper" in the README.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pydantic import BaseModel

# Library modules every paper stage runs through (written once; each stage depends on them).
SHARED_CODE: tuple[str, ...] = (
    "schema.py",
    "config.py",
    "pipeline.py",
    "nbtools.py",
    "claims.py",
    "measure.py",
    "progress.py",
    "data/arrays.py",
)


# AccEPT's part of the edge engine package.
EDGE_ACCEPT = (
    "__init__",
    "accept_params",
    "accept_headline",
    "experiments",
    "ablation",
    "planner",
    "latency",
    "partition",
    "pipeline",
    "profiles",
    "compression",
    "emulate",
    "models",
    "layer_timing",
)

# The stage-boundary codec the edge pipeline imports (the fused C kernel, its Triton twin).
EDGE_CODEC_KERNELS = (
    "kernels/__init__.py",
    "kernels/_compression_triton.py",
    "kernels/cpu_codec.py",
    "kernels/_codec.c",
)

# Confidant's part of the edge engine package.
EDGE_CONFIDANT = (
    "__init__",
    "confidant",
    "confidant_params",
    "confidant_headline",
    "llm",
    "memory_model",
    "heads",
    "head_exec",
    "pipeline",
    "emulate",
    "partition",
    "models",
    "compression",
    "profiles",
    "layer_timing",
)
# The head scheduler's committed measurements on a GPU machine, which the notebook shows beside this run's.
CONFIDANT_GPU_RESULTS = tuple(
    f"benchmarks/results/confidant_heads_h200_{name}.json" for name in ("cuda", "cuda_s2048", "cpu16")
)

# FeDeRA's stage modules of the federated package.
FEDERA_STAGE = ("__init__", "params", "headline", "experiment", "flower", "methods", "data", "aggregate")
# Library modules no stage runs (deployment on real devices): changing them cannot change a stage's results.
OUTSIDE_STAGES = ("federated/deploy.py", "federated/supernode.py")


@dataclass(frozen=True)
class Plot:
    """A curve file ``metrics/plots/<paper>/<name>.csv`` the notebook writes, shown by ``dvc plots``."""

    name: str
    x: str
    y: tuple[str, ...]
    title: str
    template: str = "linear"


@dataclass(frozen=True)
class Paper:
    key: str  # params.yaml section, notebook, stage, metrics and report name
    title: str
    citation: str
    params_model: str  # "module:Class" of its params.yaml section
    code: tuple[str, ...]  # its library code under src/replab (its package first)
    data: tuple[str, ...] = ()  # data sets under data/ (names in replab.data.build.DATASETS)
    deps: tuple[str, ...] = ()  # other project files it reads
    param_deps: str = ""  # method of its params section listing files it reads that params choose (profiles)
    checkpoints: bool = False  # writes models/<key>/ (a DVC out, pushed to the remote)
    logs: bool = False  # writes metrics/logs/<key>/ (e.g. each pipeline rank's log; a DVC out, not in git)
    plots: tuple[Plot, ...] = ()
    key_figure: str = ""  # reports/figures/<key>/<key_figure>.png, shown on the index

    def params(self) -> type[BaseModel]:
        module, _, name = self.params_model.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def notebook(self) -> Path:
        return Path("notebooks") / f"{self.key}.ipynb"


PAPERS: dict[str, Paper] = {
    p.key: p
    for p in [
        Paper(
            key="schrodinger_pca",
            title="Schrödinger PCA",
            citation="Liu, Qian, Wang, Yan, Yang. Schrödinger PCA: on the duality between PCA and Schrödinger "
            "equation. Phys. Rev. E 104, 025307 (2021), arXiv:2006.04379",
            params_model="replab.spectral.params:SchrodingerPcaParams",
            code=("spectral",),
            data=("gp_fields",),
            deps=("benchmarks/results/spca_solver_2d_cpu.json",),  # the solver at 10^6 points, a committed run
            plots=(
                Plot("overlap", "k", ("spca_l2", "spca_s2", "coarse_pca", "fine_pca"), "Top-k overlap with the truth"),
                Plot("spectrum", "k", ("truth", "spca_l2", "spca_s2", "fine_pca"), "Relative spectrum λ_k / λ_1"),
            ),
            key_figure="overlap_and_spectrum",
        ),
        Paper(
            key="pac",
            title="PAC / DPAC: probability aggregation clustering",
            citation="Yan, Lu, Yan. Deep Online Probability Aggregation Clustering. ECCV 2024, arXiv:2407.05246",
            params_model="replab.clustering.params:PacParams",
            code=("clustering", "kernels/__init__.py", "kernels/pac_aggregate.py", "kernels/_pac_aggregate_triton.py"),
            data=("sklearn", "wordnet"),
            checkpoints=True,
            plots=(
                Plot("dpac_training", "epoch", ("loss", "kl", "info_nce"), "DPAC training loss (digits)"),
                Plot("m_sensitivity", "m", ("acc", "nmi", "ari"), "PAC on digits: scores vs m"),
            ),
            key_figure="robustness_m_objective",
        ),
        Paper(
            key="accept",
            title="AccEPT: edge pipeline-parallel training (reconstruction)",
            citation="AccEPT: An Acceleration Scheme for Speeding Up Edge Pipeline-parallel Training. "
            "arXiv:2311.05827, IEEE TMC 2024",
            params_model="replab.edge.accept_params:AcceptParams",
            # Its modules of the shared edge engine (Confidant's own modules there do not make it stale).
            code=tuple(f"edge/{m}.py" for m in EDGE_ACCEPT) + EDGE_CODEC_KERNELS,
            param_deps="profile_files",
            plots=(
                Plot(
                    "losses",
                    "step",
                    ("baseline", "compression_only", "partition_only", "accept", "pipeedge", "control_2bit"),
                    "Training loss per step (links all 20 Mbit/s, seed 0)",
                ),
                Plot(
                    "predictor",
                    "measurements",
                    ("layer_within_10pct", "within_10pct"),
                    "Predictor on the unseen device",
                ),
            ),
            key_figure="end_to_end",
            logs=True,
        ),
        Paper(
            key="confidant",
            title="Confidant: LLM customisation across memory-limited edge devices (reconstruction)",
            citation="Confidant: Customizing Transformer-based LLMs via Collaborative Edge Training. "
            "arXiv:2311.13381 (HotMobile 2024 submission)",
            params_model="replab.edge.confidant_params:ConfidantParams",
            # pipeline.py imports the boundary codec (unused here: Confidant sends fp32).
            code=tuple(f"edge/{m}.py" for m in EDGE_CONFIDANT)
            + EDGE_CODEC_KERNELS
            + ("targets",),  # runs the headline split across SSH targets where confidant.targets names some
            data=("wordnet",),
            deps=CONFIDANT_GPU_RESULTS,
            plots=(Plot("losses", "step", ("single", "pipeline"), "Training loss per step (same data, seed 0)"),),
            key_figure="memory_per_device",
            logs=True,
        ),
        Paper(
            key="federa",
            title="FeDeRA: federated fine-tuning with SVD-initialised LoRA",
            citation="Yan, Tang, Shi, Yang. FeDeRA: Efficient Fine-tuning of Language Models in Federated Learning "
            "Leveraging Weight Decomposition. arXiv:2404.18848",
            params_model="replab.federated.params:FederaParams",
            # The stage's modules (deployment and SSH SuperNodes do not make it stale).
            code=tuple(f"federated/{m}.py" for m in FEDERA_STAGE),
            data=("wordnet",),
            plots=(Plot("accuracy", "round", ("federa", "lora", "olora", "fft"), "Test accuracy per round (seed 0)"),),
            key_figure="accuracy_vs_rounds",
        ),
        Paper(
            key="idsynth",
            title="FaceStudio: identity-preserving synthesis with hybrid guidance",
            citation="Yan, Zhang, et al. FaceStudio: Put Your Face Everywhere in Seconds. arXiv:2312.02663 (2023)",
            params_model="replab.diffusion.params:IdsynthParams",
            code=("diffusion",),
            data=("portraits",),
            checkpoints=True,
            plots=(
                Plot("alpha_sweep", "alpha", ("top1", "style"), "Hybrid guidance: image (1) to text (0)"),
                Plot("beta_sweep", "beta", ("cos_a", "cos_b", "closer_to_a"), "Identity blending A (1) to B (0)"),
            ),
            key_figure="samples",
        ),
    ]
}


class UnknownPaper(ValueError):
    """A paper name that the registry does not know."""


def get(key: str) -> Paper:
    if key not in PAPERS:
        raise UnknownPaper(f"unknown paper {key!r}; known: {', '.join(sorted(PAPERS))}")
    return PAPERS[key]


@cache
def params_models() -> dict[str, type[BaseModel]]:
    return {key: paper.params() for key, paper in PAPERS.items()}
