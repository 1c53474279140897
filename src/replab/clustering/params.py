"""params.yaml section ``pac``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..schema import Profile, Strict, require_every_profile

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
    simclr_epochs: int = Field(ge=1, description="SimCLR epochs of the frozen digits encoder (frozen-feature DPAC)")
    frozen_epochs_cap: int = Field(ge=0, description="caps each frozen-feature setting's epochs (0: no cap)")


class FrozenSetting(Strict):
    """One DPAC-on-frozen-features setting: which frozen features, which views, the heads' hyper-parameters."""

    name: str = Field(min_length=1)
    features: Literal["wordnet_minilm", "digits_simclr"]
    views: Literal["noise", "neighbours"]
    noise: float = Field(ge=0)
    dropout: float = Field(ge=0, lt=1)
    n_neighbours: int = Field(ge=1)
    target_features: Literal["frozen", "trunk"]
    hidden_dim: int = Field(ge=2)
    warmup_epochs: int = Field(ge=0)
    epochs: int = Field(ge=1)
    lr: float = Field(gt=0, le=1)


class FrozenParams(Strict):
    """DPAC heads on frozen encoder features; every setting is fixed before the headline run, chosen on
    ``selection_seeds`` (never the reported seeds)."""

    selection_seeds: list[int] = Field(min_length=1)
    simclr_augment_strength: float = Field(gt=0, le=3)
    settings: list[FrozenSetting] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self):
        names = [s.name for s in self.settings]
        if len(set(names)) != len(names):
            raise ValueError(f"setting names must be unique, got {names}")
        return self


class PacParams(Strict):
    datasets: list[ClusteringDataset] = Field(min_length=1)
    m_grid: list[float] = Field(min_length=1, description="fuzzifiers for the m-sensitivity sweep (each > 1)")
    wordnet_classes: int = Field(ge=2, le=26)
    dpac_batch_size: int = Field(ge=8)
    dpac_lr: float = Field(gt=0, le=1)
    dpac_m: float = Field(gt=1, le=2)
    dpac_temperature: float = Field(gt=0)
    cifar10_root: str = Field(description="CIFAR-10 folder for the paper profile (used only if present)")
    frozen: FrozenParams
    scale: dict[Profile, PacScale]

    @model_validator(mode="after")
    def _checks(self):
        require_every_profile(self.scale)
        if any(m <= 1 for m in self.m_grid):
            raise ValueError("m_grid values must all be > 1")
        return self
