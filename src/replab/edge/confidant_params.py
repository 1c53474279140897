"""params.yaml section ``confidant`` (Confidant on the edge engine)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..schema import Profile, Strict, require_every_profile
from .emulate import MIN_CPU_SHARE


class DeviceKind(Strict):
    """The one kind of device the model is split over (a phone-like edge device)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    cpu_share: float = Field(ge=MIN_CPU_SHARE, le=64, description="cores of one device")
    memory_mb: int = Field(gt=0, description="the device's memory: its cgroup cap, and the partitioner's capacity")
    bandwidth_mbit: float = Field(gt=0)


class ConfidantScale(Strict):
    n_blocks: int = Field(ge=1, le=48)
    d_model: int = Field(ge=8)
    n_heads: int = Field(ge=1)
    vocab: int = Field(ge=300, description="BPE vocabulary trained on the glosses (a cached checkpoint brings its own)")
    seq_len: int = Field(ge=8, le=1024)
    batch: int = Field(ge=1)
    n_microbatches: int = Field(ge=1)
    steps: int = Field(ge=2, description="training steps of the single-device and headline runs (the loss curves)")
    memory_steps: int = Field(ge=2, description="steps of the other device counts (Adam's moments exist from step 2)")
    device_counts: list[int] = Field(min_length=1, description="pipelines measured besides the single device")
    emulate: bool = Field(description="run on the emulated cluster (needs root); false: loopback, no caps")
    head_batch: int = Field(ge=1)
    head_seq_len: int = Field(ge=8)
    head_rounds: int = Field(ge=3, description="interleaved repeats of the head-schedule timing (median, spread)")
    head_iters: int = Field(ge=1)


class ConfidantParams(Strict):
    lr: float = Field(gt=0, le=1)
    schedule: Literal["gpipe", "1f1b"]
    lora_rank: int = Field(ge=1, description="rank of the LoRA (PEFT) row of the memory table")
    pretrained: str | None = Field(
        description="a GPT-2 checkpoint (hub name or folder) used only where cached locally; else scratch training"
    )
    targets: list[str] = Field(
        default_factory=list,
        description="SSH targets (`replab target list`) to run the headline split across, one per stage; [] for none",
    )
    memory_tolerance: float = Field(gt=0, lt=1, description="the memory model's allowed error against VmHWM")
    headline_devices: int = Field(ge=2)
    device: DeviceKind
    scale: dict[Profile, ConfidantScale]

    @model_validator(mode="after")
    def _checks(self):
        require_every_profile(self.scale)
        for name, sc in self.scale.items():
            if self.headline_devices not in sc.device_counts:
                raise ValueError(f"scale.{name}.device_counts must include headline_devices ({self.headline_devices})")
            if max(sc.device_counts) > sc.n_blocks + 2 or min(sc.device_counts) < 2:
                raise ValueError(f"scale.{name}.device_counts: between 2 and {sc.n_blocks + 2} (the layers)")
            if self.schedule == "1f1b" and sc.n_microbatches < max(sc.device_counts):
                most = max(sc.device_counts)
                raise ValueError(f"scale.{name}: 1F1B needs n_microbatches >= the most devices ({most})")
            if sc.batch % sc.n_microbatches:
                raise ValueError(f"scale.{name}: batch must be a multiple of n_microbatches")
            if sc.d_model % sc.n_heads:
                raise ValueError(f"scale.{name}: d_model must be a multiple of n_heads")
        return self
