"""params.yaml section ``accept`` (AccEPT on the edge engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..schema import Profile, Strict, require_every_profile
from .emulate import MIN_CPU_SHARE


class EdgeDevice(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    cpu_share: float = Field(
        ge=MIN_CPU_SHARE, le=64, description="cores (0.25 = a quarter of one core; >= 0.1, a 1 ms quota)"
    )
    memory_mb: int = Field(gt=0, description="cgroup memory cap; the planner gives layers this less runtime_mb")
    profile: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$", description="profiles/<profile>.yaml: the layer times of its device class"
    )
    target: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$",
        description="a target in targets.run_on: its measured profiles/<target>.yaml replaces `profile` in planning",
    )


def profiles_used(devices: list[dict], known: list[str], unseen: str) -> list[str]:
    """Every profile the stage reads: each device's class estimate and, where it names a target, the profile
    measured there; the predictor's known and unseen devices."""
    names = {d["profile"] for d in devices} | {d["target"] for d in devices if d.get("target")}
    return sorted(names | set(known) | {unseen})


class AcceptScale(Strict):
    n_blocks: int = Field(ge=1, le=48)
    d_model: Literal[32, 64, 128] = Field(description="a width the shipped profiles measured")
    seq_len: Literal[16, 64]
    batch: int = Field(ge=2)
    steps: int = Field(ge=5)
    repeats: int = Field(ge=1, le=20, description="seeds 0..repeats-1, the same in every arm; arms interleaved")
    target_loss: float = Field(
        gt=0,
        description="the fixed loss of 'time to loss' (3-step mean), set from a pilot run before the reported runs",
    )
    links_run: list[str] = Field(min_length=1, description="which of accept.link_settings run at this scale")
    emulate: bool = Field(description="run on the emulated cluster (needs root); false: loopback, timings not judged")
    noise_repeats: int = Field(ge=2, le=20, description="repeat measurements of the same layers (the noise floor)")
    noise_configs: int = Field(ge=1, description="layer configurations measured for the noise floor")


HEADLINE_LINKS = "all_20"  # the paper's setting for the headline speed-ups: every link at 20 Mbit/s


class AcceptParams(Strict):
    bits: Literal[4, 8]
    n_microbatches: Literal[1, 4] = Field(
        description="micro-batch = batch / n_microbatches must be a profiled batch (4 or 16)"
    )
    lr: float = Field(gt=0, le=1)
    runtime_mb: int = Field(ge=0, description="resident memory of a rank before any layer (torch, gloo)")
    devices: list[EdgeDevice] = Field(min_length=2)
    link_settings: dict[str, list[float]] = Field(description="per setting, each device's link rate in Mbit/s")
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
        if HEADLINE_LINKS not in self.link_settings:
            raise ValueError(f"link_settings needs {HEADLINE_LINKS!r} (the headline setting)")
        for name, rates in self.link_settings.items():
            if len(rates) != len(self.devices) or min(rates) <= 0:
                raise ValueError(f"link_settings.{name}: one positive rate per device ({len(self.devices)})")
        for name, sc in self.scale.items():
            if sc.batch % self.n_microbatches or sc.batch // self.n_microbatches not in (4, 16):
                raise ValueError(f"scale.{name}: batch / n_microbatches must be 4 or 16 (the profiled micro-batches)")
            if sc.n_blocks + 2 < len(self.devices):
                raise ValueError(f"scale.{name}: {sc.n_blocks + 2} layers cannot fill {len(self.devices)} stages")
            unknown = sorted(set(sc.links_run) - set(self.link_settings))
            if unknown or HEADLINE_LINKS not in sc.links_run:
                raise ValueError(f"scale.{name}.links_run: unknown {unknown} or {HEADLINE_LINKS!r} missing")
            if any(d.memory_mb <= self.runtime_mb for d in self.devices):
                raise ValueError("every device needs memory_mb above runtime_mb")
        return self

    def profile_files(self) -> list[str]:
        """The stage's profile dependencies (dvc.yaml), so a profile it does not read never makes it stale."""
        devices = [d.model_dump() for d in self.devices]
        return [f"profiles/{n}.yaml" for n in profiles_used(devices, self.known_profiles, self.unseen_profile)]

    def check_targets(self, run_on: list[str]) -> list[str]:
        """A device measured on a target needs that target's profile stage in the pipeline."""
        return [
            f"accept.devices.{i}.target: {d.target!r} is not in targets.run_on ({', '.join(run_on)}), so no "
            f"stage measures profiles/{d.target}.yaml: add it there"
            for i, d in enumerate(self.devices)
            if d.target and d.target not in run_on
        ]

    def check_files(self, root: Path) -> list[str]:
        """Every device profile named here must exist under profiles/ (a target's is written by its stage)."""
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
