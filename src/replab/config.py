"""params.yaml: one section per paper plus shared ones, validated before any work starts.

An unknown key, a typo, a wrong type or an out-of-range value raises :class:`ParamsError` naming the
key (as a dotted path) and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PARAMS_FILE = Path("params.yaml")


# tiny: tests and CI, the whole pipeline in minutes; laptop: the default, a 2-core CPU; paper: GPU sizes.
Profile = Literal["tiny", "laptop", "paper"]
PROFILES: tuple[str, ...] = get_args(Profile)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _require_every_profile(scale: dict) -> None:
    missing = sorted(set(PROFILES) - set(scale))
    if missing:
        raise ValueError(f"scale needs an entry for every profile; missing {missing}")


class SpcaScale(Strict):
    """Sizes of the Schrödinger PCA experiments; the profile picks one set."""

    sweep_grid: int = Field(ge=15, le=401, description="side of the 2-D grid in the anchor-spacing sweep")
    sweep_samples: int = Field(ge=50, description="fields sampled per sweep cell")
    oscillator_grid: int = Field(ge=21, le=2001, description="side of the harmonic-oscillator grid")
    icosphere_subdivisions: int = Field(ge=1, le=7)
    line_points: int = Field(ge=50, description="points of the 1-D GP")
    line_samples: int = Field(ge=20)


class SchrodingerPcaParams(Strict):
    n_components: int = Field(ge=1, le=50)
    anchor_spacing: int = Field(ge=2, le=20, description="anchor spacing of the undersampled variances, px")
    interpolation: str = Field(pattern="^(linear|cubic)$")
    degeneracy_tol: float = Field(ge=0.0, le=0.2, description="widen true subspaces over levels this close (x top eigenvalue)")
    sweep_anchor_spacings: list[int] = Field(min_length=1)
    sweep_filter_widths: list[float] = Field(min_length=1)
    oscillator_c: float = Field(gt=0)
    oscillator_radius_fraction: float = Field(gt=0.5, le=20, description="R of 1 - r^2/R^2 over the grid side")
    scale: dict[Profile, SpcaScale]

    @model_validator(mode="after")
    def _checks(self):
        _require_every_profile(self.scale)
        if any(s < 2 for s in self.sweep_anchor_spacings):
            raise ValueError("sweep_anchor_spacings must all be >= 2")
        if any(w <= 0 for w in self.sweep_filter_widths):
            raise ValueError("sweep_filter_widths must all be positive")
        return self


ClusteringDataset = Literal[
    "digits", "iris", "wine", "breast_cancer", "blobs", "moons", "anisotropic_blobs", "wordnet_minilm"
]


class PacScale(Strict):
    """Sizes of the PAC / DPAC experiments; the profile picks one set."""

    n_seeds: int = Field(ge=1, le=50, description="seeds per (method, data set); the paper-style table wants >= 5")
    synthetic_samples: int = Field(ge=30)
    wordnet_per_class: int = Field(ge=5, description="glosses per supersense class")
    dpac_subset: int = Field(ge=0, description="digits used for DPAC (0: all 1,797)")
    dpac_warmup_epochs: int = Field(ge=0)
    dpac_epochs: int = Field(ge=1)


class PacParams(Strict):
    datasets: list[ClusteringDataset] = Field(min_length=1)
    m_grid: list[float] = Field(min_length=1, description="fuzzifiers for the m-sensitivity sweep (each > 1)")
    wordnet_classes: int = Field(ge=2, le=26)
    dpac_batch_size: int = Field(ge=8)
    dpac_lr: float = Field(gt=0, le=1)
    dpac_m: float = Field(gt=1, le=2)
    dpac_temperature: float = Field(gt=0)
    cifar10_root: str = Field(description="CIFAR-10 folder for the paper profile (used only if present)")
    scale: dict[Profile, PacScale]

    @model_validator(mode="after")
    def _checks(self):
        _require_every_profile(self.scale)
        if any(m <= 1 for m in self.m_grid):
            raise ValueError("m_grid values must all be > 1")
        return self


class EdgeDevice(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    cpu_share: float = Field(gt=0, le=64, description="cores (0.25 = a quarter of one core)")
    memory_mb: int = Field(gt=0)
    bandwidth_mbit: float = Field(gt=0)
    profile: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="profiles/<profile>.yaml: its measured layer times")


class AcceptScale(Strict):
    n_blocks: int = Field(ge=1, le=48)
    d_model: Literal[32, 64, 128] = Field(description="a width the shipped profiles measured")
    seq_len: Literal[16, 64]
    batch: int = Field(ge=2)
    steps: int = Field(ge=3)


class AcceptParams(Strict):
    bits: Literal[2, 4, 8]
    n_microbatches: Literal[1, 4] = Field(description="micro-batch = batch / n_microbatches must be a profiled batch (4 or 16)")
    lr: float = Field(gt=0, le=1)
    devices: list[EdgeDevice] = Field(min_length=2)
    known_profiles: list[str] = Field(min_length=1)
    unseen_profile: str
    measurements: list[int] = Field(min_length=1)
    compression_numel: int = Field(ge=1000)
    scale: dict[Profile, AcceptScale]

    @model_validator(mode="after")
    def _checks(self):
        _require_every_profile(self.scale)
        if sum(d.cpu_share for d in self.devices) > 64:
            raise ValueError("devices ask for more cores than any machine here has")
        for name, sc in self.scale.items():
            if sc.batch % self.n_microbatches or sc.batch // self.n_microbatches not in (4, 16):
                raise ValueError(f"scale.{name}: batch / n_microbatches must be 4 or 16 (the profiled micro-batches)")
            if sc.n_blocks + 2 < len(self.devices):
                raise ValueError(f"scale.{name}: {sc.n_blocks + 2} layers cannot fill {len(self.devices)} stages")
        return self


class Params(Strict):
    profile: Profile
    seed: int = Field(ge=0, le=2**32 - 1)
    schrodinger_pca: SchrodingerPcaParams
    pac: PacParams
    accept: AcceptParams


class ParamsError(ValueError):
    """params.yaml does not match the schema; the message lists every offending key."""


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key (typo?)"
    if kind == "missing":
        return f"{key}: required key is missing"
    got = error.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{key}: {error['msg']}{got_text}"


def validate(raw: Any, source: str = "params") -> Params:
    """Validate a parsed params mapping."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = "\n".join(f"  - {_describe(e)}" for e in exc.errors())
        raise ParamsError(f"{source} is invalid:\n{lines}") from None


def load(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found: run from the repository root")
    with path.open() as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    return validate(raw, str(path))


def notebook_parameters(params: Params, section: str) -> dict[str, Any]:
    """Flat papermill parameters for one paper: shared keys, the section's keys, and the scale for the
    active profile (its keys merged in)."""
    body = getattr(params, section).model_dump(mode="json")
    scale = body.pop("scale", None)
    out: dict[str, Any] = {"profile": params.profile, "seed": params.seed, **body}
    if scale is not None:
        out.update(scale[params.profile])
    return out
