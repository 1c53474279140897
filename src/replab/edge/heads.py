"""Confidant's backend scheduler (a reconstruction from the abstract): the attention heads of one layer split
across heterogeneous backends so that the layer's critical path is shortest.

A backend is a thread pool on a set of CPU cores, or a CUDA device driven from one core. Its per-head latency
table says how long it takes to compute ``h`` heads (``compute_ms[h]``) and to move their inputs in and their
outputs back (``copy_ms[h]``), plus a fixed ``dispatch_ms`` for engaging it at all. Backends that share cores
(or a GPU) cannot run at once, so the scheduler tries every set of disjoint backends and, within each, the
split of the heads that minimises ``max_b(dispatch_b + copy_b(h_b) + compute_b(h_b))`` by dynamic
programming. Running all heads on one backend is one of the candidates, so in its own model the schedule
never loses to the best single backend. Tables are measured by :mod:`.head_exec` or estimated from a device's
published figures (:func:`published_head_profile`); the profile says which.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, model_validator

from .profiles import _Strict


class HeadBackend(_Strict):
    name: str = Field(min_length=1)
    device: str = Field(description='"cpu", or the CUDA device ("cuda:0") the backend computes on')
    cores: list[int] = Field(default_factory=list, description="CPU cores it owns (its thread pool's size)")
    compute_ms: list[float] = Field(description="ms to compute h heads, h = 0..n_heads (entry 0 is 0)")
    copy_ms: list[float] = Field(description="ms to move h heads' inputs in and outputs back, h = 0..n_heads")
    dispatch_ms: float = Field(default=0.0, ge=0, description="fixed cost of engaging the backend")

    def cost_ms(self, h: int) -> float:
        """Time from dispatch until ``h`` heads' outputs are back (0 when it gets no head)."""
        return 0.0 if h == 0 else self.dispatch_ms + self.copy_ms[h] + self.compute_ms[h]

    def conflicts(self, other: HeadBackend) -> bool:
        """Whether the two cannot run at the same time (shared cores or the same GPU)."""
        shared_gpu = self.device != "cpu" and self.device == other.device
        return shared_gpu or bool(set(self.cores) & set(other.cores))


class HeadProfile(_Strict):
    """Per-head latency tables of the backends of one machine, for one attention shape."""

    name: str
    kind: Literal["measured", "published"]
    source: str = Field(min_length=1, description="where the numbers come from (machine, card, or the figures)")
    n_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    batch: int = Field(ge=1)
    seq_len: int = Field(ge=1)
    backends: list[HeadBackend] = Field(min_length=1)

    @model_validator(mode="after")
    def _tables_cover_every_count(self):
        names = [b.name for b in self.backends]
        if len(set(names)) != len(names):
            raise ValueError(f"backend names must be unique, got {names}")
        for b in self.backends:
            for key in ("compute_ms", "copy_ms"):
                table = getattr(b, key)
                if len(table) != self.n_heads + 1 or any(t < 0 for t in table):
                    raise ValueError(
                        f"backend {b.name!r}: {key} needs {self.n_heads + 1} non-negative entries (h = 0..n_heads), "
                        f"got {len(table)}"
                    )
        return self

    def backend(self, name: str) -> HeadBackend:
        for b in self.backends:
            if b.name == name:
                return b
        raise KeyError(f"no backend {name!r} in profile {self.name!r} (has {[b.name for b in self.backends]})")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.model_dump(), sort_keys=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> HeadProfile:
        return cls.model_validate(yaml.safe_load(Path(path).read_text()))


@dataclass(frozen=True)
class HeadSchedule:
    """How many heads each backend gets (backends with none are left out) and the predicted critical path."""

    heads: dict[str, int]
    predicted_ms: float

    def slices(self) -> dict[str, tuple[int, int]]:
        """Contiguous head ranges ``[a, b)`` per backend, in the order of ``heads``."""
        out, start = {}, 0
        for name, h in self.heads.items():
            out[name] = (start, start + h)
            start += h
        return out


def compatible_sets(backends: list[HeadBackend]) -> list[tuple[HeadBackend, ...]]:
    """Every non-empty set of backends that can run at once (no two share cores or a GPU)."""
    out = []
    for r in range(1, len(backends) + 1):
        for combo in itertools.combinations(backends, r):
            if not any(a.conflicts(b) for a, b in itertools.combinations(combo, 2)):
                out.append(combo)
    return out


def _split(backends: tuple[HeadBackend, ...], n_heads: int) -> tuple[float, list[int]]:
    """Minimal makespan of ``n_heads`` over ``backends`` and the counts reaching it (dynamic programming over
    backends: best[j][h] = min over g of max(best[j-1][h-g], cost_j(g)))."""
    inf = float("inf")
    best = [[0.0] + [inf] * n_heads]
    choice: list[list[int]] = []
    for b in backends:
        prev, row, pick = best[-1], [inf] * (n_heads + 1), [0] * (n_heads + 1)
        for h in range(n_heads + 1):
            for g in range(h + 1):
                t = max(prev[h - g], b.cost_ms(g))
                if t < row[h]:
                    row[h], pick[h] = t, g
        best.append(row)
        choice.append(pick)
    counts, h = [], n_heads
    for j in range(len(backends) - 1, -1, -1):
        counts.append(choice[j][h])
        h -= counts[-1]
    return best[-1][n_heads], counts[::-1]


def schedule_heads(profile: HeadProfile, allowed: list[str] | None = None) -> HeadSchedule:
    """The split of ``profile.n_heads`` heads over the backends (those named in ``allowed``, default all)
    with the shortest predicted critical path. Ties go to fewer backends, then to the profile's order."""
    pool = [b for b in profile.backends if allowed is None or b.name in allowed]
    if not pool:
        raise ValueError(f"none of {allowed} is a backend of profile {profile.name!r}")
    best: HeadSchedule | None = None
    for combo in compatible_sets(pool):
        ms, counts = _split(combo, profile.n_heads)
        if best is None or ms < best.predicted_ms - 1e-12:
            best = HeadSchedule({b.name: h for b, h in zip(combo, counts) if h}, ms)
    assert best is not None
    return best


def best_single(profile: HeadProfile) -> HeadSchedule:
    """All heads on the one backend predicted fastest for them: the baseline the schedule is compared with."""
    b = min(profile.backends, key=lambda b: b.cost_ms(profile.n_heads))
    return HeadSchedule({b.name: profile.n_heads}, b.cost_ms(profile.n_heads))


def attention_flops(batch: int, seq_len: int, head_dim: int, causal: bool = True) -> float:
    """Forward FLOPs of one head's scaled dot-product attention (QK^T and PV; causal skips about half)."""
    full = 4.0 * batch * seq_len * seq_len * head_dim
    return full / 2 if causal else full


PHONE_SOURCE = (
    "published figures and assumptions, not measurements: Qualcomm Snapdragon 8 Gen 2. CPU: 8 Kryo cores, fp32 "
    "peak taken as 8 cores x 2.8 GHz x 16 FLOP/cycle = 358 GFLOP/s at an assumed efficiency of 0.15 (as the "
    "AccEPT device profile); GPU: Adreno 740, about 2 TFLOP/s fp32 as commonly reported (Qualcomm publishes no "
    "figure) at an assumed efficiency of 0.1; copies at the shared LPDDR5x's 67 GB/s (product brief); 0.5 ms "
    "assumed to launch GPU work"
)
PHONE_BACKENDS = {
    "phone-cpu": {"gflops": 358.4 * 0.15, "cores": list(range(8))},
    "phone-gpu": {"gflops": 2000 * 0.1, "copy_gbs": 67.0, "device": "gpu:0", "dispatch_ms": 0.5},
}


def published_head_profile(
    name: str,
    source: str,
    n_heads: int,
    head_dim: int,
    batch: int,
    seq_len: int,
    backends: dict[str, dict],
) -> HeadProfile:
    """Roofline estimates (not measurements) for backends described by published figures: per backend
    ``gflops`` (sustained), ``copy_gbs`` (bandwidth of moving q, k, v in and the output back; ``None``: shared
    memory, no copy), ``dispatch_ms`` and ``cores``/``device``."""
    per_head_flops = attention_flops(batch, seq_len, head_dim)
    per_head_bytes = 4 * 4 * batch * seq_len * head_dim  # q, k, v in and the output back, fp32
    out = []
    for bname, spec in backends.items():
        copy_gbs = spec.get("copy_gbs")
        copy_ms_per_head = 0.0 if copy_gbs is None else 1e3 * per_head_bytes / (copy_gbs * 1e9)
        out.append(
            HeadBackend(
                name=bname,
                device=spec.get("device", "cpu"),
                cores=spec.get("cores", []),
                compute_ms=[1e3 * h * per_head_flops / (spec["gflops"] * 1e9) for h in range(n_heads + 1)],
                copy_ms=[h * copy_ms_per_head for h in range(n_heads + 1)],
                dispatch_ms=spec.get("dispatch_ms", 0.0),
            )
        )
    return HeadProfile(
        name=name,
        kind="published",
        source=source,
        n_heads=n_heads,
        head_dim=head_dim,
        batch=batch,
        seq_len=seq_len,
        backends=out,
    )


__all__ = [
    "PHONE_BACKENDS",
    "PHONE_SOURCE",
    "HeadBackend",
    "HeadProfile",
    "HeadSchedule",
    "attention_flops",
    "best_single",
    "compatible_sets",
    "published_head_profile",
    "schedule_heads",
]
