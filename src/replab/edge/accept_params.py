"""params.yaml section ``accept`` (AccEPT on the edge engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..schema import Profile, Strict, require_every_profile

# The emulator's CFS period is 10 ms and the kernel rejects a quota under 1 ms.
MIN_CPU_SHARE = 0.1


class EdgeDevice(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    cpu_share: float = Field(
        ge=MIN_CPU_SHARE, le=64, description="cores (0.25 = a quarter of one core; >= 0.1, a 1 ms quota)"
    )
    memory_mb: int = Field(gt=0)
    bandwidth_mbit: float = Field(gt=0)
    profile: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="profiles/<profile>.yaml: its measured layer times")


class AcceptScale(Strict):
    n_blocks: int = Field(ge=1, le=48)
    d_model: Literal[32, 64, 128] = Field(description="a width the shipped profiles measured")
    seq_len: Literal[16, 64]
    batch: int = Field(ge=2)
    steps: int = Field(ge=3)
    repeats: int = Field(ge=1, le=20, description="end-to-end runs per arm, interleaved (median and spread)")
    target_loss: float = Field(
        gt=0, description="the fixed loss of 'time to loss' (3-step mean), set before the run, never from it"
    )


class AcceptParams(Strict):
    bits: Literal[2, 4, 8]
    n_microbatches: Literal[1, 4] = Field(
        description="micro-batch = batch / n_microbatches must be a profiled batch (4 or 16)"
    )
    lr: float = Field(gt=0, le=1)
    devices: list[EdgeDevice] = Field(min_length=2)
    known_profiles: list[str] = Field(min_length=1)
    unseen_profile: str
    measurements: list[int] = Field(min_length=1)
    headline_measurements: int = Field(ge=0, description="the predictor headline: after this many measurements")
    compression_numel: int = Field(ge=1000)
    scale: dict[Profile, AcceptScale]

    @model_validator(mode="after")
    def _checks(self):
        require_every_profile(self.scale)
        if self.headline_measurements not in self.measurements:
            raise ValueError(f"headline_measurements ({self.headline_measurements}) must be one of measurements")
        if sum(d.cpu_share for d in self.devices) > 64:
            raise ValueError("devices ask for more cores than any machine here has")
        for name, sc in self.scale.items():
            if sc.batch % self.n_microbatches or sc.batch // self.n_microbatches not in (4, 16):
                raise ValueError(f"scale.{name}: batch / n_microbatches must be 4 or 16 (the profiled micro-batches)")
            if sc.n_blocks + 2 < len(self.devices):
                raise ValueError(f"scale.{name}: {sc.n_blocks + 2} layers cannot fill {len(self.devices)} stages")
        return self

    def check_files(self, root: Path) -> list[str]:
        """Every device profile named here must exist under profiles/."""
        folder = root / "profiles"
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        named = [(f"accept.devices.{i}.profile", d.profile) for i, d in enumerate(self.devices)]
        named += [(f"accept.known_profiles.{i}", p) for i, p in enumerate(self.known_profiles)]
        named.append(("accept.unseen_profile", self.unseen_profile))
        return [
            f"{key}: no profile {name!r} in profiles/ (known: {', '.join(known) or 'none'})"
            for key, name in named
            if name not in known
        ]
