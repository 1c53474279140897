"""How much memory a pipeline stage needs in training, and a split of a layer chain whose stages each fit a
device (Confidant's partitioning, reconstructed).

A rank's peak resident memory is modelled as the sum of
- the runtime: the interpreter with torch, transformers and gloo loaded, measured by :func:`probe_runtime_mb`;
- parameters, their gradients and Adam's two moments (gradients and moments for trainable parameters only);
- activations autograd saves for the backward, times the micro-batches the schedule keeps in flight on that
  stage (GPipe: all of a step's; 1F1B: at most the stages from it to the end), counted from a real forward
  of one micro-batch (for the last stage with its loss, whose log-probabilities are kept too);
- the pipeline's receive buffers (per micro-batch: the activation in front, the gradient behind);
- a workspace for transients: twice the largest trainable parameter (Adam's per-tensor temporaries) or twice
  the largest layer output (a backward's incoming and outgoing gradients), whichever is larger.
Gradients, moments and all in-flight activations are summed although they peak at slightly different
moments; transients it does not model (PEFT's extra output-sized tensors, allocator slack) pull the other
way, and in the laptop run it erred low in 10 of 13 ranks (worst -13 %, a LoRA head stage). It is checked
against each rank's measured high-water mark (VmHWM); plans compare it with the cap without a margin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .partition import InfeasiblePartition

ADAM_MOMENTS = 2
MB = 2**20


@dataclass(frozen=True)
class LayerFootprint:
    """Bytes of one layer: all parameters, trainable ones, what autograd saves for one micro-batch, and its
    output for one micro-batch."""

    params: int
    trainable: int
    largest_trainable: int
    saved: int
    output: int


def layer_footprints(
    layers: list[nn.Module], example: torch.Tensor, loss_fn: Callable | None = None, targets=None
) -> list[LayerFootprint]:
    """Footprints from one forward of ``example`` (one micro-batch) through the chain; the last layer's
    includes ``loss_fn(output, targets)`` where given (its saved tensors stay until the backward)."""
    out, x = [], example
    for i, layer in enumerate(layers):
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor, seen=seen):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        weights = {p.untyped_storage().data_ptr() for p in layer.parameters()}  # counted as parameters
        inp = x.detach().requires_grad_(x.is_floating_point())
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = layer(inp)
            if loss_fn is not None and i == len(layers) - 1:
                loss_fn(y, targets)
        trainable = [p for p in layer.parameters() if p.requires_grad]
        out.append(
            LayerFootprint(
                params=sum(p.numel() * p.element_size() for p in layer.parameters()),
                trainable=sum(p.numel() * p.element_size() for p in trainable),
                largest_trainable=max((p.numel() * p.element_size() for p in trainable), default=0),
                saved=sum(n for ptr, n in seen.items() if ptr not in weights),
                output=y.numel() * y.element_size(),
            )
        )
        x = y.detach()
    return out


def in_flight(schedule: str, n_micro: int, n_stages: int, stage: int) -> int:
    """Micro-batches whose activations a stage holds at once."""
    if schedule == "gpipe":
        return n_micro
    if schedule == "1f1b":
        return min(n_micro, n_stages - stage)
    raise ValueError(f"unknown schedule {schedule!r}")


@dataclass(frozen=True)
class StageMemory:
    """The modelled peak of one rank, by component (MB)."""

    runtime: float
    parameters: float
    gradients: float
    optimiser: float
    activations: float
    buffers: float
    workspace: float

    @property
    def total(self) -> float:
        return sum(asdict(self).values())

    def as_dict(self) -> dict[str, float]:
        return asdict(self) | {"total": self.total}


def stage_memory(
    footprints: list[LayerFootprint],
    layers: range,
    n_stages: int,
    stage: int,
    n_micro: int,
    schedule: str,
    runtime_mb: float,
) -> StageMemory:
    """Modelled peak of the rank that holds ``layers`` as stage ``stage`` of ``n_stages``."""
    f = [footprints[i] for i in layers]
    trainable = sum(x.trainable for x in f)
    boundaries = (stage > 0) + (stage < n_stages - 1)
    boundary = footprints[layers.start - 1].output if stage > 0 else f[-1].output
    return StageMemory(
        runtime=runtime_mb,
        parameters=sum(x.params for x in f) / MB,
        gradients=trainable / MB,
        optimiser=ADAM_MOMENTS * trainable / MB,
        activations=in_flight(schedule, n_micro, n_stages, stage) * sum(x.saved for x in f) / MB,
        buffers=boundaries * n_micro * boundary / MB,  # activations received in front, gradients behind
        workspace=2 * max(max(x.largest_trainable for x in f), max(x.output for x in f)) / MB,
    )


@dataclass(frozen=True)
class MemoryPlan:
    """A split (first layer of each stage) and each stage's modelled memory."""

    starts: tuple[int, ...]
    stages: tuple[StageMemory, ...]
    capacity_mb: float

    @property
    def peak_mb(self) -> float:
        return max(s.total for s in self.stages)


def _plan(footprints, n_stages, n_micro, schedule, runtime_mb) -> tuple[float, list[int]]:
    """Contiguous split into ``n_stages`` minimising the largest stage's modelled memory (dynamic programming
    over (stage, last layer))."""
    n = len(footprints)
    inf = float("inf")

    def cost(stage, a, b):
        return stage_memory(footprints, range(a, b), n_stages, stage, n_micro, schedule, runtime_mb).total

    best = np.full((n_stages + 1, n + 1), inf)
    cut = np.zeros((n_stages + 1, n + 1), dtype=int)
    best[0, 0] = 0.0
    for j in range(1, n_stages + 1):
        for b in range(j, n - (n_stages - j) + 1):
            for a in range(j - 1, b):
                if best[j - 1, a] < inf:
                    t = max(best[j - 1, a], cost(j - 1, a, b))
                    if t < best[j, b]:
                        best[j, b], cut[j, b] = t, a
    starts, b = [], n
    for j in range(n_stages, 0, -1):
        b = cut[j, b]
        starts.append(int(b))
    return float(best[n_stages, n]), starts[::-1]


def plan_memory(
    footprints: list[LayerFootprint],
    n_devices: int,
    capacity_mb: float,
    n_micro: int,
    schedule: str = "gpipe",
    runtime_mb: float = 0.0,
) -> MemoryPlan:
    """The split over ``n_devices`` devices of ``capacity_mb`` each whose largest stage needs least memory.
    Raises :class:`InfeasiblePartition` when even that does not fit, naming the fewest devices of this
    capacity that would (or saying that none would, when one layer alone is too large)."""
    n = len(footprints)
    if not 1 <= n_devices <= n:
        raise ValueError(f"between 1 and {n} devices for {n} layers, got {n_devices}")
    peak, starts = _plan(footprints, n_devices, n_micro, schedule, runtime_mb)
    if peak > capacity_mb:
        needed = fewest_devices(footprints, capacity_mb, n_micro, schedule, runtime_mb, at_least=n_devices + 1)
        fix = (
            f"the fewest devices of this kind that fit it: {needed}"
            if needed
            else "no number of such devices fits it: one layer alone exceeds the capacity"
        )
        raise InfeasiblePartition(
            f"the model needs {peak:.0f} MB on its largest stage over {n_devices} devices, more than their "
            f"{capacity_mb:.0f} MB each; {fix}"
        )
    stages = tuple(
        stage_memory(footprints, r, n_devices, i, n_micro, schedule, runtime_mb)
        for i, r in enumerate(_ranges(starts, n))
    )
    return MemoryPlan(tuple(starts), stages, capacity_mb)


def fewest_devices(
    footprints: list[LayerFootprint],
    capacity_mb: float,
    n_micro: int,
    schedule: str = "gpipe",
    runtime_mb: float = 0.0,
    at_least: int = 1,
) -> int | None:
    """The fewest devices of ``capacity_mb`` (from ``at_least``) whose best split fits; None if none does."""
    for k in range(at_least, len(footprints) + 1):
        if _plan(footprints, k, n_micro, schedule, runtime_mb)[0] <= capacity_mb:
            return k
    return None


def _ranges(starts, n) -> list[range]:
    ends = list(starts[1:]) + [n]
    return [range(a, b) for a, b in zip(starts, ends)]


def probe_runtime_mb(arch: str = "gpt2", lora: bool = False, env: dict | None = None) -> float:
    """Peak resident memory (MB) of a process that loads what a pipeline rank loads (torch, the pipelining
    package, transformers' GPT-2, PEFT where LoRA is on) and joins a one-process gloo group, without a model;
    ``env`` adds what the ranks' environment adds."""
    out = subprocess.run(
        [sys.executable, "-m", "replab.edge.memory_model", arch, str(int(lora))],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["runtime_mb"])


def _probe(arch: str, lora: bool) -> None:
    import torch.distributed as dist
    import torch.distributed.pipelining  # noqa: F401

    from .pipeline import free_port, peak_rss_mb

    if arch == "gpt2":
        import transformers.models.gpt2.modeling_gpt2  # noqa: F401
    if lora:
        import peft  # noqa: F401
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    dist.barrier()
    dist.destroy_process_group()
    print(json.dumps({"runtime_mb": peak_rss_mb()}))


if __name__ == "__main__":
    _probe(sys.argv[1], bool(int(sys.argv[2])))


__all__ = [
    "LayerFootprint",
    "MemoryPlan",
    "StageMemory",
    "fewest_devices",
    "in_flight",
    "layer_footprints",
    "plan_memory",
    "probe_runtime_mb",
    "stage_memory",
]
