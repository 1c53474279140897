"""Device profiles: per-layer forward/backward latency, memory, link and CPU share of one device, as YAML.

The predictor and the partitioner read these; :func:`measure_layers` fills them on the current machine
(and, later, on attached devices over SSH).
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LayerRecord(_Strict):
    """One layer's features (what the latency predictor sees) and its measured times."""

    name: str
    type: str  # module class: Linear, Conv2d, MultiheadAttention, LayerNorm, ...
    in_features: int = Field(ge=0)
    out_features: int = Field(ge=0)
    seq_len: int = Field(ge=1)
    batch: int = Field(ge=1)
    flops: float = Field(ge=0, description="forward FLOPs (torch.utils.flop_counter)")
    bytes: float = Field(ge=0, description="parameter + input + output bytes")
    forward_ms: float | None = Field(default=None, ge=0)
    backward_ms: float | None = Field(default=None, ge=0)


class Link(_Strict):
    bandwidth_mbit: float = Field(gt=0)
    delay_ms: float = Field(ge=0)


class DeviceProfile(_Strict):
    name: str
    kind: Literal["measured", "published"]
    source: str = Field(min_length=1, description="where the numbers come from")
    cpu_share: float = Field(gt=0, description="cores available (0.5 = half a core)")
    memory_mb: float = Field(gt=0)
    gflops: float = Field(gt=0, description="sustained fp32 GFLOP/s of a matrix product on this device")
    link: Link
    layers: list[LayerRecord] = Field(default_factory=list)

    def descriptor(self) -> list[float]:
        """The device features the latency predictor conditions on."""
        return [self.cpu_share, self.gflops, self.memory_mb / 1024]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> DeviceProfile:
        raw = yaml.safe_load(Path(path).read_text())
        try:
            return cls.model_validate(raw)
        except Exception as exc:
            raise ValueError(f"{path}: not a valid device profile: {exc}") from None


def _features(module, x, y) -> tuple[int, int, int, int]:
    batch = x.shape[0]
    seq = x.shape[1] if x.ndim == 3 else 1
    return int(x.shape[-1]), int(y.shape[-1]), int(seq), int(batch)


def measure_layers(layers, example, repeats: int = 5, names: list[str] | None = None) -> list[LayerRecord]:
    """Forward and backward time of each module of ``layers`` (applied in sequence to ``example``), median of
    ``repeats``; FLOPs from torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    records = []
    x = example
    for idx, layer in enumerate(layers):
        x = x.detach().requires_grad_(x.is_floating_point())
        with FlopCounterMode(display=False) as counter:
            y = layer(x)
        flops = float(counter.get_total_flops())
        grad = torch.ones_like(y)
        fwd, bwd = [], []
        for _ in range(repeats + 1):  # the first round warms caches and allocators, and is dropped
            start = time.perf_counter()
            y = layer(x)
            mid = time.perf_counter()
            if y.requires_grad:
                torch.autograd.grad(y, [x] + [p for p in layer.parameters() if p.requires_grad], grad, allow_unused=True)
            end = time.perf_counter()
            fwd.append(mid - start)
            bwd.append(end - mid)
        fwd, bwd = fwd[1:], bwd[1:]
        params = sum(p.numel() * p.element_size() for p in layer.parameters())
        nbytes = params + x.numel() * x.element_size() + y.numel() * y.element_size()
        fin, fout, seq, batch = _features(layer, x, y)
        records.append(LayerRecord(
            name=names[idx] if names else f"{idx}", type=type(layer).__name__, in_features=fin, out_features=fout,
            seq_len=seq, batch=batch, flops=flops, bytes=float(nbytes),
            forward_ms=1e3 * sorted(fwd)[len(fwd) // 2], backward_ms=1e3 * sorted(bwd)[len(bwd) // 2],
        ))  # fmt: skip
        x = y.detach()
    return records


def matmul_gflops(size: int = 512, repeats: int = 5) -> float:
    """Sustained fp32 GFLOP/s of a square matrix product here (the device descriptor's speed figure)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def this_machine(name: str, cpu_share: float, memory_mb: float, link: Link, layers: list[LayerRecord]) -> DeviceProfile:
    return DeviceProfile(
        name=name, kind="measured", source=f"measured with replab.edge.profiles on {platform.machine()} ({platform.processor() or 'cpu'})",
        cpu_share=cpu_share, memory_mb=memory_mb, gflops=matmul_gflops(), link=link, layers=layers,
    )  # fmt: skip
